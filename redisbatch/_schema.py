"""Schemas: what users declare (``Schema``, ``Field``, ``FieldCheck``).

A schema is compiled once per facade into a :class:`~._validate.Validator`;
nothing here runs per record. Fields are declared (and checked) in
``_field``; ``Schema.from_struct`` reads them off a Struct in ``_struct_schema``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass

import msgspec

from ._exceptions import ConfigurationError
from ._field import FIELD_TYPES, MISSING, Field, FieldCheck, FieldType
from ._struct_schema import fields_of

__all__ = ["FIELD_TYPES", "MISSING", "Field", "FieldCheck", "FieldType", "Schema"]


@dataclass(frozen=True, slots=True)
class Schema:
    """The fields of a record and the record-level rules."""

    fields: Sequence[Field]
    _: KW_ONLY
    strict: bool = False
    skip_empty_rows: bool = False
    unique_fields: Sequence[str] = ()
    record_type: type[msgspec.Struct] | None = None  # set by from_struct

    @classmethod
    def from_struct(
        cls,
        struct_type: type[msgspec.Struct],
        *,
        strict: bool = False,
        skip_empty_rows: bool = False,
        unique_fields: Sequence[str] = (),
    ) -> Schema:
        """A schema read off a msgspec Struct: valid records then reach the
        processor (and every hook after ``before_validate``) as its instances."""
        return cls(
            fields_of(struct_type),
            strict=strict,
            skip_empty_rows=skip_empty_rows,
            unique_fields=unique_fields,
            record_type=struct_type,
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "unique_fields", tuple(self.unique_fields))
        names: set[str] = set()
        for f in self.fields:
            if not isinstance(f, Field):
                raise TypeError(f"Schema fields must be Field instances, got {type(f).__name__}")
            if f.name in names:
                raise ConfigurationError(f"Schema has two fields named {f.name!r}")
            names.add(f.name)
        for name in self.unique_fields:
            if name not in names:
                raise ConfigurationError(
                    f"unique_fields names an unknown field {name!r} "
                    f"(fields: {', '.join(sorted(names))})"
                )

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
    """The fields of a record and the record-level rules.

    Args:
      fields: the ``Field`` declarations, names distinct.
      strict: reject a record holding a column that is no field (or alias of
        one), code ``UNKNOWN_FIELD`` (default False: extra columns reach the
        processor as they are).
      skip_empty_rows: rows whose every value is empty (``None`` or ``""``)
        are dropped when the source is read: they are not records, do not
        count in ``total_records`` and take no index (default False).
      unique_fields: names of fields whose values must be unique across the
        whole job, whatever the number of workers: the first occurrence in
        source order is valid, later ones are ``DUPLICATE_VALUE`` (strings
        compared case-insensitively).
      record_type: the msgspec Struct records are turned into; set by
        ``from_struct``, not by hand.

    Per record, in this order: aliases resolved; ``hooks.before_validate``;
    transforms and defaults; type checks and coercion (and ``strict``);
    ``unique_fields``; the ``duplicate_checker``; ``hooks.after_validate``.
    An invalid record is stored as failed with its errors; a valid one goes
    to ``hooks.before_process``, the processor and ``hooks.after_process``.
    A schema that cannot work (two fields of one name, ``unique_fields``
    naming no field) raises ``ConfigurationError`` when it is built.
    """

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
        """A schema read off the msgspec Struct class ``struct_type``: its field
        names, types (``str``, ``int``, ``float``, ``bool``, ``date``,
        ``datetime``, ``list[str]``, ``Literal[...]`` as choices), optionality
        (``X | None`` or a default: not required), defaults, and
        ``Annotated[..., msgspec.Meta(pattern=, ge=, le=, min_length=,
        max_length=)]``. ``strict``, ``skip_empty_rows`` and
        ``unique_fields`` as for ``Schema``. Valid records then reach the
        processor (and every hook after ``before_validate``, which sees the
        raw dict) as instances of ``struct_type``."""
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

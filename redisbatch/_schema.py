"""Schemas: what users declare (``Schema``, ``Field``, ``FieldCheck``).

A schema is compiled once per facade into a :class:`~._validate.Validator`;
nothing here runs per record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final, Literal

import msgspec

__all__ = ["FIELD_TYPES", "MISSING", "Field", "FieldCheck", "FieldType", "Schema"]

FieldType = Literal[
    "string", "number", "integer", "boolean", "date", "datetime", "email", "array", "custom"
]
FIELD_TYPES: Final = frozenset(
    ("string", "number", "integer", "boolean", "date", "datetime", "email", "array", "custom")
)


class _Missing:
    """The type of :data:`MISSING`: 'no default given' / 'value absent'."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True, slots=True)
class FieldCheck:
    """What a ``validator`` may return instead of a plain bool."""

    valid: bool
    message: str | None = None
    severity: Literal["error", "warning"] = "error"
    suggestion: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a schema. Options are described in the API contract, section 3."""

    name: str
    type: FieldType = "string"
    _: KW_ONLY
    required: bool = False
    pattern: str | re.Pattern[str] | None = None
    validator: Callable[[Any], bool | FieldCheck] | None = None
    transform: Callable[[Any], Any] | None = None
    default: Any = MISSING
    separator: str = ","
    item_transform: Callable[[str], Any] | None = None
    aliases: Sequence[str] = ()
    choices: Sequence[Any] | None = None
    min: Any = None
    max: Any = None
    min_length: int | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("Field name must be a non-empty string")
        if self.type not in FIELD_TYPES:
            raise ValueError(
                f"Field {self.name!r}: type must be one of {sorted(FIELD_TYPES)}, got {self.type!r}"
            )
        if self.type == "array" and not self.separator:
            raise ValueError(f"Field {self.name!r}: separator must not be empty")
        for option in ("min_length", "max_length"):
            limit = getattr(self, option)
            if limit is not None and (not isinstance(limit, int) or limit < 0):
                raise ValueError(f"Field {self.name!r}: {option} must be a non-negative int")


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
        from ._struct_schema import fields_of

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
                raise ValueError(f"Schema has two fields named {f.name!r}")
            names.add(f.name)
        for name in self.unique_fields:
            if name not in names:
                raise ValueError(f"unique_fields names an unknown field {name!r}")

"""Field declarations (``Field``, ``FieldCheck``, ``MISSING``) and the checks
that refuse, when a ``Field`` is built, a declaration that could never work.

The floor under both ``_schema`` (a list of fields) and ``_struct_schema``
(fields read off a msgspec Struct): it imports neither.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import date, datetime
from typing import Any, Final, Literal

from ._exceptions import ConfigurationError

__all__ = ["FIELD_TYPES", "MISSING", "Field", "FieldCheck", "FieldType"]

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
            raise ConfigurationError(f"Field name must be a non-empty string, got {self.name!r}")
        _check_field(self)


#: The Python types a coerced value of each field type has (``choices`` and
#: ``min``/``max`` are compared with it); types not listed are not checked.
_VALUE_TYPES: Final[dict[str, tuple[tuple[type, ...], str]]] = {
    "string": ((str,), "str"),
    "email": ((str,), "str"),
    "integer": ((int,), "int"),
    "number": ((int, float), "int or float"),
    "boolean": ((bool,), "bool"),
    "date": ((date,), "datetime.date"),
    "datetime": ((datetime,), "datetime.datetime"),
}
#: What ``min``/``max`` of each field type must be (an integer field's bounds
#: may be any number: ``min=1.5`` means 2 and above).
_BOUNDS: Final[dict[str, tuple[str, str]]] = {
    "integer": ("number", "a number"),
    "number": ("number", "a number"),
    "date": ("date", "a datetime.date"),
    "datetime": ("datetime", "a datetime.datetime"),
}


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _of_type(value: Any, kind: str) -> bool:
    """Could a coerced value of field type ``kind`` equal (or compare with) ``value``?"""
    types, _ = _VALUE_TYPES[kind]
    if isinstance(value, bool) and kind != "boolean":
        return False  # a bool is not a number (API contract, section 8)
    if kind == "date" and isinstance(value, datetime):
        return False  # a date field's values are dates, never datetimes
    return isinstance(value, types)


def _check_field(f: Field) -> None:
    """Refuses, naming the field, a declaration that could never work."""
    where = f"Field {f.name!r}"
    if f.type not in FIELD_TYPES:
        raise ConfigurationError(
            f"{where}: type must be one of {sorted(FIELD_TYPES)}, got {f.type!r}"
        )
    if not isinstance(f.required, bool):
        raise ConfigurationError(f"{where}: required must be a bool, got {f.required!r}")
    if f.pattern is not None:
        if isinstance(f.pattern, str):
            try:
                re.compile(f.pattern)
            except re.error as exc:
                raise ConfigurationError(
                    f"{where}: pattern {f.pattern!r} does not compile: {exc}"
                ) from None
        elif not isinstance(f.pattern, re.Pattern):
            raise ConfigurationError(
                f"{where}: pattern must be a regex string or a compiled pattern, "
                f"got {type(f.pattern).__name__}"
            )
    for option in ("validator", "transform", "item_transform"):
        function = getattr(f, option)
        if function is not None and not callable(function):
            raise ConfigurationError(
                f"{where}: {option} must be callable, got {type(function).__name__}"
            )
    if not isinstance(f.separator, str) or (f.type == "array" and not f.separator):
        raise ConfigurationError(f"{where}: separator must be a non-empty string")
    if isinstance(f.aliases, str) or not all(isinstance(a, str) and a for a in f.aliases):
        raise ConfigurationError(f"{where}: aliases must be a sequence of non-empty strings")
    for option in ("min_length", "max_length"):
        limit = getattr(f, option)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ConfigurationError(f"{where}: {option} must be an int, got {limit!r}")
        if limit is not None and limit < 0:
            raise ConfigurationError(f"{where}: {option} must not be negative, got {limit}")
    if f.min_length is not None and f.max_length is not None and f.min_length > f.max_length:
        raise ConfigurationError(
            f"{where}: min_length ({f.min_length}) is above max_length ({f.max_length})"
        )
    _check_bounds(f, where)
    _check_choices(f, where)


def _check_bounds(f: Field, where: str) -> None:
    if f.type in _BOUNDS:
        kind, name = _BOUNDS[f.type]
        for option in ("min", "max"):
            bound = getattr(f, option)
            if bound is not None and not _of_type(bound, kind):
                raise ConfigurationError(
                    f"{where}: {option} of {_a(f.type)} field must be {name}, got {bound!r}"
                )
            if isinstance(bound, float) and math.isnan(bound):
                raise ConfigurationError(f"{where}: {option} must not be NaN")
    if f.min is None or f.max is None:
        return
    try:
        above = f.min > f.max
    except TypeError:
        raise ConfigurationError(
            f"{where}: min ({f.min!r}) and max ({f.max!r}) cannot be compared"
        ) from None
    if above:
        raise ConfigurationError(f"{where}: min ({f.min!r}) is above max ({f.max!r})")


def _check_choices(f: Field, where: str) -> None:
    if f.choices is None:
        return
    if isinstance(f.choices, str | bytes) or not isinstance(f.choices, Iterable):
        raise ConfigurationError(
            f"{where}: choices must be a list of values, got {type(f.choices).__name__}"
        )
    choices = list(f.choices)
    if not choices:
        raise ConfigurationError(f"{where}: choices is empty: no value could ever be valid")
    if f.type not in _VALUE_TYPES:
        return
    _, name = _VALUE_TYPES[f.type]
    for choice in choices:
        if not _of_type(choice, f.type):
            raise ConfigurationError(
                f"{where}: choices of {_a(f.type)} field must be {name} values (they are "
                f"compared with the coerced value), got {choice!r} ({type(choice).__name__})"
            )

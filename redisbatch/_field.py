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
    """The type of ``MISSING``: "no default given" (``Field(default=MISSING)``, the
    default) or "value absent". It is falsy; compare with ``is MISSING``."""

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
    """What a ``Field(validator=...)`` may return instead of a plain bool.

    ``valid``: the value passes. ``message``: the error's message (default
    a generic one naming the field). ``severity``: ``"error"`` (default;
    the record is invalid, code ``CUSTOM_VALIDATION``) or ``"warning"`` (the
    record stays valid; the warning is attached to its ``errors``).
    ``suggestion``/``metadata``: copied onto the ``ValidationError``.
    """

    valid: bool
    message: str | None = None
    severity: Literal["error", "warning"] = "error"
    suggestion: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Field:
    """One field (column) of a ``Schema``: how its value is transformed, checked
    and coerced before a record reaches the processor.

    Args:
      name: the field's name, the key in the record the processor gets.
      type: ``"string"`` (default, value as ``str``), ``"email"`` (``str``),
        ``"number"`` (``int`` for integral text, else ``float``),
        ``"integer"`` (``int``), ``"boolean"`` (true/false, 1/0, yes/no in
        any case, to ``bool``), ``"date"`` (ISO 8601, to ``datetime.date``),
        ``"datetime"`` (ISO 8601, to ``datetime.datetime``), ``"array"``
        (text split on ``separator`` to ``list[str]``) or ``"custom"`` (kept
        as given). A value that does not convert is ``TYPE_MISMATCH``;
        values already of the target type (JSON numbers, booleans) pass as
        they are, and a ``bool`` is not a number.
      required: an empty value (absent, ``None`` or ``""``) is ``REQUIRED``
        (default False: it reaches the processor as ``None``).
      pattern: a regex (string or compiled) searched (``re.search``) in the
        text value, else ``PATTERN_MISMATCH``.
      validator: ``validator(coerced_value)`` returning a bool or a
        ``FieldCheck``; False is ``CUSTOM_VALIDATION``.
      transform: ``transform(value)`` applied to a non-empty value before it
        is checked and coerced (for an array, to the list after splitting);
        an exception in it is ``CUSTOM_VALIDATION``.
      default: the value used when it is absent or empty (default
        ``MISSING``: none); a default is then checked like a given value.
      separator: what an array's text is split on (default ``","``); items
        are stripped and empty items dropped.
      item_transform: applied to each item of an array after splitting.
      aliases: other column names accepted for this field, compared
        case-insensitively (``aliases=("E-mail", "mail")``).
      choices: the allowed values, compared exactly after coercion, else
        ``INVALID_CHOICE``.
      min, max: inclusive bounds of a number, date or datetime, else
        ``OUT_OF_RANGE``.
      min_length, max_length: inclusive bounds on the length of a string or
        array, else ``INVALID_LENGTH``.

    Type checks, ``pattern``, the bounds, ``choices`` and ``validator`` run
    only on non-empty values. A declaration that could never work (an
    unknown type, a pattern that does not compile, ``min`` above ``max``,
    ``choices`` of the wrong type) raises ``ConfigurationError`` naming the
    field when the ``Field`` is built.
    """

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
        return False  # a bool is not a number (True is not 1 to a schema)
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

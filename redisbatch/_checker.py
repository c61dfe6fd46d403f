"""One field's checks, decided once from its declaration (steps 4 and 5 of
the record pipeline listed in ``_pipeline``, for one field): the coercer per
type, the compiled pattern, the choice set, the messages. ``error`` makes a ValidationError
with its category.

The floor under both ``_validate`` (a whole schema) and ``_fastpath`` (a
schema against one header, in C): it imports neither.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Final

from ._field import MISSING, Field, FieldCheck
from ._results import ValidationError

__all__ = ["BAD", "CATEGORIES", "EMAIL", "FieldChecker", "error", "is_empty"]

CATEGORIES: Final = {
    "REQUIRED": "VALIDATION",
    "INVALID_CHOICE": "VALIDATION",
    "OUT_OF_RANGE": "VALIDATION",
    "INVALID_LENGTH": "VALIDATION",
    "UNKNOWN_FIELD": "VALIDATION",
    "TYPE_MISMATCH": "FORMAT",
    "PATTERN_MISMATCH": "FORMAT",
    "CUSTOM_VALIDATION": "CUSTOM",
    "DUPLICATE_VALUE": "DUPLICATE",
    "EXTERNAL_DUPLICATE": "DUPLICATE",
    "PARSE_ERROR": "PARSE",
}

EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_INTEGER_TEXT: Final = re.compile(r"^\s*[+-]?\d+\s*$")
_EXACT_FLOAT_INT: Final = 2**53
_TRUE: Final = frozenset(("true", "1", "yes"))
_FALSE: Final = frozenset(("false", "0", "no"))


class _Bad:
    """Returned by a coercer for a value it cannot convert."""


BAD: Final = _Bad()


def is_empty(value: Any) -> bool:
    """``None``, ``""`` and absent are empty: ``required`` rejects them, ``default``
    replaces them, and no other check runs on them."""
    return value is None or value is MISSING or value == ""


def error(
    field: str,
    code: str,
    message: str,
    value: Any,
    *,
    severity: str = "error",
    suggestion: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> ValidationError:
    """A :class:`ValidationError` with the category its code belongs to."""
    return ValidationError(
        field=field,
        message=message,
        code=code,
        category=CATEGORIES[code],
        value=value,
        severity=severity,
        suggestion=suggestion,
        metadata=metadata,
    )


# ---------------------------------------------------------------- coercers


def _to_string(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return BAD


def _to_email(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if EMAIL.match(text):
            return text
    return BAD


def _to_number(value: Any) -> Any:
    if isinstance(value, bool):
        return BAD
    if isinstance(value, int | float):
        return value if math.isfinite(value) else BAD
    if isinstance(value, str):
        try:
            if _INTEGER_TEXT.match(value):
                return int(value)
            number = float(value)
        except ValueError:
            return BAD
        return number if math.isfinite(number) else BAD
    return BAD


def _to_integer(value: Any) -> Any:
    if isinstance(value, bool):
        return BAD
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        # Integer text, or integral number text ("3.0", "1e3") as spreadsheets export it.
        try:
            if _INTEGER_TEXT.match(value):
                return int(value)
            value = float(value)
        except ValueError:
            return BAD
    if isinstance(value, float):
        exact = math.isfinite(value) and value.is_integer() and abs(value) <= _EXACT_FLOAT_INT
        return int(value) if exact else BAD
    return BAD


def _to_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return BAD


def _to_date(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return BAD
    return BAD


def _to_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            return BAD
    return BAD


def _to_array(value: Any) -> Any:
    # Strings were already split by the transform stage.
    if isinstance(value, list | tuple):
        return [item if isinstance(item, str) else str(item) for item in value]
    return BAD


def _as_is(value: Any) -> Any:
    return value


_COERCERS: Final[dict[str, tuple[Callable[[Any], Any], str]]] = {
    "string": (_to_string, "a string"),
    "email": (_to_email, "a valid email address"),
    "number": (_to_number, "a number"),
    "integer": (_to_integer, "an integer"),
    "boolean": (_to_boolean, "a boolean (true/false, yes/no, 1/0)"),
    "date": (_to_date, "a date (ISO 8601, YYYY-MM-DD)"),
    "datetime": (_to_datetime, "a datetime (ISO 8601)"),
    "array": (_to_array, "a list"),
    "custom": (_as_is, "a value"),
}


# ---------------------------------------------------------------- one field


class FieldChecker:
    """One field's transforms and checks, decided once from its declaration."""

    __slots__ = (
        "choice_set",
        "choices",
        "coerce",
        "default",
        "expected",
        "field",
        "has_default",
        "item_transform",
        "max",
        "max_length",
        "min",
        "min_length",
        "name",
        "pattern",
        "required",
        "separator",
        "split",
        "transform",
        "validator",
    )

    def __init__(self, f: Field) -> None:
        self.field = f
        self.name = f.name
        self.required = f.required
        self.coerce, self.expected = _COERCERS[f.type]
        self.split = f.type == "array"
        self.separator = f.separator
        self.item_transform = f.item_transform
        self.transform = f.transform
        self.has_default = f.default is not MISSING
        self.default = f.default
        self.pattern = (
            None
            if f.pattern is None
            else (f.pattern if isinstance(f.pattern, re.Pattern) else re.compile(f.pattern))
        )
        self.choices = None if f.choices is None else tuple(f.choices)
        try:
            self.choice_set: frozenset[Any] | None = (
                None if self.choices is None else frozenset(self.choices)
            )
        except TypeError:  # unhashable choices: compared by equality
            self.choice_set = None
        self.min = f.min
        self.max = f.max
        self.min_length = f.min_length
        self.max_length = f.max_length
        self.validator = f.validator

    def prepare(self, value: Any) -> Any:
        """Step 4: array split, ``transform``, ``default`` for absent or empty values."""
        if not is_empty(value):
            if self.split and isinstance(value, str):
                value = [item.strip() for item in value.split(self.separator)]
                value = [item for item in value if item]
                if self.item_transform is not None:
                    value = [self.item_transform(item) for item in value]
            elif self.split and self.item_transform is not None and isinstance(value, list):
                value = [self.item_transform(item) for item in value]
            if self.transform is not None:
                value = self.transform(value)
        if is_empty(value) and self.has_default:
            value = self.default
        return value

    def check(self, value: Any, errors: list[ValidationError]) -> Any:
        """Step 5: returns the coerced value, appending any errors found."""
        name = self.name
        if is_empty(value):
            if self.required:
                errors.append(error(name, "REQUIRED", f"{name} is required", None))
            return None
        coerced = self.coerce(value)
        if coerced is BAD:
            errors.append(error(name, "TYPE_MISMATCH", f"{name} must be {self.expected}", value))
            return None
        if self.pattern is not None:
            text = value if isinstance(value, str) else str(coerced)
            if self.pattern.search(text) is None:
                errors.append(
                    error(
                        name,
                        "PATTERN_MISMATCH",
                        f"{name} does not match the pattern {self.pattern.pattern!r}",
                        value,
                    )
                )
                return None
        if self.choices is not None and not self._is_choice(coerced):
            allowed = ", ".join(repr(c) for c in self.choices)
            errors.append(
                error(name, "INVALID_CHOICE", f"{name} must be one of: {allowed}", coerced)
            )
            return None
        if (self.min is not None or self.max is not None) and not self._in_range(coerced):
            errors.append(error(name, "OUT_OF_RANGE", f"{name} {self._range_text()}", coerced))
            return None
        if (self.min_length is not None or self.max_length is not None) and not self._length_ok(
            coerced
        ):
            errors.append(error(name, "INVALID_LENGTH", f"{name} {self._length_text()}", coerced))
            return None
        if self.validator is not None and not self.run_validator(coerced, errors):
            return None
        return coerced

    def _is_choice(self, value: Any) -> bool:
        if self.choice_set is not None:
            try:
                return value in self.choice_set
            except TypeError:
                return False
        return value in (self.choices or ())

    def _in_range(self, value: Any) -> bool:
        try:
            if self.min is not None and value < self.min:
                return False
            return not (self.max is not None and value > self.max)
        except TypeError:
            return False

    def _range_text(self) -> str:
        if self.min is not None and self.max is not None:
            return f"must be between {self.min} and {self.max}"
        if self.min is not None:
            return f"must be at least {self.min}"
        return f"must be at most {self.max}"

    def _length_ok(self, value: Any) -> bool:
        try:
            size = len(value)
        except TypeError:
            return False
        if self.min_length is not None and size < self.min_length:
            return False
        return not (self.max_length is not None and size > self.max_length)

    def _length_text(self) -> str:
        if self.min_length is not None and self.max_length is not None:
            return f"length must be between {self.min_length} and {self.max_length}"
        if self.min_length is not None:
            return f"length must be at least {self.min_length}"
        return f"length must be at most {self.max_length}"

    def run_validator(self, value: Any, errors: list[ValidationError]) -> bool:
        """Runs ``validator``; False when it rejected the value with severity error."""
        assert self.validator is not None
        name = self.name
        try:
            outcome = self.validator(value)
        except Exception as exc:
            errors.append(
                error(name, "CUSTOM_VALIDATION", f"{name} validator failed: {exc}", value)
            )
            return False
        if isinstance(outcome, FieldCheck):
            if outcome.valid:
                return True
            errors.append(
                error(
                    name,
                    "CUSTOM_VALIDATION",
                    outcome.message or f"{name} failed validation",
                    value,
                    severity=outcome.severity,
                    suggestion=outcome.suggestion,
                    metadata=outcome.metadata,
                )
            )
            return outcome.severity == "warning"
        if outcome:
            return True
        errors.append(error(name, "CUSTOM_VALIDATION", f"{name} failed validation", value))
        return False

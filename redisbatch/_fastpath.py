"""The schema compiled against one column header into a msgspec Struct, so a
whole batch of rows is converted and checked in C.

The fast path only ever *accepts* a row whose result the field-by-field
checker (``_validate``) would produce identically; anything unusual — an
empty value, an unexpected type, a value msgspec rejects — sends that one row
to the field-by-field checker, which also collects every error of an invalid
row. Fields whose rules msgspec cannot express (transforms, date bounds,
arrays, custom types, ...) ride through the Struct untyped and are finished
by their own field checker.

Rows are converted in chunks: a chunk holding an invalid row is converted
row by row, so one bad record does not cost its whole batch the fast path.
"""

from __future__ import annotations

import keyword
import math
import re
import sys
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec

from ._codec import ABSENT
from ._schema import MISSING

if TYPE_CHECKING:
    from ._results import ValidationError
    from ._validate import Validator, _FieldChecker

__all__ = ["FastValidator"]

_CHUNK: Final = 32
_MAX_FLOAT: Final = sys.float_info.max
_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED: Final = frozenset(dir(msgspec.Struct))

Checked = tuple[dict[str, Any], list["ValidationError"]]


def _number_bound(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )


def _meta(**constraints: Any) -> msgspec.Meta:
    return msgspec.Meta(**{k: v for k, v in constraints.items() if v is not None})


def _typed(checker: _FieldChecker, email_pattern: str) -> Any:
    """The msgspec type that decides this field exactly as its checker does,
    or None when only the checker can decide it."""
    f = checker.field
    if f.transform is not None or f.item_transform is not None:
        return None
    if isinstance(f.pattern, re.Pattern) and f.pattern.flags not in (0, re.UNICODE):
        return None
    pattern = None if f.pattern is None else getattr(f.pattern, "pattern", f.pattern)
    kind = f.type
    if kind == "string":
        if f.min is not None or f.max is not None:
            return None
        if f.choices is not None:
            choices = tuple(f.choices)
            if pattern or f.min_length is not None or f.max_length is not None:
                return None
            if not choices or not all(isinstance(c, str) and c for c in choices):
                return None
            return Literal[choices]
        return Annotated[
            str,
            _meta(
                min_length=max(1, f.min_length or 0),
                max_length=f.max_length,
                pattern=pattern,
            ),
        ]
    if kind == "email":
        if pattern or f.choices is not None or f.min is not None or f.max is not None:
            return None
        return Annotated[
            str,
            _meta(pattern=email_pattern, min_length=f.min_length, max_length=f.max_length),
        ]
    if kind in ("number", "integer"):
        if pattern or f.choices is not None or f.min_length is not None or f.max_length:
            return None
        if not (_number_bound(f.min) and _number_bound(f.max)):
            return None
        # Integer bounds must be ints (v >= 1.5 is v >= 2 for an int v) within int64.
        low_int = None if f.min is None else math.ceil(f.min)
        high_int = None if f.max is None else math.floor(f.max)
        if any(b is not None and not -(2**63) <= b < 2**63 for b in (low_int, high_int)):
            return None
        integer = Annotated[int, _meta(ge=low_int, le=high_int)]
        if kind == "integer":
            return integer
        low = -_MAX_FLOAT if f.min is None else max(float(f.min), -_MAX_FLOAT)
        high = _MAX_FLOAT if f.max is None else min(float(f.max), _MAX_FLOAT)
        return integer | Annotated[float, msgspec.Meta(ge=low, le=high)]
    if kind == "date":
        if pattern or f.choices is not None or f.min is not None or f.max is not None:
            return None
        return date
    return None  # boolean (msgspec reads "-0" as False), datetime, array, custom


def _is_plain_array(checker: _FieldChecker) -> bool:
    """An array field with nothing to check but its split."""
    f = checker.field
    return (
        f.type == "array"
        and f.validator is None
        and f.transform is None
        and f.item_transform is None
        and f.pattern is None
        and f.choices is None
        and f.min is None
        and f.max is None
        and f.min_length is None
        and f.max_length is None
    )


def _absent_values(validator: Validator, resolved: list[str]) -> dict[str, Any]:
    """Schema fields the header lacks: their value is the same for every row."""
    absent: dict[str, Any] = {}
    for checker in validator.checkers:
        if checker.name in resolved:
            continue
        errors: list[ValidationError] = []
        value = checker.check(checker.prepare(MISSING), errors)
        if errors:
            raise ValueError(f"{checker.name}: every row would be invalid")
        absent[checker.name] = value
    return absent


def _row_struct(
    fields: list[tuple[str, Any]], resolved: list[str]
) -> tuple[type[msgspec.Struct], tuple[str, ...] | None]:
    """The array-like Struct of one row, and the column names when they cannot
    be its attribute names (then records are built with zip)."""
    if all(
        _IDENTIFIER.match(n) and not keyword.iskeyword(n) and n not in _RESERVED for n in resolved
    ):
        return msgspec.defstruct("Row", fields, array_like=True), None
    generic = [(f"f{i}", t) for i, (_, t) in enumerate(fields)]
    return msgspec.defstruct("Row", generic, array_like=True), tuple(resolved)


class FastValidator:
    """One schema against one column header; ``check`` converts a batch of rows."""

    def __init__(
        self,
        validator: Validator,
        columns: Sequence[str],
        slow: Callable[[list[Any]], Checked],
        email_pattern: str,
    ) -> None:
        """Raises ``ValueError`` when no row of this header could take the fast path."""
        resolved = validator.resolve_columns(columns)
        if len(set(resolved)) != len(resolved):
            raise ValueError("two columns resolve to the same field")
        checkers = {c.name: c for c in validator.checkers}
        if validator.schema.strict and any(name not in checkers for name in resolved):
            raise ValueError("strict schema with unknown columns")

        fields: list[tuple[str, Any]] = []
        self._finish: list[tuple[str, _FieldChecker]] = []
        self._arrays: list[tuple[str, str]] = []
        self._validators: list[tuple[str, _FieldChecker]] = []
        self._extras: list[str] = []
        for name in resolved:
            checker = checkers.get(name)
            if checker is None:
                fields.append((name, Any))
                self._extras.append(name)
                continue
            typed = _typed(checker, email_pattern)
            if typed is not None:
                fields.append((name, typed))
                if checker.validator is not None:
                    self._validators.append((name, checker))
                continue
            fields.append((name, Any))
            if _is_plain_array(checker):
                self._arrays.append((name, checker.field.separator))
            else:
                self._finish.append((name, checker))

        self._absent = _absent_values(validator, resolved)
        self._row_type, self._names = _row_struct(fields, resolved)
        self._rows_type = list[self._row_type]  # type: ignore[name-defined]
        try:  # msgspec checks the types when first used: fail here, not mid-batch
            msgspec.convert([], self._rows_type)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"no fast path: {exc}") from None
        self._width = len(resolved)
        self._slow = slow

    def check(self, rows: list[list[Any]]) -> list[Checked]:
        """The checked record of every row, in order."""
        convert = msgspec.convert
        row_type, rows_type = self._row_type, self._rows_type
        results: list[Checked] = []
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            try:
                converted: list[Any] = convert(chunk, rows_type, strict=False)
            except msgspec.ValidationError:
                converted = []
                for row in chunk:
                    try:
                        converted.append(convert(row, row_type, strict=False))
                    except msgspec.ValidationError:
                        converted.append(None)
            for row, struct in zip(chunk, converted, strict=True):
                checked = None if struct is None else self._finish_row(struct)
                results.append(self._slow(row) if checked is None else checked)
        return results

    def _finish_row(self, struct: Any) -> Checked | None:
        if self._names is None:
            parsed = msgspec.structs.asdict(struct)
        else:
            parsed = dict(zip(self._names, msgspec.structs.astuple(struct), strict=True))
        for name in self._extras:
            if parsed[name] is ABSENT:
                return None
        for name, separator in self._arrays:
            value = parsed[name]
            if type(value) is not str or not value:
                return None
            parsed[name] = [
                item.strip() for item in value.split(separator) if item and not item.isspace()
            ]
        if self._finish:
            errors: list[ValidationError] = []
            for name, checker in self._finish:
                value = parsed[name]
                if value is ABSENT:
                    return None
                try:
                    value = checker.prepare(value)
                except Exception:  # the field-by-field path reports it
                    return None
                parsed[name] = checker.check(value, errors)
            if errors:
                return None
        for name, checker in self._validators:
            outcome: list[ValidationError] = []
            if not checker.run_validator(parsed[name], outcome) or outcome:
                return None
        if self._absent:
            parsed.update(self._absent)
        return parsed, []

"""The schema compiled against one column header into a msgspec Struct, so a
whole batch of rows is converted and checked in C.

The fast path only ever *accepts* a row whose result the field-by-field
checker (``_validate``) would produce identically; anything unusual — an
empty typed value, an unexpected type, a value msgspec rejects — sends that one row
to the field-by-field checker, which also collects every error of an invalid
row. Fields whose rules msgspec cannot express (transforms, date bounds,
arrays, custom types, ...) ride through the Struct untyped and are finished
by their own field checker.

An empty value (``""`` or ``None``) of an optional array field without a
default stays on the fast path: ``None`` on both paths. (Typed fields cannot
take ``T | None``: msgspec's lax mode reads the text "null" as None there.)

Rows arrive as their msgpack bytes and are decoded straight into the
Struct (no intermediate Python strings), one row at a time: a row msgspec
rejects goes to the field-by-field checker and costs only itself. (Joining
a batch's rows into one msgpack array to decode at once costs a copy of the
batch, and every rejected row a decode of the rows before it again: on data
with an invalid row in a hundred, more than the calls it saves.)
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

from ._checker import EMAIL, FieldChecker
from ._codec import ABSENT, array_header, decode_row, ext_hook, raw_record
from ._field import MISSING

if TYPE_CHECKING:
    from ._results import ValidationError

__all__ = ["NO_ERRORS", "FastValidator", "PassThrough", "as_record"]

_MAX_FLOAT: Final = sys.float_info.max
_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED: Final = frozenset(dir(msgspec.Struct))

#: A record's coerced values and its errors. For a row the fast path accepted
#: the errors are an empty tuple and the values may still be the row's Struct:
#: ``as_record`` makes the dict, when it is needed (see ``FastValidator.check``).
Checked = tuple[Any, "Sequence[ValidationError]"]
NO_ERRORS: Final[tuple[ValidationError, ...]] = ()


def as_record(values: Any) -> dict[str, Any]:
    """The dict of a checked record's values (a row Struct becomes one here)."""
    if type(values) is dict:
        return values
    return msgspec.structs.asdict(values)


def _split_items(value: str, separator: str) -> list[str]:
    """An array's text as its items: split, stripped, empties dropped. Items
    of letters and digits only (the usual tags, ids, codes) need neither."""
    items = value.split(separator)
    if value.replace(separator, "").isalnum() and "" not in items:
        return items  # no whitespace anywhere (str.strip strips none) and no empty item
    return list(filter(None, map(str.strip, items)))


def _number_bound(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )


def _meta(**constraints: Any) -> msgspec.Meta:
    return msgspec.Meta(**{k: v for k, v in constraints.items() if v is not None})


def _typed(checker: FieldChecker, email_pattern: str) -> Any:
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


def _is_plain_array(checker: FieldChecker) -> bool:
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


def _empty_is_none(checker: FieldChecker) -> bool:
    """Whether an empty value (``""``, ``None``) of this field is checked to
    ``None`` without an error: an optional field with no default (nothing
    else is looked at for an empty value, validators included)."""
    errors: list[ValidationError] = []
    for empty in ("", None):
        if checker.check(checker.prepare(empty), errors) is not None or errors:
            return False
    return True


def _absent_values(checkers: Sequence[FieldChecker], resolved: list[str]) -> dict[str, Any]:
    """Schema fields the header lacks: their value is the same for every row."""
    absent: dict[str, Any] = {}
    for checker in checkers:
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
        return msgspec.defstruct("Row", fields, array_like=True, gc=False), None
    generic = [(f"f{i}", t) for i, (_, t) in enumerate(fields)]
    return msgspec.defstruct("Row", generic, array_like=True, gc=False), tuple(resolved)


class FastValidator:
    """One schema against one column header; ``check`` decodes a batch of rows."""

    def __init__(
        self,
        field_checkers: Sequence[FieldChecker],
        resolved: list[str],
        strict: bool,
        slow: Callable[[msgspec.Raw], Checked],
    ) -> None:
        """The schema's field checkers against a header whose columns resolve
        (aliases applied) to ``resolved``; ``slow`` checks one row field by
        field. Raises ``ValueError`` when no row of this header could take
        the fast path."""
        email_pattern = EMAIL.pattern
        if len(set(resolved)) != len(resolved):
            raise ValueError("two columns resolve to the same field")
        checkers = {c.name: c for c in field_checkers}
        if strict and any(name not in checkers for name in resolved):
            raise ValueError("strict schema with unknown columns")

        fields: list[tuple[str, Any]] = []
        self._finish: list[tuple[str, FieldChecker]] = []
        self._arrays: list[tuple[str, str, bool]] = []
        self._validators: list[tuple[str, FieldChecker]] = []
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
                self._arrays.append((name, checker.field.separator, _empty_is_none(checker)))
            else:
                self._finish.append((name, checker))

        self._absent = _absent_values(field_checkers, resolved)
        self._row_type, self._names = _row_struct(fields, resolved)
        try:  # msgspec checks the types here: fail now, not mid-batch
            self._row_decoder = msgspec.msgpack.Decoder(
                self._row_type, strict=False, ext_hook=ext_hook
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"no fast path: {exc}") from None
        self._slow = slow
        self._needs_rest = bool(self._extras or self._finish or self._validators or self._absent)
        self._keeps_structs = self._names is None and not self._needs_rest

    def check(self, raw_rows: list[msgspec.Raw]) -> list[Checked]:
        """The checked record of every row (msgpack bytes), in order.

        Where nothing but array splits remains to do, a valid row stays its
        Struct (which the cyclic garbage collector does not track) until
        ``as_record`` makes its dict, typically just before the processor
        call: a batch's records are then not all alive as dicts at once."""
        if self._keeps_structs:
            return self._check_structs(raw_rows)
        structs = self._decode(raw_rows)
        as_dict = msgspec.structs.asdict if self._names is None else self._zip_names
        records: list[dict[str, Any] | None] = [
            None if struct is None else as_dict(struct) for struct in structs
        ]
        split_items = _split_items
        for name, separator, empty_is_none in self._arrays:  # column by column: tight loops
            for position, parsed in enumerate(records):
                if parsed is None:
                    continue
                value = parsed[name]
                if type(value) is str and value:
                    parsed[name] = split_items(value, separator)
                elif empty_is_none and (value is None or value == ""):
                    parsed[name] = None
                else:
                    records[position] = None
        if self._needs_rest:
            records = [None if p is None else self._finish_rest(p) for p in records]
        slow = self._slow
        return [
            slow(raw) if parsed is None else (parsed, NO_ERRORS)
            for raw, parsed in zip(raw_rows, records)  # noqa: B905 - same length
        ]

    def _check_structs(self, raw_rows: list[msgspec.Raw]) -> list[Checked]:
        """``check`` where the records stay their Structs: decoding and the
        array splits in one pass."""
        decode, slow, arrays, split_items = (
            self._row_decoder.decode,
            self._slow,
            self._arrays,
            _split_items,
        )
        results: list[Checked] = []
        append = results.append
        for raw in raw_rows:
            try:
                struct = decode(raw)
            except msgspec.ValidationError:
                append(slow(raw))
                continue
            for name, separator, empty_is_none in arrays:
                value = getattr(struct, name)
                if type(value) is str and value:
                    setattr(struct, name, split_items(value, separator))
                elif empty_is_none and (value is None or value == ""):
                    setattr(struct, name, None)
                else:
                    append(slow(raw))
                    break
            else:
                append((struct, NO_ERRORS))
        return results

    def _decode(self, raw_rows: list[msgspec.Raw]) -> list[Any]:
        """Each row as its Struct, or None where msgspec rejects it."""
        return list(map(self._decode_row, raw_rows))

    def _decode_row(self, raw: msgspec.Raw) -> Any:
        try:
            return self._row_decoder.decode(raw)
        except msgspec.ValidationError:
            return None

    def _zip_names(self, struct: Any) -> dict[str, Any]:
        assert self._names is not None
        return dict(zip(self._names, msgspec.structs.astuple(struct), strict=True))

    def _finish_rest(self, parsed: dict[str, Any]) -> dict[str, Any] | None:
        """Extras, fields only their checker decides, validators, absent fields;
        None sends the row to the field-by-field checker."""
        for name in self._extras:
            if parsed[name] is ABSENT:
                return None
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
        return parsed


class PassThrough:
    """Records of a job without a schema, a batch at a time: rows decoded by
    msgspec straight into dicts keyed by the header (a value a free-form
    record lacked is left out)."""

    def __init__(self) -> None:
        self._decoders: dict[tuple[str, ...], tuple[Any, tuple[str, ...] | None]] = {}

    def check(self, columns: Sequence[str], raw_rows: list[msgspec.Raw]) -> list[Checked]:
        key = tuple(columns)
        entry = self._decoders.get(key)
        if entry is None:
            if len(self._decoders) > 16:
                self._decoders.clear()
            row_type, names = _row_struct([(c, Any) for c in key], list(key))
            decoder = msgspec.msgpack.Decoder(
                list[row_type],  # type: ignore[valid-type]
                ext_hook=ext_hook,
            )
            entry = self._decoders[key] = (decoder, names)
        decoder, names = entry
        results: list[Checked] = []
        for start in range(0, len(raw_rows), 256):
            chunk = raw_rows[start : start + 256]
            try:
                structs = decoder.decode(array_header(len(chunk)) + b"".join(chunk))
            except msgspec.ValidationError:  # short rows (free-form records): one by one
                results.extend((self._plain(key, raw), NO_ERRORS) for raw in chunk)
                continue
            for struct in structs:
                values = msgspec.structs.astuple(struct)
                record = (
                    msgspec.structs.asdict(struct)
                    if names is None
                    else dict(zip(names, values, strict=True))
                )
                if ABSENT in values:
                    record = {k: v for k, v in record.items() if v is not ABSENT}
                results.append((record, NO_ERRORS))
        return results

    @staticmethod
    def _plain(columns: tuple[str, ...], raw: msgspec.Raw) -> dict[str, Any]:
        return raw_record(list(columns), decode_row(raw))

"""``unique_fields``, decided at prepare time in source order.

The orchestrator reads every record in source order, so it is the one place
where "the first occurrence" is well defined whatever the workers do later.
For each record and unique field it sends a 16-byte digest of the field's
canonical value with the batch; the storeBatch script keeps digest -> first
record index in the job's unique hash and marks later records as duplicates.
The orchestrator itself keeps nothing between batches: its memory stays flat
however long the file, and a crashed prepare loses no uniqueness state.

Canonical values: the field's transforms, default and type coercion applied, strings
compared case-insensitively, integral floats equal to ints. Empty values and
values that fail coercion take no part (they are invalid or absent anyway).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

from ._checker import BAD, is_empty
from ._schema import MISSING
from ._validate import Validator

__all__ = ["UniqueKeys"]

ENTRY_SIZE = 21  # digest (16) + position in batch (4) + field number (1)
_TAIL = struct.Struct(">IB")


def _canonical(value: Any) -> str:
    if isinstance(value, str):
        return "s" + value.lower()
    if isinstance(value, bool):
        return f"b{value}"
    if isinstance(value, int):
        return f"n{value}"
    if isinstance(value, float):
        return f"n{int(value)}" if value.is_integer() else f"n{value!r}"
    return f"o{value!r}"


class UniqueKeys:
    """Packs the unique-field digests of each stored record."""

    def __init__(self, validator: Validator) -> None:
        names = validator.schema.unique_fields
        if len(names) > 255:
            raise ValueError("at most 255 unique_fields")
        by_name = {c.name: c for c in validator.checkers}
        self.validator = validator
        self.fields = tuple(names)
        self._checkers = tuple(by_name[name] for name in names)
        # Step 4 (split, transform, default) changes the value: run it where it does.
        self._prepares = tuple(
            c.transform is not None or c.split or c.has_default for c in self._checkers
        )
        self._positions: list[tuple[int, int | None]] = []  # see _locate
        # key tuple of a free-form record -> _locate of it, decided once per key set
        self._record_keys: dict[tuple[str, ...], list[tuple[int, int | None]]] = {}

    def _locate(self, columns: Sequence[str]) -> list[tuple[int, int | None]]:
        """(field number, its column's position or None when absent) per unique field."""
        resolved = self.validator.resolve_columns(columns)
        return [
            (number, resolved.index(name) if name in resolved else None)
            for number, name in enumerate(self.fields)
        ]

    def use_header(self, columns: Sequence[str]) -> None:
        self._positions = self._locate(columns)

    def _digest(self, number: int, value: Any) -> bytes | None:
        checker = self._checkers[number]
        if self._prepares[number]:
            try:
                value = checker.prepare(value)
            except Exception:
                return None
        if is_empty(value):
            return None
        coerced = checker.coerce(value)
        if coerced is BAD:
            return None
        text = f"{number}\x00{_canonical(coerced)}"
        return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def _add(self, number: int, value: Any, position: int, out: bytearray) -> None:
        digest = self._digest(number, value)
        if digest is not None:
            out += digest
            out += _TAIL.pack(position, number)

    def add_row(self, row: list[Any], position: int, out: bytearray) -> None:
        """Entries of a row in header order (an absent field may have a default)."""
        for number, column in self._positions:
            self._add(number, MISSING if column is None else row[column], position, out)

    def add_record(self, record: dict[str, Any], position: int, out: bytearray) -> None:
        """Entries of a free-form record."""
        keys = tuple(record)
        located = self._record_keys.get(keys)
        if located is None:
            if len(self._record_keys) > 64:
                self._record_keys.clear()
            located = self._record_keys[keys] = self._locate(keys)
        for number, column in located:
            self._add(number, MISSING if column is None else record[keys[column]], position, out)

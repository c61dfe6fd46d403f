"""Turns parsed items into stored batches: pure, no I/O.

Assigns record indexes (after skipping empty rows), keeps the job's column
header, and encodes each full batch once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._codec import (
    ABSENT,
    StoredBatch,
    batch_from_pieces,
    decode_rows,
    encode_batch,
    encode_columns,
    encode_rows,
)
from ._exceptions import SourceError
from ._parsers import Header, ParseFailure, row_is_empty
from ._unique import UniqueKeys

__all__ = ["Batcher", "EncodedBatch"]


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """A batch ready for the storeBatch script."""

    index: int
    first_index: int
    count: int
    payload: bytes
    columns: bytes  # the job's header when it changed with this batch, else b""
    unique_entries: bytes  # see _unique; b"" without unique_fields


class Batcher:
    """Accumulates records; ``add`` returns a batch each time one is full."""

    def __init__(
        self,
        batch_size: int,
        *,
        skip_empty_rows: bool,
        origin: str,
        unique: UniqueKeys | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.unique = unique
        self._unique_entries = bytearray()
        self.skip_empty_rows = skip_empty_rows
        self.origin = origin
        self.columns: list[str] = []
        self._position: dict[str, int] = {}
        self._header_map: list[int] | None = None  # header position -> column position
        self._columns_changed = False
        self._rows: list[list[Any]] = []
        self._pieces: list[bytes] = []  # rows already encoded (see add_block)
        self._piece_rows = 0
        self._failures: dict[int, tuple[str, dict[str, Any]]] = {}
        self._first_index = 0
        self.next_batch = 0
        self.total_records = 0

    def _column(self, name: str) -> int:
        position = self._position.get(name)
        if position is None:
            position = len(self.columns)
            self.columns.append(name)
            self._position[name] = position
            self._columns_changed = True
        return position

    def add_block(self, rows: list[list[Any]]) -> list[EncodedBatch]:
        """Rows in header order, many at once; the batches they complete.

        The rows are encoded to msgpack at once, slice by slice, and dropped:
        they die young, which keeps Python's cyclic collector idle (it runs
        on the count of live containers, and every row is a list)."""
        if (
            self.skip_empty_rows
            or self.unique is not None
            or self._header_map is not None
            or self._rows
        ):
            return [b for b in map(self.add, rows) if b is not None]
        batches: list[EncodedBatch] = []
        start = 0
        while start < len(rows):
            room = self.batch_size - self._piece_rows
            part = rows[start : start + room]
            try:
                encoded = encode_rows(part)
            except (TypeError, OverflowError):
                self._materialize()
                batches.extend(b for b in map(self.add, rows[start:]) if b is not None)
                return batches
            self._pieces.append(encoded)
            self._piece_rows += len(part)
            start += len(part)
            if self._piece_rows >= self.batch_size:
                batches.append(self._cut())
        return batches

    def _materialize(self) -> None:
        """Turns encoded pieces back into rows (a slow row joins this batch)."""
        if self._pieces:
            self._rows = decode_rows(self._pieces, self._piece_rows) + self._rows
            self._pieces, self._piece_rows = [], 0

    def add(self, item: Any) -> EncodedBatch | None:
        if self._pieces:
            self._materialize()
        if isinstance(item, list):
            if self.skip_empty_rows and row_is_empty(item):
                return None
            if self.unique is not None:
                self.unique.add_row(item, len(self._rows), self._unique_entries)
            header_map = self._header_map
            if header_map is None:
                self._rows.append(item)
            else:
                row: list[Any] = [ABSENT] * len(self.columns)
                for source_position, value in enumerate(item):
                    row[header_map[source_position]] = value
                self._rows.append(row)
        elif isinstance(item, dict):
            if self.skip_empty_rows and row_is_empty(item.values()):
                return None
            if self.unique is not None:
                self.unique.add_record(item, len(self._rows), self._unique_entries)
            positions = [self._column(str(key)) for key in item]
            row = [ABSENT] * len(self.columns)
            for position, value in zip(positions, item.values(), strict=True):
                row[position] = value
            self._rows.append(row)
        elif isinstance(item, Header):
            positions = [self._column(name) for name in item.columns]
            identity = positions == list(range(len(self.columns)))
            self._header_map = None if identity else positions
            if self.unique is not None:
                self.unique.use_header(item.columns)
            return None
        elif isinstance(item, ParseFailure):
            self._failures[len(self._rows)] = (item.message, item.raw)
            self._rows.append([])
        else:
            failure = ParseFailure.not_a_mapping(item, self._first_index + len(self._rows))
            self._failures[len(self._rows)] = (failure.message, failure.raw)
            self._rows.append([])
        if len(self._rows) >= self.batch_size:
            return self._cut()
        return None

    def finish(self) -> EncodedBatch | None:
        """The last, partial batch, if any records are left."""
        return self._cut() if self._rows or self._pieces else None

    def _cut(self) -> EncodedBatch:
        if self._pieces:  # only block rows: the payload is assembled from them
            count = self._piece_rows
            payload = batch_from_pieces(self._first_index, self._pieces, count)
            self._pieces, self._piece_rows = [], 0
        else:
            batch = StoredBatch(self._first_index, self._rows, self._failures)
            try:
                payload = encode_batch(batch)
            except (TypeError, OverflowError) as exc:  # a value msgpack cannot hold
                raise SourceError(
                    f"{self.origin}: records {self._first_index}..."
                    f"{self._first_index + len(self._rows) - 1}: {exc}"
                ) from None
            count = len(self._rows)
        encoded = EncodedBatch(
            index=self.next_batch,
            first_index=self._first_index,
            count=count,
            payload=payload,
            columns=encode_columns(self.columns) if self._columns_changed else b"",
            unique_entries=bytes(self._unique_entries),
        )
        self._unique_entries.clear()
        self._columns_changed = False
        self.next_batch += 1
        self.total_records += count
        self._first_index += count
        self._rows = []
        self._failures = {}
        return encoded

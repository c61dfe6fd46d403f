"""Turns parsed items into stored batches: pure, no I/O.

Assigns record indexes (after skipping empty rows), keeps the job's column
header, encodes each record once, and cuts a batch when it holds
``batch_size`` records or its encoded records would pass ``max_batch_bytes``.
It also keeps where each record starts in the source (its line, for sources
that have lines), as a line table per batch: the line of its first record
plus only where the records stop following each other line by line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ._codec import (
    ABSENT,
    batch_from_pieces,
    encode_columns,
    encode_failure,
    encode_row,
    encode_rows,
)
from ._exceptions import SourceError
from ._parsers import Header, Line, ParseFailure, line_at, row_is_empty
from ._unique import UniqueKeys

__all__ = ["DEFAULT_MAX_BATCH_BYTES", "Batcher", "EncodedBatch"]

#: The default cap on a batch's encoded size (the ``max_batch_bytes`` option).
DEFAULT_MAX_BATCH_BYTES: Final = 4 * 1024 * 1024
#: Room kept in a batch's cap for its framing (first index, array headers).
_FRAME_BYTES: Final = 32
#: What one entry of a line table may cost in the payload (two msgpack ints).
_LINE_ENTRY_BYTES: Final = 10
_EMPTY_ROW: Final = encode_row([])


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
    """Accumulates records; ``add`` returns a batch each time one is cut."""

    def __init__(
        self,
        batch_size: int,
        *,
        skip_empty_rows: bool,
        origin: str,
        unique: UniqueKeys | None = None,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ) -> None:
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self._limit = max(1, max_batch_bytes - _FRAME_BYTES)  # for the records themselves
        self.unique = unique
        self._unique_entries = bytearray()
        self.skip_empty_rows = skip_empty_rows
        self.origin = origin
        self.columns: list[str] = []
        self._position: dict[str, int] = {}
        self._header_map: list[int] | None = None  # header position -> column position
        self._columns_changed = False
        self._pieces: list[bytes] = []  # the batch's records, encoded (one or many a piece)
        self._count = 0  # records in the batch
        self._bytes = 0  # what they (and their failures and line table) cost
        self._failures: dict[int, tuple[str, dict[str, Any]]] = {}
        self._lines: list[int] = []  # the batch's line table (see _parsers.line_at)
        self._cursor: int | None = None  # the line of the next record that has none of its own
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

    # ------------------------------------------------------------ rows in blocks

    def add_block(
        self, rows: list[list[Any]], lines: list[int] | None = None
    ) -> list[EncodedBatch]:
        """Rows in header order, many at once, starting where the line table
        ``lines`` says (else where the line count stands); the batches they
        complete.

        The rows are encoded to msgpack at once, slice by slice, and dropped:
        they die young, which keeps Python's cyclic collector idle (it runs
        on the count of live containers, and every row is a list)."""
        if lines is None:
            lines = [] if self._cursor is None else [0, self._cursor]
        if lines and rows:
            last = line_at(lines, len(rows) - 1)
            assert last is not None
            self._cursor = last + 1
        if self.skip_empty_rows or self.unique is not None or self._header_map is not None:
            return self._one_by_one(rows, lines, 0, len(rows))
        batches: list[EncodedBatch] = []
        start = 0
        while start < len(rows):
            part = rows[start : start + self.batch_size - self._count]
            try:
                encoded = encode_rows(part)
            except (TypeError, OverflowError):  # named, record by record, below
                return batches + self._one_by_one(rows, lines, start, len(rows))
            whole = start == 0 and len(part) == len(rows)
            entries = lines if whole else _entries(lines, start, start + len(part))
            size = len(encoded) + _LINE_ENTRY_BYTES * len(entries) // 2
            if self._bytes + size > self._limit:  # the part would pass the cap: row by row
                batches += self._one_by_one(rows, lines, start, start + len(part))
            else:
                if entries:
                    self._merge(entries, self._count - start)
                self._pieces.append(encoded)
                self._count += len(part)
                self._bytes += len(encoded)
                if self._count >= self.batch_size:
                    batches.append(self._cut())
            start += len(part)
        return batches

    def _one_by_one(
        self, rows: list[list[Any]], lines: list[int], start: int, end: int
    ) -> list[EncodedBatch]:
        """``rows[start:end]``, one at a time."""
        batches = []
        for position in range(start, end):
            batch = self._add_row(rows[position], line_at(lines, position))
            if batch is not None:
                batches.append(batch)
        return batches

    # ------------------------------------------------------------ one item

    def add(self, item: Any) -> EncodedBatch | None:
        """One parser item (see ``_parsers``); the batch it cut, if any."""
        if isinstance(item, list):
            return self._add_row(item, self._next_line())
        if isinstance(item, dict):
            line = self._next_line()
            if self.skip_empty_rows and row_is_empty(item.values()):
                return None
            positions = [self._column(str(key)) for key in item]
            row: list[Any] = [ABSENT] * len(self.columns)
            for position, value in zip(positions, item.values(), strict=True):
                row[position] = value
            return self._add_encoded(self._encoded(row, line), line, item)
        if isinstance(item, Line):
            self._cursor = item.number
            return None
        if isinstance(item, Header):
            positions = [self._column(name) for name in item.columns]
            identity = positions == list(range(len(self.columns)))
            self._header_map = None if identity else positions
            if self.unique is not None:
                self.unique.use_header(item.columns)
            return None
        if isinstance(item, ParseFailure):
            line = self._next_line() if item.line is None else item.line
            if item.line is not None:
                self._cursor = item.line + 1
            return self._add_failure(item.message, item.raw, line)
        failure = ParseFailure.not_a_mapping(item, self._first_index + self._count)
        return self._add_failure(failure.message, failure.raw, self._next_line())

    def _next_line(self) -> int | None:
        """The line of a record that names none (the cursor moves past it)."""
        line = self._cursor
        if line is not None:
            self._cursor = line + 1
        return line

    def _add_row(self, item: list[Any], line: int | None) -> EncodedBatch | None:
        if self.skip_empty_rows and row_is_empty(item):
            return None
        header_map = self._header_map
        row = item
        if header_map is not None:
            row = [ABSENT] * len(self.columns)
            for source_position, value in enumerate(item):
                row[header_map[source_position]] = value
        return self._add_encoded(self._encoded(row, line), line, item)

    def _encoded(self, row: list[Any], line: int | None) -> bytes:
        try:
            return encode_row(row)
        except (TypeError, OverflowError) as exc:  # a value msgpack cannot hold
            index = self._first_index + self._count
            where = f"records {index}...{index}"  # the wording of a range, as before
            if line is not None:
                where += f" (line {line})"
            raise SourceError(f"{self.origin}: {where}: {exc}") from None

    def _add_encoded(self, encoded: bytes, line: int | None, item: Any) -> EncodedBatch | None:
        """A record's encoded row: stored, or a PARSE_ERROR when it alone
        passes the cap."""
        if len(encoded) > self._limit:
            where = (
                f"line {line}" if line is not None else f"record {self._first_index + self._count}"
            )
            return self._add_failure(
                f"{where}: the record takes {len(encoded)} bytes encoded, more than "
                f"max_batch_bytes ({self.max_batch_bytes})",
                {},
                line,
            )
        cut = self._make_room(len(encoded), line)
        if self.unique is not None:
            if isinstance(item, dict):
                self.unique.add_record(item, self._count, self._unique_entries)
            else:
                self.unique.add_row(item, self._count, self._unique_entries)
        return self._push(encoded, len(encoded), line) or cut

    def _add_failure(
        self, message: str, raw: dict[str, Any], line: int | None
    ) -> EncodedBatch | None:
        size = len(encode_failure((message, raw))) + 8
        if size > self._limit:  # a failure's raw values alone pass the cap: not kept
            raw = {}
            message = message[: self._limit // 2]
            size = len(encode_failure((message, raw))) + 8
        cut = self._make_room(size, line)
        self._failures[self._count] = (message, raw)
        return self._push(_EMPTY_ROW, size, line) or cut

    def _make_room(self, size: int, line: int | None) -> EncodedBatch | None:
        """Cuts the batch first if this record would take it past the cap."""
        if line is not None and line_at(self._lines, self._count) != line:
            size += _LINE_ENTRY_BYTES
        if self._count and self._bytes + size > self._limit:
            return self._cut()
        return None

    def _push(self, encoded: bytes, size: int, line: int | None) -> EncodedBatch | None:
        if line is not None:
            self._note(self._count, line)
        self._pieces.append(encoded)
        self._count += 1
        self._bytes += size
        return self._cut() if self._count >= self.batch_size else None

    def _merge(self, entries: list[int], shift: int) -> None:
        """A block's line table, its positions moved by ``shift``, after the batch's."""
        table = self._lines
        if table and table[-1] + entries[0] + shift - table[-2] == entries[1]:
            entries = entries[2:]  # its first record follows the batch's last line by line
            if not entries:
                return
        moved = entries[:]
        moved[0::2] = map(shift.__add__, entries[0::2])
        table += moved
        self._bytes += _LINE_ENTRY_BYTES * (len(moved) // 2)

    def _note(self, position: int, line: int) -> None:
        """The record at ``position`` (none before it noted yet) starts on ``line``."""
        table = self._lines
        if not table or table[-1] + position - table[-2] != line:
            table += (position, line)
            self._bytes += _LINE_ENTRY_BYTES

    # ------------------------------------------------------------ batches

    def finish(self) -> EncodedBatch | None:
        """The last, partial batch, if any records are left."""
        return self._cut() if self._count else None

    def _cut(self) -> EncodedBatch:
        count = self._count
        payload = batch_from_pieces(
            self._first_index, self._pieces, count, self._failures, self._lines
        )
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
        self._pieces, self._count, self._bytes = [], 0, 0
        self._failures = {}
        self._lines = []
        return encoded


def _entries(table: list[int], start: int, end: int) -> list[int]:
    """The line table of positions ``start`` to ``end`` of ``table``, positions
    kept as they are: the line at ``start``, then the entries inside."""
    if not table:
        return []
    line = line_at(table, start)
    assert line is not None
    entries = [start, line]
    for k in range(2, len(table), 2):
        if start < table[k] < end:
            entries += (table[k], table[k + 1])
    return entries

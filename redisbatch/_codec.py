"""How records travel through Redis: msgpack, with one Encoder/Decoder each.

A stored batch is its rows as arrays under the job's column header (stored
once on the job hash), not one dict per record repeating every key. A value
absent from a free-form record is the msgpack extension ``ABSENT``, so that
"no such key" and ``None`` stay distinct. A row the parser could not read
travels as a failure (message and whatever raw values it had).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import msgspec

from ._parsers import line_at
from ._results import ProcessedRecord

__all__ = [
    "ABSENT",
    "ReceivedBatch",
    "StoredBatch",
    "array_header",
    "batch_from_pieces",
    "decode_batch",
    "decode_columns",
    "decode_failed",
    "decode_row",
    "decode_rows",
    "encode_batch",
    "encode_columns",
    "encode_failed",
    "encode_failure",
    "encode_row",
    "encode_rows",
    "ext_hook",
    "iter_raw_records",
    "raw_record",
]

_ABSENT_EXT: Final = 1


class _Absent:
    """The type of ``ABSENT``: the value of a column a record does not have.

    Records of free-form sources (JSON, XML, iterables) may lack keys that
    other records have; in a stored batch the missing ones hold ``ABSENT``,
    kept apart from an explicit ``None``. Records reach hooks and processors
    without those keys, so user code normally never meets it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


#: A column this record does not have.
ABSENT: Final = _Absent()


class StoredBatch(msgspec.Struct, array_like=True):
    """One batch as stored in the job's records hash.

    ``rows[i]`` is the record with index ``first_index + i``, its values in the
    order of the job's columns (a shorter row lacks the trailing columns).
    ``failures`` maps a position in ``rows`` to the parser's message and the
    raw values of a row that could not be read; that position's row is empty.
    ``lines`` is where the records start in the source, a line table (see
    ``_parsers.line_at``): the first record's line and only the places where
    records stop following each other line by line; empty for a source
    without lines.
    """

    first_index: int
    rows: list[list[Any]]
    failures: dict[int, tuple[str, dict[str, Any]]] = {}
    lines: list[int] = []


def _enc_hook(obj: Any) -> Any:
    if obj is ABSENT:
        return msgspec.msgpack.Ext(_ABSENT_EXT, b"")
    raise TypeError(f"cannot store a value of type {type(obj).__name__}: {obj!r}")


def ext_hook(code: int, data: memoryview) -> Any:
    """The extension hook every decoder of stored rows needs (``ABSENT``)."""
    if code == _ABSENT_EXT:
        return ABSENT
    raise ValueError(f"unknown msgpack extension {code}")


def _lenient_hook(obj: Any) -> Any:
    """Failed records may carry any value (a hook's object): stored as its repr."""
    if obj is ABSENT:
        return None
    return repr(obj)


class ReceivedBatch(msgspec.Struct, array_like=True):
    """A stored batch as a worker decodes it: each row left as its msgpack
    bytes, to be decoded straight into typed values by the fast path, or into
    plain values (``row``) where a row needs them."""

    first_index: int
    raw_rows: list[msgspec.Raw]
    failures: dict[int, tuple[str, dict[str, Any]]] = {}
    lines: list[int] = []

    def __len__(self) -> int:
        return len(self.raw_rows)

    def line_of(self, position: int) -> int | None:
        """The source line the record at ``position`` starts on (None without lines)."""
        return line_at(self.lines, position) if self.lines else None

    def rest(self, done: int) -> StoredBatch:
        """The records from position ``done`` on, as a batch of their own (what
        a worker hands back), with their failures and lines."""
        lines: list[int] = []
        if self.lines:
            first = line_at(self.lines, done)
            assert first is not None
            lines = [0, first]
            for k in range(2, len(self.lines), 2):
                if self.lines[k] > done:
                    lines += (self.lines[k] - done, self.lines[k + 1])
        return StoredBatch(
            self.first_index + done,
            [self.row(p) for p in range(done, len(self))],
            {p - done: failure for p, failure in self.failures.items() if p >= done},
            lines,
        )

    def row(self, position: int) -> list[Any]:
        """The row's values, in the order of the job's columns."""
        return decode_row(self.raw_rows[position])


_batch_encoder: Final = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def encode_row(row: list[Any]) -> bytes:
    return _batch_encoder.encode(row)


_batch_decoder: Final = msgspec.msgpack.Decoder(ReceivedBatch, ext_hook=ext_hook)
_row_decoder: Final = msgspec.msgpack.Decoder(list[Any], ext_hook=ext_hook)
_rows_decoder: Final = msgspec.msgpack.Decoder(list[list[Any]], ext_hook=ext_hook)
_columns_decoder: Final = msgspec.msgpack.Decoder(list[str])
_failed_encoder: Final = msgspec.msgpack.Encoder(enc_hook=_lenient_hook)
_failed_decoder: Final = msgspec.msgpack.Decoder(list[ProcessedRecord])


def encode_batch(batch: StoredBatch) -> bytes:
    """Raises ``TypeError`` naming the value that msgpack cannot hold."""
    return _batch_encoder.encode(batch)


def decode_batch(payload: bytes) -> ReceivedBatch:
    return _batch_decoder.decode(payload)


def array_header(length: int) -> bytes:
    """The msgpack header of an array of ``length`` items."""
    if length < 16:
        return bytes((0x90 | length,))
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


def encode_rows(rows: list[list[Any]]) -> bytes:
    """Rows as msgpack items one after another (no array header), ready to be
    joined into a batch by ``batch_from_pieces``."""
    encoded = _batch_encoder.encode(rows)
    return encoded[_array_header_size(encoded[0]) :]


def decode_rows(pieces: list[bytes], count: int) -> list[list[Any]]:
    return _rows_decoder.decode(array_header(count) + b"".join(pieces))


def batch_from_pieces(
    first_index: int,
    pieces: list[bytes],
    count: int,
    failures: dict[int, tuple[str, dict[str, Any]]] | None = None,
    lines: list[int] | None = None,
) -> bytes:
    """The same bytes as ``encode_batch(StoredBatch(first_index, rows, failures,
    lines))`` for the ``count`` rows the pieces hold."""
    return b"".join(
        (
            b"\x94",
            _batch_encoder.encode(first_index),
            array_header(count),
            *pieces,
            _batch_encoder.encode(failures) if failures else b"\x80",
            _batch_encoder.encode(lines) if lines else b"\x90",
        )
    )


def encode_failure(failure: tuple[str, dict[str, Any]]) -> bytes:
    """A parse failure as stored in a batch (its size counts toward the cap)."""
    return _batch_encoder.encode(failure)


def _array_header_size(first_byte: int) -> int:
    if first_byte & 0xF0 == 0x90:
        return 1
    return 3 if first_byte == 0xDC else 5


def encode_columns(columns: list[str]) -> bytes:
    return _batch_encoder.encode(columns)


def decode_columns(payload: bytes) -> list[str]:
    return _columns_decoder.decode(payload) if payload else []


def encode_failed(records: list[ProcessedRecord]) -> bytes:
    """One part of a batch's failed records: 4-byte length, then msgpack. A batch
    committed in parts (time budgets) has its parts appended one after another."""
    payload = _failed_encoder.encode(records)
    return len(payload).to_bytes(4, "big") + payload


def decode_failed(stored: bytes) -> list[ProcessedRecord]:
    """Every part of a batch's failed records, in order."""
    records: list[ProcessedRecord] = []
    view = memoryview(stored)
    offset = 0
    while offset < len(view):
        size = int.from_bytes(view[offset : offset + 4], "big")
        records.extend(_failed_decoder.decode(view[offset + 4 : offset + 4 + size]))
        offset += 4 + size
    return records


def decode_row(raw: bytes | msgspec.Raw) -> list[Any]:
    return _row_decoder.decode(raw)


def raw_record(columns: list[str], row: list[Any]) -> dict[str, Any]:
    """A row as the dict the source gave: its columns, absent ones left out."""
    return {c: v for c, v in zip(columns, row, strict=False) if v is not ABSENT}


def iter_raw_records(
    batch: ReceivedBatch, columns: list[str]
) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    """Each record of a batch as ``(index, raw dict, parse failure message or None)``."""
    failures = batch.failures
    for position in range(len(batch)):
        index = batch.first_index + position
        failure = failures.get(position) if failures else None
        if failure is not None:
            yield index, failure[1], failure[0]
        else:
            yield index, raw_record(columns, batch.row(position)), None

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

from ._results import ProcessedRecord

__all__ = [
    "ABSENT",
    "StoredBatch",
    "decode_batch",
    "decode_columns",
    "decode_failed",
    "encode_batch",
    "encode_columns",
    "encode_failed",
    "iter_raw_records",
]

_ABSENT_EXT: Final = 1


class _Absent:
    """The type of :data:`ABSENT`."""

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
    """

    first_index: int
    rows: list[list[Any]]
    failures: dict[int, tuple[str, dict[str, Any]]] = {}


def _enc_hook(obj: Any) -> Any:
    if obj is ABSENT:
        return msgspec.msgpack.Ext(_ABSENT_EXT, b"")
    raise TypeError(f"cannot store a value of type {type(obj).__name__}: {obj!r}")


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _ABSENT_EXT:
        return ABSENT
    raise ValueError(f"unknown msgpack extension {code}")


def _lenient_hook(obj: Any) -> Any:
    """Failed records may carry any value (a hook's object): stored as its repr."""
    if obj is ABSENT:
        return None
    return repr(obj)


_batch_encoder: Final = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_batch_decoder: Final = msgspec.msgpack.Decoder(StoredBatch, ext_hook=_ext_hook)
_columns_decoder: Final = msgspec.msgpack.Decoder(list[str])
_failed_encoder: Final = msgspec.msgpack.Encoder(enc_hook=_lenient_hook)
_failed_decoder: Final = msgspec.msgpack.Decoder(list[ProcessedRecord])


def encode_batch(batch: StoredBatch) -> bytes:
    """Raises ``TypeError`` naming the value that msgpack cannot hold."""
    return _batch_encoder.encode(batch)


def decode_batch(payload: bytes) -> StoredBatch:
    return _batch_decoder.decode(payload)


def encode_columns(columns: list[str]) -> bytes:
    return _batch_encoder.encode(columns)


def decode_columns(payload: bytes) -> list[str]:
    return _columns_decoder.decode(payload) if payload else []


def encode_failed(records: list[ProcessedRecord]) -> bytes:
    return _failed_encoder.encode(records)


def decode_failed(payload: bytes) -> list[ProcessedRecord]:
    return _failed_decoder.decode(payload)


def iter_raw_records(
    batch: StoredBatch, columns: list[str]
) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    """Each record of a batch as ``(index, raw dict, parse failure message or None)``."""
    failures = batch.failures
    index = batch.first_index
    for position, row in enumerate(batch.rows):
        failure = failures.get(position) if failures else None
        if failure is not None:
            yield index + position, failure[1], failure[0]
            continue
        yield (
            index + position,
            {
                column: value
                for column, value in zip(columns, row, strict=False)
                if value is not ABSENT
            },
            None,
        )

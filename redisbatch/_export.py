"""``export_failed``: a job's failed and invalid records as a file a person can
fix and import again.

Each record is written with its original columns, then ``_row`` (its 0-based
index in the source), ``_line`` (its line in the source, where the source has
lines), ``_error_codes`` and ``_errors`` (``; ``-separated, one code per
message, the processing error last with the code ``PROCESSING_ERROR``).
Records are written as they are read: memory stays bounded whatever the
number of failed records.

CSV cells that a spreadsheet would run as a formula (first character ``=``,
``+``, ``-``, ``@``, tab or carriage return) get a ``'`` in front. A plain
number such as ``-5`` or ``+3.5`` is left alone: a spreadsheet reads it as a
number, and the fixed file must import again as is.
"""

from __future__ import annotations

import csv
import os
import re
from types import TracebackType
from typing import IO, Any, Final

import msgspec

from ._codec import decode_columns
from ._effects import Command, Flow
from ._exceptions import JobNotFoundError
from ._keys import check_job_id
from ._results import ProcessedRecord
from ._store import Store

__all__ = ["EXPORT_COLUMNS", "EXPORT_FORMATS", "FailedExport", "columns_flow", "job_not_found"]

#: The columns the export adds after the record's own.
EXPORT_COLUMNS: Final = ("_row", "_line", "_error_codes", "_errors")
EXPORT_FORMATS: Final = ("csv", "jsonl")
PROCESSING_ERROR: Final = "PROCESSING_ERROR"

_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER: Final = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def columns_flow(store: Store, job_id: str) -> Flow[tuple[bool, list[str]]]:
    """(whether the job exists, the job's column header)."""
    state, columns = yield Command(("HMGET", store.keys(job_id).job, "state", "columns"))
    return state is not None, decode_columns(columns or b"")


def job_not_found(job_id: str) -> Exception:
    """``JobNotFoundError(job_id)``."""
    return JobNotFoundError(job_id)


def export_columns_flow(store: Store, job_id: str) -> Flow[list[str]]:
    """The job's column header, for ``export_failed``; an unknown job raises
    ``JobNotFoundError``."""
    exists, columns = yield from columns_flow(store, check_job_id(job_id))
    if not exists:
        raise JobNotFoundError(job_id)
    return columns


def neutralise(cell: str) -> str:
    """The cell, with a ``'`` in front if a spreadsheet would run it as a formula."""
    if cell.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _json.encode(value).decode()


def _fallback(value: Any) -> Any:
    return str(value)


_json: Final = msgspec.json.Encoder(enc_hook=_fallback)


def _meta(record: ProcessedRecord) -> tuple[int, int | None, str, str]:
    codes = [e.code for e in record.errors]
    messages = [e.message for e in record.errors]
    if record.processing_error is not None:
        codes.append(PROCESSING_ERROR)
        messages.append(record.processing_error)
    line = getattr(record, "line", None)
    return record.index, line, "; ".join(codes), "; ".join(messages)


class FailedExport:
    """Writes failed records to ``file`` (a path, or a text file object left
    open) in ``format`` (``"csv"`` or ``"jsonl"``); a context manager."""

    def __init__(self, file: Any, format: str, columns: list[str]) -> None:
        if format not in EXPORT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
        if isinstance(file, str | os.PathLike):
            self._out: IO[str] = open(file, "w", encoding="utf-8", newline="")  # noqa: SIM115
            self._owned = True
        elif hasattr(file, "write"):
            self._out = file
            self._owned = False
        else:
            raise TypeError(f"file must be a path or a text file object, got {type(file).__name__}")
        self.format = format
        # A column named like ours is the previous export's: ours replace it.
        self.columns = [c for c in columns if c not in EXPORT_COLUMNS]
        self.count = 0
        self._writer: Any = None
        if format == "csv":
            self._writer = csv.writer(self._out, lineterminator="\n")
            self._writer.writerow([neutralise(c) for c in (*self.columns, *EXPORT_COLUMNS)])

    def write(self, record: ProcessedRecord) -> None:
        raw = record.raw if isinstance(record.raw, dict) else {}
        row, line, codes, messages = _meta(record)
        if self._writer is not None:
            cells = [_cell(raw.get(c)) for c in self.columns]
            cells += [str(row), "" if line is None else str(line), codes, messages]
            self._writer.writerow([neutralise(c) for c in cells])
        else:
            document = {k: v for k, v in raw.items() if k not in EXPORT_COLUMNS}
            document.update(_row=row, _line=line, _error_codes=codes, _errors=messages)
            self._out.write(_json.encode(document).decode())
            self._out.write("\n")
        self.count += 1

    def close(self) -> None:
        if self._owned:
            self._out.close()
        else:
            self._out.flush()

    def __enter__(self) -> FailedExport:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

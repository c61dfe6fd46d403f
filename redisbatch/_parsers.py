"""Parsers: bytes in, records out, no I/O of their own.

A parser's ``records(chunks, origin)`` consumes an iterator of byte chunks
and yields, lazily, one item per source record:

- a :class:`Header` first, when the format has a fixed column header
  (then each following ``list`` is one row's values in header order);
- a ``dict`` for a free-form record (JSON, XML);
- a :class:`ParseFailure` for a record the parser could not read: it becomes
  a ``PARSE_ERROR`` record and the job goes on.

A document that cannot be read at all (undecodable bytes, a broken header)
raises :class:`SourceError` naming the place.

Pulling from an iterator rather than being pushed chunks lets the standard
library's C ``csv`` reader consume lines directly: quoted fields spanning
lines need no re-buffering of our own, and the hot loop stays in C.
"""

from __future__ import annotations

import codecs
import csv
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ._exceptions import SourceError

__all__ = ["CsvParser", "Header", "ParseFailure", "Parser"]

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True, slots=True)
class Header:
    """The column names of the rows that follow."""

    columns: list[str]


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """A source record the parser could not turn into a record."""

    message: str
    raw: dict[str, Any]


class Parser:
    """Base of parsers."""

    def records(self, chunks: Iterable[bytes], origin: str) -> Iterator[Any]:
        raise NotImplementedError


def decode_lines(chunks: Iterable[bytes], encoding: str, origin: str) -> Iterator[str]:
    """Text lines (each ending with its ``\\n``, the last maybe without) from byte chunks.

    A UTF-8 byte order mark is dropped. Undecodable bytes raise
    :class:`SourceError` with the byte offset.
    """
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    pending = ""
    for chunk in chunks:
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{origin}: cannot decode as {encoding} at byte {offset + exc.start}: {exc.reason}"
            ) from None
        offset += len(chunk)
        if not text:
            continue
        if pending:
            text = pending + text
        lines = text.split("\n")
        pending = lines.pop()
        for line in lines:
            yield line + "\n"
    try:
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{origin}: truncated {encoding} sequence at byte {offset + exc.start}"
        ) from None
    if pending:
        yield pending


class CsvParser(Parser):
    """CSV with a header row (or ``columns`` given: the file has none).

    A row with the wrong number of values becomes a ``PARSE_ERROR`` record
    naming its line; blank lines are ignored.
    """

    def __init__(
        self,
        *,
        delimiter: str = ",",
        quotechar: str = '"',
        encoding: str = "utf-8",
        columns: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise ValueError("delimiter must be a single character")
        if not isinstance(quotechar, str) or len(quotechar) != 1:
            raise ValueError("quotechar must be a single character")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}") from None
        self.delimiter = delimiter
        self.quotechar = quotechar
        self.encoding = encoding
        self.columns = None if columns is None else list(columns)

    def __repr__(self) -> str:
        return f"CsvParser(delimiter={self.delimiter!r}, encoding={self.encoding!r})"

    def records(self, chunks: Iterable[bytes], origin: str) -> Iterator[Any]:
        reader = csv.reader(
            decode_lines(chunks, self.encoding, origin),
            delimiter=self.delimiter,
            quotechar=self.quotechar,
            strict=False,
        )
        columns = self.columns
        if columns is None:
            first = self._next_row(reader, origin)
            while first is not None and not first:
                first = self._next_row(reader, origin)
            if first is None or isinstance(first, ParseFailure):
                if isinstance(first, ParseFailure):
                    raise SourceError(f"{origin}: cannot read the header: {first.message}")
                return
            columns = _header(first, origin)
        yield Header(columns)
        width = len(columns)
        while True:
            row = self._next_row(reader, origin)
            if row is None:
                return
            if isinstance(row, ParseFailure) or len(row) == width:
                yield row
            elif row:
                yield ParseFailure(
                    f"line {reader.line_num}: expected {width} values, got {len(row)}",
                    _raw_of(columns, row),
                )

    @staticmethod
    def _next_row(reader: Any, origin: str) -> list[str] | ParseFailure | None:
        try:
            row: list[str] = next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            return ParseFailure(f"line {reader.line_num}: {exc}", {})
        return row


def _header(row: list[str], origin: str) -> list[str]:
    columns = [name.strip() or f"column_{i + 1}" for i, name in enumerate(row)]
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise SourceError(f"{origin}: line 1: the header names column {name!r} twice")
        seen.add(name)
    return columns


def _raw_of(columns: list[str], row: list[str]) -> dict[str, Any]:
    raw: dict[str, Any] = dict(zip(columns, row, strict=False))
    if len(row) > len(columns):
        raw["_extra"] = row[len(columns) :]
    return raw

"""CSV: the parser, and how a document is read fast without losing csv.reader's
semantics.

The document is read in chunks of whole lines. A chunk is handed to C code in
one call whenever that is provably the same as reading it line by line with
the standard library's ``csv.reader``:

- LF or CRLF line ends only: a line without a quote character is one
  record, and ``str.split`` gives exactly what the reader would; runs of
  lines with quotes go to ``csv.reader`` in one call, each followed by a
  sentinel line (reading every sentinel back as a row of its own proves
  that no run left a quoted field open); lines with every value quoted and
  no quote inside (``"a","b"``) are split on ``","``;
- otherwise the chunk goes to ``csv.reader`` whole, followed by the sentinel
  line, which proves the chunk ended between records rather than inside a
  quoted field.

Either way the rows must all have the header's width. A chunk that fails any
check (a quoted field running past its end, a blank line, a row of the wrong
width, a line longer than the field-size limit, a reader error) is read again
row by row, which names the physical line of every bad row and follows a
quoted field into the next lines.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from ._exceptions import SourceError
from ._parsers import (
    DecodedText,
    Header,
    ParseFailure,
    Parser,
    RowBlock,
    Undecodable,
    line_breaks,
)

#: Rows read in one call: the rows, the lines they took, and ``(row, extra
#: lines)`` for the rows that span more than one line.
_Read = tuple[list[list[str]], int, "Sequence[tuple[int, int]]"]

__all__ = ["CsvParser"]

#: Characters read per chunk (then completed to the end of its line): a few
#: hundred rows of a typical file. The rows of a chunk live together until
#: they are encoded; kept under the collector's threshold of 700 new
#: containers, they never trigger a garbage collection (64 Ki-character
#: chunks spent a sixth of prepare's time in the collector).
CHUNK_CHARS: Final = 1 << 14
#: The sample the delimiter is sniffed from, when it is not given.
_SNIFF_CHARS: Final = 1 << 16
#: The longest physical line held in memory (or csv.field_size_limit(), if
#: that is larger). A longer line is a PARSE_ERROR, read through without
#: being kept: a file with no line ends at all is never loaded whole.
LINE_CHARS: Final = 1 << 24
_LINE_ENDS: Final = ("\n", "\r")
_SNIFFED: Final = ",;\t|"
_SENTINEL: Final = "\ue000redisbatch end of chunk\ue000"


class CsvParser(Parser):
    """CSV with a header row (or ``columns`` given: the file has none).

    Args:
      delimiter: the field separator (default ``","``); None sniffs it from
        the start of the file among ``,`` ``;`` tab and ``|``.
      quotechar: the quote character (default ``'"'``).
      encoding: the file's text encoding (default ``"utf-8"``, a leading BOM
        skipped); e.g. ``"cp1252"`` for a file saved by Excel on Windows.
      columns: the column names, for a file without a header row.

    A row with the wrong number of values becomes a ``PARSE_ERROR`` record
    naming its line; blank lines are ignored. Every record knows the line it
    starts on (``ProcessedRecord.line``). Bytes that are not text in
    ``encoding`` raise ``SourceError`` naming their line, column and byte
    offset.
    """

    def __init__(
        self,
        *,
        delimiter: str | None = ",",
        quotechar: str = '"',
        encoding: str = "utf-8",
        columns: Sequence[str] | None = None,
    ) -> None:
        if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
            raise ValueError("delimiter must be a single character, or None to sniff it")
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
        """Yields the rows of the CSV document in ``chunks`` (see the class);
        ``origin`` names the source in errors."""
        text = DecodedText(chunks, self.encoding)
        first = ""
        delimiter = self.delimiter
        if delimiter is None:
            try:
                first = text.read(_SNIFF_CHARS)
            except Undecodable as bad:
                raise self._undecodable(bad, origin, 0, "") from None
            whole_lines = _whole_lines_end(first)
            delimiter = _sniff(first[:whole_lines] or first)
        document = _Document(text, first, delimiter, self.quotechar, self.columns, origin)
        try:
            yield from document.items()
        except _BadBytes as bad:
            raise self._undecodable(bad.undecodable, origin, bad.lines, bad.held) from None

    def _undecodable(self, bad: Undecodable, origin: str, lines: int, held: str) -> SourceError:
        """The error for undecodable bytes: their exact line, column and byte
        offset, and what to change. ``lines`` are the lines read before the
        text ``held`` (read but not parsed yet), which starts a line."""
        before = held + bad.pending  # the text between the last line counted and the bad byte
        line = lines + line_breaks(before) + 1
        column = len(before) - max(before.rfind("\n"), before.rfind("\r"))
        if codecs.lookup(self.encoding).name == "utf-8":
            hint = (
                "if the file is not UTF-8, name its encoding: a file saved by Excel on "
                "Windows is often cp1252, read with CsvParser(encoding='cp1252')"
            )
        else:
            hint = "if the file is in another encoding, name it: CsvParser(encoding=...)"
        return SourceError(
            f"{origin}: line {line}, column {column} (byte offset {bad.offset}): cannot decode "
            f"{bad.bad!r} as {self.encoding} ({bad.reason}); {hint}"
        )


class _BadBytes(Exception):
    """Undecodable bytes met by the document, with what it had read before."""

    def __init__(self, undecodable: Undecodable, lines: int, held: str) -> None:
        super().__init__(str(undecodable))
        self.undecodable = undecodable
        self.lines = lines
        self.held = held


class _Document:
    """One CSV text being read: its chunks, its header, its line count."""

    def __init__(
        self,
        text: DecodedText,
        first: str,
        delimiter: str,
        quotechar: str,
        columns: list[str] | None,
        origin: str,
    ) -> None:
        self.text = text
        self.first = first  # text read ahead (the sniffing sample), the start of the first chunk
        self.delimiter = delimiter
        self.quotechar = quotechar
        self.columns = columns
        self.origin = origin
        self.line = 0  # physical lines read so far
        self.overlong_next = False  # the next line is overlong, and read through already
        self.sentinel_row = [_SENTINEL]
        self.sentinel_usable = delimiter not in _SENTINEL and quotechar not in _SENTINEL
        self.splittable = delimiter != quotechar and not {delimiter, quotechar} & {"\r", "\n"}

    def items(self) -> Iterator[Any]:
        if self.columns is not None:
            yield Header(self.columns)
        for chunk in self._chunks():
            if chunk is None:  # an overlong line, read through
                self.line += 1
                yield self._overlong(self.line)
                continue
            whole = None if self.columns is None else self._whole(chunk, len(self.columns))
            if whole is None:
                yield from self._row_by_row(chunk)
            elif whole[0]:
                yield RowBlock(*whole)

    def _chunks(self) -> Iterator[str | None]:
        """Whole lines, a chunk at a time; None in place of an overlong line."""
        while chunk := self.first + self._read():
            self.first = ""
            try:
                yield chunk + self.next_line(held=chunk)
            except _OverlongLine:  # the line the chunk ends in
                whole_lines = _whole_lines_end(chunk)
                # A quoted field open at the end of the whole lines meets it
                # when it reads on; else it comes after them.
                self.overlong_next = True
                if whole_lines:
                    yield chunk[:whole_lines]
                if self.overlong_next:
                    self.overlong_next = False
                    yield None

    def _read(self) -> str:
        """The next CHUNK_CHARS characters; every line before them is counted."""
        try:
            return self.text.read(CHUNK_CHARS)
        except Undecodable as bad:
            raise _BadBytes(bad, self.line, self.first) from None

    def next_line(self, *, held: str = "", lines: int | None = None) -> str:
        """The document's next line ("" at its end); raises _OverlongLine,
        having read through it, for a line longer than the limit. ``held``
        is text read but not parsed yet, after ``lines`` lines (by default
        those counted so far): where undecodable bytes are located from."""
        if self.overlong_next:
            self.overlong_next = False
            raise _OverlongLine
        limit = _line_limit()
        try:
            line = self.text.readline(limit)
            if len(line) < limit or line.endswith(_LINE_ENDS):
                return line
            while line and not line.endswith(_LINE_ENDS):
                line = self.text.readline(limit)
        except Undecodable as bad:
            raise _BadBytes(bad, self.line if lines is None else lines, held) from None
        raise _OverlongLine

    def _overlong(self, line: int, start: int | None = None) -> ParseFailure:
        """A record on line ``line`` (starting on ``start``) longer than the limit."""
        message = f"line {line}: longer than {_line_limit()} characters"
        if self.columns is None:
            raise SourceError(f"{self.origin}: cannot read the header: {message}")
        return ParseFailure(message, {}, line if start is None else start)

    def _whole(self, chunk: str, width: int) -> tuple[list[list[str]], list[int]] | None:
        """The chunk's rows read in one call and their line table (see
        ``line_at``), or None when it needs reading row by row (see the
        module's docstring)."""
        whole = self._split(chunk, width) if self.splittable else None
        if whole is None and self.sentinel_usable:
            whole = self._read_whole(chunk)
        if whole is None:
            return None
        rows, lines, spans = whole
        if rows and set(map(len, rows)) != {width}:
            return None
        # Each row takes one line, plus the line ends inside its quoted values.
        table = [0, self.line + 1]
        if spans:
            if len(rows) + sum(extra for _, extra in spans) != lines:
                return None
            line = self.line + 1
            done = 0
            for position, extra in spans:
                line += position + 1 - done + extra
                done = position + 1
                if done < len(rows):
                    table += (done, line)
        elif len(rows) != lines:
            return None
        self.line += lines
        return rows, table

    def _split(self, chunk: str, width: int) -> _Read | None:
        """Rows mostly by ``str.split``, for a chunk of LF or CRLF lines with
        no blank line; None for any other chunk, or one whose quoted fields do
        not close where the methods below can prove it. The caller checks that
        every row has ``width`` values."""
        if "\r" in chunk:
            eol = "\r\n"
            ends = chunk.count(eol)
            if chunk.count("\r") != ends or chunk.count("\n") != ends:
                return None  # a lone CR or LF among CRLF line ends
        else:
            eol = "\n"
        body = chunk[: -len(eol)] if chunk.endswith(eol) else chunk
        limit = csv.field_size_limit()
        quote, delimiter = self.quotechar, self.delimiter
        if body[:1] == quote:
            rows = self._all_quoted(body, eol, width)
            if rows is not None:
                if len(body) > limit and max(map(len, body.split(eol))) > limit:
                    return None  # a field the reader would refuse
                return rows, len(rows), ()
        lines = body.split(eol)
        if "" in lines or (len(body) > limit and max(map(len, lines)) > limit):
            return None  # a blank line, or a field the reader would refuse
        if quote not in chunk:
            return list(map(str.split, lines, itertools.repeat(delimiter))), len(lines), ()
        if not self.sentinel_usable or _SENTINEL[0] in chunk:
            return None
        return self._some_quoted(lines, eol)

    def _all_quoted(self, body: str, eol: str, width: int) -> list[list[str]] | None:
        """Rows of ``"a","b"`` lines (every value quoted), split on the
        quote-delimiter-quote triple, if each line is one record. With
        exactly two quote characters per value (``width`` values a row, which
        the caller checks), no value holds a quote, nor a delimiter or line
        end that the split would have cut."""
        quote = self.quotechar
        if len(body) < 2 or body[-1] != quote:
            return None
        records = body[1:-1].split(f"{quote}{eol}{quote}")
        if len(records) != body.count(eol) + 1:
            return None  # a line that is not "...", or a quoted line end
        separator = f"{quote}{self.delimiter}{quote}"
        rows = list(map(str.split, records, itertools.repeat(separator)))
        if body.count(quote) != 2 * width * len(rows):
            return None
        return rows

    def _some_quoted(self, lines: list[str], eol: str) -> _Read | None:
        """Rows of lines of which some hold quotes. The others are split; each
        run of consecutive lines with quotes goes to csv.reader with its line
        ends (a quoted field may span the run), all runs in one call, each
        followed by the sentinel line. Every sentinel coming back as a row of
        its own proves that every run ended its last record, so reading the
        runs apart from their neighbours changed nothing."""
        quote = self.quotechar
        runs: list[list[int]] = []  # [first, last + 1] line of each run
        feed: list[str] = []
        for i, line in enumerate(lines):
            if quote not in line:
                continue
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                if runs:
                    feed.append(_SENTINEL)
                runs.append([i, i + 1])
            feed.append(line + eol)
        feed.append(_SENTINEL)
        reader = self._reader(feed)
        try:
            read = list(reader)
        except csv.Error:
            return None
        sentinel = self.sentinel_row
        if read.count(sentinel) != len(runs) or read[-1] != sentinel:
            return None
        split = list(map(str.split, lines, itertools.repeat(self.delimiter)))
        rows: list[list[str]] = []
        spans: list[tuple[int, int]] = []
        done = taken = 0  # lines done, rows of ``read`` taken
        for first, end in runs:
            rows += split[done:first]
            run_end = read.index(sentinel, taken)
            if run_end - taken == 1 < end - first:  # one record over the run's lines
                spans.append((len(rows), end - first - 1))
            elif run_end - taken != end - first:  # some record of this run spans lines
                spans += _spans(read[taken:run_end], len(rows))
            rows += read[taken:run_end]
            done, taken = end, run_end + 1
        rows += split[done:]
        return rows, len(lines), spans

    def _reader(self, lines: Iterable[str]) -> Any:
        """The standard library's reader over ``lines``, in this document's dialect."""
        return csv.reader(lines, delimiter=self.delimiter, quotechar=self.quotechar, strict=False)

    def _read_whole(self, chunk: str) -> _Read | None:
        """The chunk read by csv.reader in one call, followed by the sentinel
        line; None if the sentinel did not come back as a row of its own."""
        ends_line = chunk.endswith(_LINE_ENDS)
        reader = self._reader(
            io.StringIO(f"{chunk}{'' if ends_line else chr(10)}{_SENTINEL}", newline="")
        )
        try:
            rows = list(reader)
        except csv.Error:
            return None
        if not rows or rows.pop() != self.sentinel_row:
            return None  # the chunk ends inside a quoted field
        lines = reader.line_num - 1
        return rows, lines, (() if len(rows) == lines else _spans(rows, 0))

    def _row_by_row(self, chunk: str) -> Iterator[Any]:
        """The chunk's records one by one: a quoted field open at its end takes
        the next lines of the document until it closes."""
        lines = io.StringIO(chunk, newline="").readlines()
        feed = _Feed(lines, self)
        reader = self._reader(feed)
        block: list[list[str]] = []
        table: list[int] = []  # the block's line table
        while feed.given < len(lines):
            start = self.line + feed.given + 1  # the line the next row starts on
            try:
                row = next(reader)
            except StopIteration:
                break
            except _OverlongLine:  # in a quoted field that ran past the chunk
                yield from _flushed(block, table)
                yield self._overlong(self.line + feed.given, start)
                continue
            except csv.Error as exc:
                failure = ParseFailure(f"line {self.line + feed.given}: {exc}", {}, start)
                if self.columns is None:
                    raise SourceError(
                        f"{self.origin}: cannot read the header: {failure.message}"
                    ) from None
                yield from _flushed(block, table)
                yield failure
                continue
            if not row:
                continue  # a blank line is no record
            if self.columns is None:
                self.columns = _header(row, self.origin, self.line + feed.given)
                yield Header(self.columns)
            elif len(row) == len(self.columns):
                if not table or table[-1] + len(block) - table[-2] != start:
                    table += (len(block), start)
                block.append(row)
            else:
                yield from _flushed(block, table)
                yield ParseFailure(
                    f"line {self.line + feed.given}: expected {len(self.columns)} "
                    f"values, got {len(row)}",
                    _raw_of(self.columns, row),
                    start,
                )
        yield from _flushed(block, table)
        self.line += feed.given


class _OverlongLine(Exception):
    """A line longer than the limit was read through."""


class _Feed:
    """The lines csv.reader reads a chunk from, row by row: the chunk's, then
    the document's for a quoted field open at its end. An iterator object
    rather than a generator, so that it goes on after an overlong line."""

    def __init__(self, lines: list[str], document: _Document) -> None:
        self.lines = lines
        self.document = document
        self.given = 0  # lines handed out, overlong ones included

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        self.given += 1
        if self.given <= len(self.lines):
            return self.lines[self.given - 1]
        line = self.document.next_line(lines=self.document.line + self.given - 1)
        if not line:
            self.given -= 1
            raise StopIteration
        return line


def _whole_lines_end(text: str) -> int:
    """Where the last whole line of ``text`` ends (0 if it holds none)."""
    return max(text.rfind("\n"), text.rfind("\r")) + 1


def _line_limit() -> int:
    return max(LINE_CHARS, csv.field_size_limit())


def _flushed(block: list[list[str]], table: list[int]) -> Iterator[RowBlock]:
    """The rows gathered so far as one block, leaving ``block`` and its line
    table empty."""
    if block:
        yield RowBlock(block[:], table[:])
        block.clear()
        table.clear()


def _spans(rows: list[list[str]], first: int) -> list[tuple[int, int]]:
    """``(first + i, extra lines)`` for each row ``i`` whose values hold line ends."""
    spans = []
    for i, row in enumerate(rows):
        extra = sum(map(line_breaks, row))
        if extra:
            spans.append((first + i, extra))
    return spans


def _header(row: list[str], origin: str, line: int) -> list[str]:
    columns = [name.strip() or f"column_{i + 1}" for i, name in enumerate(row)]
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise SourceError(f"{origin}: line {line}: the header names column {name!r} twice")
        seen.add(name)
    return columns


def _sniff(sample: str) -> str:
    """The delimiter of a CSV sample among , ; tab and |; a comma if unclear."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=_SNIFFED).delimiter
    except csv.Error:
        counts = {d: sample.count(d) for d in _SNIFFED}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def _raw_of(columns: list[str], row: list[str]) -> dict[str, Any]:
    raw: dict[str, Any] = dict(zip(columns, row, strict=False))
    if len(row) > len(columns):
        raw["_extra"] = row[len(columns) :]
    return raw

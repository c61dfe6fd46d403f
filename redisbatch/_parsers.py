"""Parsers: bytes in, records out, no I/O of their own.

A parser's ``records(chunks, origin)`` consumes an iterator of byte chunks
and yields, lazily, one item per source record:

- a :class:`Header` first, when the format has a fixed column header
  (then each following ``list`` is one row's values in header order);
- a ``dict`` for a free-form record (JSON, XML);
- a :class:`RowBlock` of such rows (the CSV parser's hot path, see ``_csv``);
- a :class:`ParseFailure` for a record the parser could not read: it becomes
  a ``PARSE_ERROR`` record and the job goes on.

A document that cannot be read at all (undecodable bytes, a broken header)
raises :class:`SourceError` naming the place.

Pulling from an iterator rather than being pushed chunks lets the standard
library's C decoders and ``csv`` reader consume the text directly. This
module holds what every parser shares, and the JSON and XML parsers.
"""

from __future__ import annotations

import codecs
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final
from xml.etree import ElementTree

import msgspec

from ._exceptions import SourceError

__all__ = [
    "DecodedText",
    "Header",
    "JsonParser",
    "Line",
    "ParseFailure",
    "Parser",
    "RowBlock",
    "Undecodable",
    "XmlParser",
    "line_at",
    "line_breaks",
    "row_is_empty",
]


@dataclass(frozen=True, slots=True)
class Header:
    """The column names of the rows that follow."""

    columns: list[str]


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """A source record the parser could not turn into a record; ``line`` is
    the physical line it starts on, when the parser knows it (else the
    records' line count, see :class:`Line`, places it)."""

    message: str
    raw: dict[str, Any]
    line: int | None = None

    @classmethod
    def not_a_mapping(cls, item: Any, index: int) -> ParseFailure:
        """For a record of an iterable source that is not a dict."""
        return cls(
            f"record {index} is a {type(item).__name__}, not a mapping", {"value": repr(item)}
        )


@dataclass(frozen=True, slots=True)
class Line:
    """The next record starts on physical line ``number`` (1-based); each
    record after it on the line after the previous one's start, until the
    next ``Line``. Parsers whose records carry no line of their own (NDJSON)
    say so only where that rule breaks (the first record, after blank lines)."""

    number: int


def line_at(table: list[int], position: int) -> int | None:
    """The line of the record at ``position`` in a line table: a flat list
    ``[position_0, line_0, position_1, line_1, ...]`` (positions increasing,
    the first 0) meaning that records from ``position_k`` on start on
    consecutive lines from ``line_k``. An empty table knows no line."""
    if not table:
        return None
    k = len(table) - 2
    while k > 0 and table[k] > position:
        k -= 2
    return table[k + 1] + position - table[k]


def row_is_empty(values: Iterable[Any]) -> bool:
    """Every value empty (``None`` or ``""``): a row ``skip_empty_rows`` drops."""
    return all(value is None or value == "" for value in values)


class Parser:
    """Base of parsers: ``CsvParser``, ``JsonParser`` and ``XmlParser`` turn the
    bytes of a source into records. Pass one to ``prepare``, ``preview`` or
    ``count`` with a ``FileSource``, ``BytesSource`` or ``UrlSource``."""

    def records(self, chunks: Iterable[bytes], origin: str) -> Iterator[Any]:
        """Reads ``chunks`` (byte chunks of one document) lazily and yields its
        records; ``origin`` names the source in error messages. A document
        that cannot be read raises ``SourceError``; a single unreadable record
        is yielded as a failure that becomes a ``PARSE_ERROR`` record. The
        library calls this; users normally do not."""
        raise NotImplementedError


class Undecodable(Exception):
    """Bytes that are not text in the expected encoding, located exactly.

    ``offset`` is the 0-based byte offset of the first bad byte in the
    document; ``pending`` is the text decoded before it that the reader has
    not been handed yet (a reader adds the lines it has seen to find the line)."""

    def __init__(self, offset: int, bad: bytes, reason: str, pending: str) -> None:
        super().__init__(f"byte offset {offset}: {reason}")
        self.offset = offset
        self.bad = bad
        self.reason = reason
        self.pending = pending


_LINE_END: Final = re.compile("[\r\n]")


def line_breaks(text: str) -> int:
    """How many lines end in ``text`` (CR LF, CR and LF each end one)."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


class DecodedText:
    """Text decoded from byte chunks, pulled by ``read``/``readline`` (line ends
    left as they are; a UTF-8 byte order mark dropped). Unlike a
    ``TextIOWrapper`` it knows exactly where undecodable bytes sit: it raises
    :class:`Undecodable` with their byte offset and the text before them."""

    def __init__(self, chunks: Iterable[bytes], encoding: str) -> None:
        if codecs.lookup(encoding).name == "utf-8":
            encoding = "utf-8-sig"
        self._factory = codecs.getincrementaldecoder(encoding)
        self._decoder = self._factory("strict")
        self._chunks = iter(chunks)
        self._text = ""  # decoded; handed out up to _pos
        self._pos = 0
        self._fed = 0  # bytes given to the decoder
        self._ended = False

    def _more(self) -> bool:
        """Decodes the next chunk into the buffer; False at the end."""
        if self._ended:
            return False
        state = self._decoder.getstate()
        chunk = next(self._chunks, None)
        try:
            if chunk is None:
                self._ended = True
                new = self._decoder.decode(b"", True)
            else:
                self._fed += len(chunk)
                new = self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise self._located(exc, chunk or b"", state) from None
        self._text = self._text[self._pos :] + new if self._pos < len(self._text) else new
        self._pos = 0
        return True

    def _located(self, exc: UnicodeDecodeError, chunk: bytes, state: Any) -> Undecodable:
        # The decoder's input ends with this chunk (after bytes it held back).
        data = bytes(exc.object)
        offset = self._fed - len(data) + exc.start
        valid = exc.start - (len(data) - len(chunk))  # bytes of this chunk before the bad one
        before = ""
        if valid > 0:
            decoder = self._factory("strict")
            decoder.setstate(state)
            before = decoder.decode(chunk[:valid])
        pending = self._text[self._pos :] + before
        return Undecodable(offset, data[exc.start : exc.end], exc.reason, pending)

    def read(self, size: int) -> str:
        """Up to ``size`` characters ("" at the end)."""
        while len(self._text) - self._pos < size and self._more():
            pass
        out = self._text[self._pos : self._pos + size]
        self._pos += len(out)
        return out

    def readline(self, limit: int) -> str:
        """The next line with its line end (LF, CR LF or CR), or its first
        ``limit`` characters if it is longer; "" at the end."""
        parts: list[str] = []
        size = 0
        try:
            while True:
                text, pos = self._text, self._pos
                room = limit - size  # characters this line may still take
                found = _LINE_END.search(text, pos, pos + room)
                if found is None:
                    if len(text) - pos >= room:
                        self._pos = pos + room
                        return "".join((*parts, text[pos : self._pos]))
                    parts.append(text[pos:])
                    size += len(text) - pos
                    self._pos = len(text)
                    if not self._more():
                        return "".join(parts)
                    continue
                end = found.start() + 1
                if text[end - 1] == "\r":
                    if end == len(text):  # an LF may follow, in the next chunk
                        parts.append(text[pos : end - 1])
                        size += end - 1 - pos
                        self._pos = end - 1
                        if self._more():
                            continue
                        text, pos = self._text, self._pos
                    elif text[end] == "\n" and end - pos < room:
                        end += 1
                self._pos = end
                return "".join((*parts, text[pos:end]))
        except Undecodable as exc:
            exc.pending = "".join(parts) + exc.pending
            raise


@dataclass(frozen=True, slots=True)
class RowBlock:
    """Consecutive rows, each with one value per header column. ``lines`` is
    where they start in the source: a line table (see :func:`line_at`), or
    None when the parser does not know."""

    rows: list[list[str]]
    lines: list[int] | None = None

    def __len__(self) -> int:
        return len(self.rows)


#: The largest NDJSON line or JSON array element held in memory. A larger one
#: is a PARSE_ERROR, read through without being kept: memory stays bounded
#: whatever a document holds.
RECORD_BYTES: Final = 1 << 24

_JSON_STRUCTURE = re.compile(rb'["\[\]{},]')
_JSON_STRING_END = re.compile(rb'["\\]')
_WHITESPACE = b" \t\r\n"


class JsonParser(Parser):
    """A top-level JSON array of objects, or NDJSON (one object per line), told
    apart by the first character. Both stream: an array is cut into its
    elements as bytes arrive, so a 2 GB array never sits in memory.

    An element or line that is not an object, a malformed NDJSON line, one
    nested too deeply to decode, and an element or line larger than
    16 MiB (read through, not kept) is a ``PARSE_ERROR`` record; a
    truncated or broken array, or bytes in it that are not UTF-8, is a
    ``SourceError`` naming the byte offset. NDJSON records know their line.
    """

    def __repr__(self) -> str:
        return "JsonParser()"

    def records(self, chunks: Iterable[bytes], origin: str) -> Iterator[Any]:
        """Yields the objects of the JSON array or NDJSON document in ``chunks``
        (see the class); ``origin`` names the source in errors."""
        stream = iter(chunks)
        head = b""
        for chunk in stream:
            head += chunk
            if head.lstrip(b"\xef\xbb\xbf" + _WHITESPACE):
                break
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        body = head.lstrip(_WHITESPACE)
        if not body:
            return
        rest = itertools.chain((head,), stream)
        if body.startswith(b"["):
            yield from _json_array(rest, origin)
        else:
            yield from _ndjson(rest, origin)


def _as_record(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return value
    return ParseFailure(f"{where}: a JSON {type(value).__name__}, not an object", {"value": value})


def _ndjson(chunks: Iterable[bytes], origin: str) -> Iterator[Any]:
    pieces: list[bytes] = []  # the start of a line that goes on in the next chunk
    held = 0  # bytes in pieces
    overlong = False  # the current line passed RECORD_BYTES: its bytes are dropped
    number = 0
    expected = 0  # the line the consumer takes the next record to start on (see Line)
    consumed = 0  # bytes of the chunks before this one
    line_start = 0  # where the line in ``pieces`` starts
    for chunk in chunks:
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if lines:  # the line begun in earlier chunks ends in this one
            start = line_start
            if overlong or held + len(lines[0]) > RECORD_BYTES:
                number += 1
                if number != expected:
                    yield Line(number)
                expected = number + 1
                yield _too_large(f"line {number}")
                start = consumed + len(lines[0]) + 1
                del lines[0]
            elif pieces:
                pieces.append(lines[0])
                lines[0] = b"".join(pieces)
            pieces, held, overlong = [], 0, False
            for line in lines:
                number += 1
                record = _ndjson_line(line, number, start)
                start += len(line) + 1
                if record is not None:
                    if number != expected:
                        yield Line(number)
                    expected = number + 1
                    yield record
        line_start = consumed + len(chunk) - len(tail) if lines else line_start
        consumed += len(chunk)
        if overlong or not tail:
            continue
        if held + len(tail) > RECORD_BYTES:
            pieces, held, overlong = [], 0, True
        else:
            pieces.append(tail)
            held += len(tail)
    last = _too_large(f"line {number + 1}") if overlong else None
    if pieces:
        last = _ndjson_line(b"".join(pieces), number + 1, line_start)
    if last is not None:
        if number + 1 != expected:
            yield Line(number + 1)
        yield last


def _too_large(where: str) -> ParseFailure:
    return ParseFailure(f"{where}: larger than {RECORD_BYTES} bytes", {})


def _ndjson_line(line: bytes, number: int, offset: int) -> Any:
    """The record on one NDJSON line (None for a blank line); ``offset`` is
    the line's byte offset in the document."""
    if not line.strip():
        return None
    try:
        value = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        text = line[:200].decode("utf-8", "replace")
        return ParseFailure(
            f"line {number}: {_not_utf8(line, offset) or f'invalid JSON: {exc}'}", {"line": text}
        )
    except RecursionError:
        text = line[:200].decode("utf-8", "replace")
        return ParseFailure(f"line {number}: {_TOO_DEEP}", {"line": text})
    return _as_record(value, f"line {number}")


_TOO_DEEP: Final = "JSON nested too deeply to decode (RecursionError)"


def _not_utf8(data: bytes, offset: int) -> str | None:
    """Where ``data`` (at ``offset`` in the document) is not UTF-8, if it is not."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"byte offset {offset + exc.start}: {data[exc.start : exc.end]!r} is not UTF-8 "
            f"({exc.reason}); JSON must be UTF-8: convert the file (for example "
            "iconv -f cp1252 -t utf-8)"
        )
    return None


def _json_array(chunks: Iterable[bytes], origin: str) -> Iterator[Any]:
    scanner = _ArrayScanner(origin)
    for chunk in chunks:
        yield from scanner.feed(chunk)
    scanner.finish()


class _ArrayScanner:
    """A push decoder for a top-level JSON array: ``feed`` bytes, get back the
    elements completed by them. Tracks only nesting depth and strings; each
    element is decoded by msgspec once the comma or bracket after it arrives,
    and only the current element is buffered."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.buffer = bytearray()
        self.base = 0  # document offset of buffer[0]
        self.position = 0  # scan position in buffer
        self.depth = 0
        self.in_string = False
        self.element_start = 0  # where the current element starts in buffer
        self.oversized = False  # the current element passed RECORD_BYTES: not kept
        self.count = 0
        self.done = False

    def feed(self, chunk: bytes) -> list[Any]:
        if self.done:
            self._after_end(chunk)
            return []
        self.buffer += chunk
        elements: list[Any] = []
        while not self.done and self._step(elements):
            pass
        if self.done:
            self._after_end(bytes(self.buffer[self.position :]))
            self.buffer.clear()
            return elements
        if self.depth >= 1 and self.position - self.element_start > RECORD_BYTES:
            self.oversized = True
        keep = self.element_start if self.depth >= 1 and not self.oversized else self.position
        if keep:
            del self.buffer[:keep]
            self.base += keep
            self.position -= keep
            self.element_start -= keep
        return elements

    def _step(self, elements: list[Any]) -> bool:
        """Handles the next string or structural byte; False when more bytes are needed."""
        buffer = self.buffer
        if self.in_string:
            found = _JSON_STRING_END.search(buffer, self.position)
            if found is None:
                self.position = len(buffer)
                return False
            at = found.start()
            if buffer[at] == 0x5C:  # a backslash escapes the next byte
                if at + 1 >= len(buffer):
                    self.position = at
                    return False
                self.position = at + 2
                return True
            self.in_string = False
            self.position = at + 1
            return True
        found = _JSON_STRUCTURE.search(buffer, self.position)
        if found is None:
            self.position = len(buffer)
            return False
        at = found.start()
        char = buffer[at]
        self.position = at + 1
        if self.depth == 0:
            if char != 0x5B or bytes(buffer[:at]).strip(b"\xef\xbb\xbf" + _WHITESPACE):
                raise SourceError(f"{self.origin}: expected a JSON array at byte {self.base + at}")
            self.depth, self.element_start = 1, self.position
        elif char == 0x22:  # "
            self.in_string = True
        elif char in (0x5B, 0x7B):  # [ {
            self.depth += 1
        elif self.depth > 1:  # ] } or a comma inside an element
            if char != 0x2C:
                self.depth -= 1
        else:
            self._end_element(at, char, elements)
        return True

    def _end_element(self, at: int, char: int, elements: list[Any]) -> None:
        """A comma or the closing bracket at depth 1 ends an element."""
        if char == 0x7D:
            raise SourceError(f"{self.origin}: unbalanced '}}' at byte {self.base + at}")
        if self.oversized:  # read through, not kept
            elements.append(_too_large(f"element {self.count}"))
            self.count += 1
            self.oversized = False
        elif text := bytes(self.buffer[self.element_start : at]).rstrip(_WHITESPACE):
            stripped = text.lstrip(_WHITESPACE)
            offset = self.base + self.element_start + len(text) - len(stripped)
            elements.append(_array_element(stripped, self.count, offset, self.origin))
            self.count += 1
        elif char == 0x2C or self.count:
            raise SourceError(f"{self.origin}: missing array element at byte {self.base + at}")
        if char == 0x5D:
            self.depth, self.done = 0, True
        self.element_start = self.position

    def _after_end(self, data: bytes) -> None:
        if data.strip(_WHITESPACE):
            raise SourceError(f"{self.origin}: data after the end of the JSON array")

    def finish(self) -> None:
        if not self.done:
            raise SourceError(
                f"{self.origin}: truncated JSON array: it ends at byte "
                f"{self.base + len(self.buffer)} inside element {self.count}"
            )


def _array_element(text: bytes, number: int, offset: int, origin: str) -> Any:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        not_utf8 = _not_utf8(text, offset)
        raise SourceError(
            f"{origin}: element {number}: {not_utf8}"
            if not_utf8
            else f"{origin}: invalid JSON in element {number} at byte {offset}: {exc}"
        ) from None
    except RecursionError:
        return ParseFailure(f"element {number} (byte offset {offset}): {_TOO_DEEP}", {})
    return _as_record(value, f"element {number}")


_DOCTYPE_MARKS = tuple(
    mark.encode(codec)
    for mark in ("<!DOCTYPE", "<!ENTITY")
    for codec in ("utf-8", "utf-16-le", "utf-16-be")
)


class XmlParser(Parser):
    """Streams the elements named ``record_tag`` (default ``"record"``) as
    records: their attributes
    and the text of their child elements become fields (a child tag repeated
    becomes a list). Elements are cleared as soon as they are read. A document
    whose root holds elements but none named ``record_tag`` is a
    ``SourceError`` naming what it holds.

    A document type declaration is refused with ``SourceError`` before any of
    it is parsed: no entity is ever expanded (billion laughs) or fetched (XXE).
    """

    def __init__(self, *, record_tag: str = "record") -> None:
        if not isinstance(record_tag, str) or not record_tag:
            raise ValueError("record_tag must be a non-empty string")
        self.record_tag = record_tag

    def __repr__(self) -> str:
        return f"XmlParser(record_tag={self.record_tag!r})"

    def records(self, chunks: Iterable[bytes], origin: str) -> Iterator[Any]:
        """Yields one dict per ``record_tag`` element of the document in
        ``chunks`` (see the class); ``origin`` names the source in errors."""
        parser: Any = ElementTree.XMLPullParser(events=("start", "end"))
        tree = _XmlTree(self.record_tag)
        tail = b""
        offset = 0  # bytes read (this chunk's included, once fed)
        lines = 0  # line ends read
        head = b""  # the document's first bytes (its XML declaration)
        recent = b""  # the bytes fed last: this chunk, after a few of the one before
        try:
            for chunk in chunks:
                window = tail + chunk
                if any(mark in window for mark in _DOCTYPE_MARKS):
                    raise SourceError(
                        f"{origin}: a document type declaration (DTD) near byte {offset}: "
                        "refused, entities are never expanded"
                    )
                tail = window[-20:]
                if len(head) < 200:
                    head += chunk[: 200 - len(head)]
                recent = recent[-8:] + chunk  # expat may wait for a character's last bytes
                offset += len(chunk)
                lines += chunk.count(b"\n")
                parser.feed(chunk)
                yield from tree.take(parser.read_events())
            parser.close()
            yield from tree.take(parser.read_events())
        except ElementTree.ParseError as exc:
            line, column = exc.position
            not_utf8 = _xml_not_utf8(exc, head, recent, offset, lines)
            raise SourceError(
                f"{origin}: {not_utf8}"
                if not_utf8
                else f"{origin}: malformed XML at line {line}, column {column}: {exc}"
            ) from None
        if not tree.records and tree.other_tag is not None:
            raise SourceError(
                f"{origin}: no <{self.record_tag}> element in the document (its root holds "
                f"<{tree.other_tag}>): set XmlParser(record_tag=...) to the records' tag"
            )


_XML_INVALID_TOKEN: Final = 4  # expat's code for bytes that are no token
_XML_ENCODING: Final = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)""")


def _xml_not_utf8(
    exc: ElementTree.ParseError, head: bytes, recent: bytes, end: int, lines: int
) -> str | None:
    """For expat's 'invalid token' in a document read as UTF-8 (no other
    encoding declared), where the bytes fed last (``recent``, ending at byte
    ``end`` of the document, after ``lines`` line ends) stop being UTF-8:
    its exact line and byte offset (expat's own position is unreliable after
    such bytes)."""
    if getattr(exc, "code", None) != _XML_INVALID_TOKEN:
        return None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16
        return None
    declared = _XML_ENCODING.match(head)
    if declared is not None and declared.group(1).lower() not in (b"utf-8", b"utf8", b"utf_8"):
        return None
    start = 0
    while start < min(3, len(recent)) and recent[start] & 0xC0 == 0x80:
        start += 1  # the end of a character begun before
    try:
        recent[start:].decode("utf-8")
    except UnicodeDecodeError as bad:
        if bad.reason == "unexpected end of data":
            return None  # a character the next chunk would complete
        at = start + bad.start
        line = lines - recent.count(b"\n", at) + 1
        return (
            f"line {line} (byte offset {end - len(recent) + at}): "
            f"{recent[at : start + bad.end]!r} is not UTF-8 ({bad.reason}); name the "
            "document's encoding in its XML declaration, for example "
            '<?xml version="1.0" encoding="windows-1252"?>'
        )
    return None


class _XmlTree:
    """The open elements of a document being read. A record is cleared once
    read; so is any element outside a record, so that a document whose
    elements are not records (a wrong ``record_tag``) is not built whole."""

    def __init__(self, record_tag: str) -> None:
        self.record_tag = record_tag
        self.stack: list[ElementTree.Element] = []
        self.open_records = 0  # record elements among the open ones
        self.records = 0
        self.other_tag: str | None = None  # the first child of the root that was no record

    def take(self, events: Iterable[tuple[str, Any]]) -> Iterator[dict[str, Any]]:
        stack = self.stack
        for event, element in events:
            if event == "start":
                stack.append(element)
                if element.tag == self.record_tag:
                    self.open_records += 1
                continue
            stack.pop()
            if element.tag == self.record_tag:
                self.open_records -= 1
                self.records += 1
                yield _element_record(element)
            elif self.open_records:
                continue  # a field of the record around it
            elif len(stack) == 1 and self.other_tag is None:
                self.other_tag = element.tag
            element.clear()
            if stack:
                stack[-1].remove(element)


def _element_record(element: ElementTree.Element) -> dict[str, Any]:
    record: dict[str, Any] = dict(element.attrib)
    for child in element:
        value = (child.text or "").strip() if len(child) == 0 else _element_record(child)
        if child.tag in record:
            earlier = record[child.tag]
            record[child.tag] = [*earlier, value] if isinstance(earlier, list) else [earlier, value]
        else:
            record[child.tag] = value
    if not len(element) and element.text and element.text.strip() and not element.attrib:
        record["_text"] = element.text.strip()
    return record

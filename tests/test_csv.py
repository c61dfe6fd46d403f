"""CsvParser and the byte sources: streaming, located errors, empty and odd input."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from redisbatch import BytesSource, CsvParser, DistributedImport, FileSource, SourceError, _csv
from redisbatch._parsers import Header, ParseFailure, RowBlock, line_at
from tests._memory import with_peak


def parse(data: bytes | str, *, located: bool = False, **options: Any) -> list[Any]:
    source = BytesSource(data)
    return flatten(CsvParser(**options).records(source.open(), source.describe()), located)


def flatten(items: Any, located: bool = False) -> list[Any]:
    """Parser items with row blocks opened up into their rows; ``located``:
    each row as ``(row, the line it starts on)``."""
    out: list[Any] = []
    for item in items:
        if not isinstance(item, RowBlock):
            out.append(item)
        elif located:
            assert item.lines
            out.extend((row, line_at(item.lines, i)) for i, row in enumerate(item.rows))
        else:
            out.extend(item.rows)
    return out


def test_header_then_rows() -> None:
    """The header comes first, then each row's values in header order."""
    assert parse("a,b\n1,2\n3,4\n") == [Header(["a", "b"]), ["1", "2"], ["3", "4"]]


def test_quoted_fields_bom_crlf_and_unicode() -> None:
    """Quoted newlines and delimiters, a UTF-8 BOM, CRLF and non-BMP characters."""
    data = '\ufeffname,note\r\n"Ada","line1\nline2, still"\r\n😀,"say ""hi"""\r\n'
    assert parse(data.encode()) == [
        Header(["name", "note"]),
        ["Ada", "line1\nline2, still"],
        ["😀", 'say "hi"'],
    ]


def test_wrong_column_count_is_a_located_parse_failure() -> None:
    """A row with too many or too few values is a ParseFailure naming its line."""
    items = parse("a,b\n1,2\n1,2,3\n\n4\n5,6\n")
    assert items[0] == Header(["a", "b"])
    assert items[1] == ["1", "2"]
    assert items[2] == ParseFailure(
        "line 3: expected 2 values, got 3", {"a": "1", "b": "2", "_extra": ["3"]}, 3
    )
    assert items[3] == ParseFailure("line 5: expected 2 values, got 1", {"a": "4"}, 5)
    assert items[4] == ["5", "6"]


def test_empty_input_and_header_only() -> None:
    """No bytes: no records; a header alone: just the header."""
    assert parse(b"") == []
    assert parse("a,b\n") == [Header(["a", "b"])]


def test_columns_given_means_no_header_row() -> None:
    """With columns=, the first line is data."""
    assert parse("1;2\n", delimiter=";", columns=["x", "y"]) == [Header(["x", "y"]), ["1", "2"]]


def test_header_names_are_stripped_and_duplicates_refused() -> None:
    """Header cells are stripped; a duplicate name is a SourceError naming it."""
    assert parse(" a ,b,\n1,2,3\n")[0] == Header(["a", "b", "column_3"])
    with pytest.raises(SourceError, match="column 'a' twice"):
        parse("a,a\n1,2\n")


def test_undecodable_bytes_name_the_place() -> None:
    """Bytes that are not valid in the encoding raise SourceError with the place."""
    with pytest.raises(SourceError, match=r"line 2, column 3 \(byte offset 6\).*'cp1252'"):
        parse(b"a,b\n1,\xff\n")
    assert parse("a\né\n".encode("latin-1"), encoding="latin-1") == [Header(["a"]), ["é"]]


def users_bytes(rows: int, bad_line: int, *, eol: bytes = b"\n") -> tuple[bytes, int]:
    """A header and ``rows`` rows; line ``bad_line`` holds a cp1252 'é'. Returns
    the bytes and the byte offset of the bad byte."""
    lines = [b"id,name,city"] + [f"{i},User {i},Paris".encode() for i in range(1, rows + 1)]
    lines[bad_line - 1] = f"{bad_line - 1},Jos".encode() + b"\xe9,Lyon"
    data = eol.join(lines) + eol
    return data, data.index(b"\xe9")


@pytest.mark.parametrize(("rows", "bad_line"), [(20, 8), (100_000, 50_002)])
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
@pytest.mark.parametrize("delimiter", [",", None])
def test_a_bad_byte_is_located_by_exact_line_and_offset(
    rows: int, bad_line: int, eol: bytes, delimiter: str | None
) -> None:
    """A cp1252 byte in a UTF-8 CSV names its exact line, column and byte offset,
    and the parser argument that reads the file."""
    data, offset = users_bytes(rows, bad_line, eol=eol)
    with pytest.raises(SourceError) as caught:
        parse(data, delimiter=delimiter)
    message = str(caught.value)
    assert f"line {bad_line}, column {len(str(bad_line - 1)) + 5} (byte offset {offset})" in message
    assert "b'\\xe9'" in message and "CsvParser(encoding='cp1252')" in message
    cp1252 = flatten(CsvParser(encoding="cp1252").records(iter([data]), "x"))
    assert cp1252[bad_line - 1] == [str(bad_line - 1), "José", "Lyon"]


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.sampled_from(["1,a", "2,é", '3,"x\ny"', '"4",""', "", "5,\r", "6,b\r"]),
        max_size=40,
    ),
    at=st.integers(0, 10_000),
    cut=st.lists(st.integers(1, 50), min_size=1, max_size=8),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_bad_byte_location_holds_whatever_the_chunks(
    lines: list[str], at: int, cut: list[int], eol: str
) -> None:
    """Wherever the bad byte sits and however the bytes are cut into chunks,
    the line and byte offset named are those of the bad byte."""
    data = ("a,b" + eol + eol.join(lines) + eol).encode()
    offset = at % (len(data) + 1)
    while 0 < offset < len(data) and data[offset] & 0xC0 == 0x80:
        offset -= 1  # not inside a multi-byte character
    data = data[:offset] + b"\xff" + data[offset:]
    text_before = data[:offset].decode()
    line = text_before.count("\n") + text_before.count("\r") - text_before.count("\r\n") + 1
    chunks, start = [], 0
    while start < len(data):
        size = cut[len(chunks) % len(cut)]
        chunks.append(data[start : start + size])
        start += size
    with pytest.raises(SourceError, match=rf"line {line}, column \d+ \(byte offset {offset}\)"):
        flatten(CsvParser().records(iter(chunks), "x"))


def test_an_undecodable_file_fails_its_job_and_keeps_what_was_stored(client: Any) -> None:
    """prepare: the job is left FAILED with the located error; batches stored before stay."""
    di = DistributedImport(client, batch_size=1000)
    data, offset = users_bytes(100_000, 50_002)
    with pytest.raises(SourceError, match=rf"line 50002, column 10 \(byte offset {offset}\)"):
        di.prepare(BytesSource(data), CsvParser(), job_id="latin")
    status = di.status("latin")
    assert status is not None and status.state == "FAILED"
    assert f"line 50002, column 10 (byte offset {offset})" in (status.error or "")
    assert 40_000 <= status.total_records < 50_001


def test_chunk_boundaries_do_not_matter(tmp_path: Path) -> None:
    """A file larger than one read chunk parses the same as in one piece."""
    rows = [f'{i},"multi\nline {i}",{"é" * (i % 7)}' for i in range(20_000)]
    text = "n,text,accent\n" + "\n".join(rows) + "\n"
    path = tmp_path / "big.csv"
    path.write_text(text, encoding="utf-8")
    source = FileSource(path)
    items = flatten(CsvParser().records(source.open(), source.describe()))
    assert len(items) == 20_001
    assert items[12_345] == ["12344", "multi\nline 12344", "é" * (12344 % 7)]


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    """Opening a file that does not exist raises SourceError naming it."""
    with pytest.raises(SourceError, match=r"nope\.csv"):
        FileSource(tmp_path / "nope.csv").open()


def test_parser_options_are_checked() -> None:
    """Bad parser options fail at construction."""
    with pytest.raises(ValueError, match="delimiter"):
        CsvParser(delimiter=";;")
    with pytest.raises(ValueError, match="encoding"):
        CsvParser(encoding="no-such-codec")


def one_pass(text: str, delimiter: str, columns: list[str] | None) -> list[Any]:
    """What the parser must give: one csv.reader over the whole text, row by
    row; each row as ``(row, the line it starts on)``."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    out: list[Any] = [] if columns is None else [Header(columns)]
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return out
        except csv.Error as exc:
            if columns is None:
                raise SourceError(f"cannot read the header: {exc}") from None
            out.append(ParseFailure(f"line {reader.line_num}: {exc}", {}, start))
            continue
        if not row:
            continue
        if columns is None:
            columns = [name.strip() or f"column_{i + 1}" for i, name in enumerate(row)]
            if len(set(columns)) < len(columns):
                raise SourceError("the header names a column twice")
            out.append(Header(columns))
        elif len(row) != len(columns):
            raw: dict[str, Any] = dict(zip(columns, row, strict=False))
            if len(row) > len(columns):
                raw["_extra"] = row[len(columns) :]
            message = f"line {reader.line_num}: expected {len(columns)} values, got {len(row)}"
            out.append(ParseFailure(message, raw, start))
        else:
            out.append((row, start))


@contextmanager
def reading(chunk_chars: int, field_limit: int) -> Iterator[None]:
    saved_chunk, saved_limit = _csv.CHUNK_CHARS, csv.field_size_limit()
    _csv.CHUNK_CHARS = chunk_chars  # type: ignore[misc]
    csv.field_size_limit(field_limit)
    try:
        yield
    finally:
        _csv.CHUNK_CHARS = saved_chunk  # type: ignore[misc]
        csv.field_size_limit(saved_limit)


@settings(max_examples=1500, deadline=None)
@given(
    text=st.text(alphabet='ab,;"\n\r é😀\t', max_size=200),
    delimiter=st.sampled_from([",", ";"]),
    columns=st.sampled_from([None, ["x", "y"], ["x"]]),
    chunk_chars=st.integers(1, 40),
    field_limit=st.sampled_from([131072, 6]),
)
@example(text='a,b\n1,"2\n3"\n4,5', delimiter=",", columns=None, chunk_chars=5, field_limit=131072)
@example(text="a,b\r\n1,2\r3,4\r\n", delimiter=",", columns=None, chunk_chars=3, field_limit=6)
def test_chunked_reading_is_one_csv_reader_pass(
    text: str, delimiter: str, columns: list[str] | None, chunk_chars: int, field_limit: int
) -> None:
    """Chunks read whole, split or row by row give exactly one csv.reader pass's records."""
    with reading(chunk_chars, field_limit):
        try:
            expected: Any = one_pass(text, delimiter, columns)
        except SourceError:
            expected = SourceError
        try:
            got: Any = parse(text.encode(), located=True, delimiter=delimiter, columns=columns)
        except SourceError:
            got = SourceError
    assert got == expected


@st.composite
def csv_documents(draw: st.DrawFn) -> str:
    """CSV-like text: records of values, each quoted or not, with escaped or
    stray quotes, delimiters and line ends inside, LF or CRLF ends."""
    value = st.text(alphabet='ab,;"\n\r é', max_size=4)
    quote_all = draw(st.sampled_from([True, False, None]))  # None: decided per value
    eol = draw(st.sampled_from(["\n", "\r\n", None]))  # None: decided per record
    text = ""
    for values in draw(st.lists(st.lists(value, min_size=1, max_size=3), max_size=12)):
        cells = []
        for raw in values:
            quoted = draw(st.booleans()) if quote_all is None else quote_all
            escaped = raw.replace('"', '""') if quoted and draw(st.booleans()) else raw
            cells.append(f'"{escaped}"' if quoted else escaped)
        text += ",".join(cells) + (eol or draw(st.sampled_from(["\n", "\r\n", "\r", ""])))
    return text


@settings(max_examples=1500, deadline=None)
@given(
    text=csv_documents(),
    columns=st.sampled_from([None, ["x", "y"], ["x"]]),
    chunk_chars=st.integers(1, 40),
    field_limit=st.sampled_from([131072, 3]),
)
@example(text='"a","b"\r\n"1","2"\r\n"3",""\r\n', columns=None, chunk_chars=9, field_limit=131072)
@example(text='"a","b"\n"1","2"\n"x,y","z"\n', columns=None, chunk_chars=30, field_limit=131072)
@example(  # data that reads as the sentinel row must not pass for it
    text=f'1,"x\np,q,r\ny",2\n"{_csv._SENTINEL}"\n',
    columns=["x", "y", "z"],
    chunk_chars=200,
    field_limit=131072,
)
def test_chunked_reading_of_csv_like_documents(
    text: str, columns: list[str] | None, chunk_chars: int, field_limit: int
) -> None:
    """Quoted, unquoted and mixed records read in chunks give one csv.reader pass's records."""
    with reading(chunk_chars, field_limit):
        try:
            expected: Any = one_pass(text, ",", columns)
        except SourceError:
            expected = SourceError
        try:
            got: Any = parse(text.encode(), located=True, columns=columns)
        except SourceError:
            got = SourceError
    assert got == expected


@contextmanager
def line_limit(chars: int) -> Iterator[None]:
    """Lines over ``chars`` are overlong (chunks and the field limit set below it)."""
    saved = _csv.LINE_CHARS
    _csv.LINE_CHARS = chars  # type: ignore[misc]
    try:
        with reading(64, min(chars, 100)):
            yield
    finally:
        _csv.LINE_CHARS = saved  # type: ignore[misc]


def test_an_overlong_line_is_a_located_parse_error() -> None:
    """A line over the line limit fails as a PARSE_ERROR naming it; its neighbours are kept."""
    with line_limit(1000):
        items = parse("a,b\n1,2\n" + "x" * 5000 + "\n3,4\n")
    assert items == [
        Header(["a", "b"]),
        ["1", "2"],
        ParseFailure("line 3: longer than 1000 characters", {}, 3),
        ["3", "4"],
    ]


def test_an_overlong_line_inside_a_quoted_field() -> None:
    """An overlong line met while a quoted field runs past a chunk fails that record only."""
    text = 'a,b\n1,"start\n' + "z" * 5000 + '\nend"\n3,4\n'
    with line_limit(1000):
        items = parse(text)
    assert items == [
        Header(["a", "b"]),
        ParseFailure("line 3: longer than 1000 characters", {}, 2),  # the record starts on 2
        ParseFailure("line 4: expected 2 values, got 1", {"a": 'end"'}, 4),
        ["3", "4"],
    ]


def test_a_document_without_line_ends_is_not_loaded_whole() -> None:
    """20 MB without a line end: a PARSE_ERROR read in bounded memory (a SourceError as header)."""

    def endless() -> Iterator[bytes]:
        for _ in range(320):
            yield b"x" * 65536

    with line_limit(1 << 16):
        items, peak = with_peak(
            lambda: flatten(CsvParser(columns=["a"]).records(endless(), "<stream>"))
        )
        assert items == [Header(["a"]), ParseFailure("line 1: longer than 65536 characters", {}, 1)]
        assert peak < 4 * 2**20, peak
        with pytest.raises(SourceError, match="cannot read the header: line 1: longer than"):
            flatten(CsvParser().records(endless(), "<stream>"))


@settings(max_examples=500, deadline=None)
@given(
    text=csv_documents(),
    cuts=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    chunk_chars=st.integers(1, 40),
)
def test_byte_chunks_do_not_matter(text: str, cuts: list[int], chunk_chars: int) -> None:
    """However the bytes arrive (multi-byte characters and CR LF split across
    chunks), the records and their lines are those of one csv.reader pass."""
    data = text.encode()
    chunks, start = [], 0
    while start < len(data):
        size = cuts[len(chunks) % len(cuts)]
        chunks.append(data[start : start + size])
        start += size
    with reading(chunk_chars, 131072):
        try:
            expected: Any = one_pass(text, ",", None)
        except SourceError:
            expected = SourceError
        try:
            got: Any = flatten(CsvParser().records(iter(chunks), "x"), located=True)
        except SourceError:
            got = SourceError
    assert got == expected

"""JSON, NDJSON, XML, compression and CSV details: happy paths, empty input, a
bad record among good ones, broken documents, Unicode, and fuzzing."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redisbatch import (
    BytesSource,
    CsvParser,
    DistributedImport,
    JsonParser,
    Parser,
    SourceError,
    XmlParser,
    _parsers,
)
from redisbatch._parsers import Header, Line, ParseFailure, RowBlock
from redisbatch._sources import decompressed
from tests._memory import with_peak

Make = Callable[..., DistributedImport]


def parse(parser: Parser, data: bytes, chunk: int = 7) -> list[Any]:
    """The records the parser gives for ``data`` cut in chunks (Line markers left out)."""
    chunks = iter([data[i : i + chunk] for i in range(0, len(data), chunk)])
    out: list[Any] = []
    for item in parser.records(decompressed(chunks, "test"), "test"):
        if not isinstance(item, Line):
            out.extend(item.rows if isinstance(item, RowBlock) else [item])
    return out


def located(parser: Parser, data: bytes, chunk: int = 7) -> list[tuple[Any, int | None]]:
    """Each record with the line it starts on, as the Line markers place it."""
    chunks = iter([data[i : i + chunk] for i in range(0, len(data), chunk)])
    out: list[tuple[Any, int | None]] = []
    cursor: int | None = None
    for item in parser.records(decompressed(chunks, "test"), "test"):
        if isinstance(item, Line):
            cursor = item.number
            continue
        out.append((item, cursor))
        cursor = None if cursor is None else cursor + 1
    return out


# ---------------------------------------------------------------- JSON


def test_json_array_streams_objects_and_flags_the_rest() -> None:
    """Objects are records; other values are PARSE_ERRORs; strings may hold brackets."""
    data = '[{"a": "x,]}\\"", "n": 1}, 2, {"b": [1, {"c": null}]}, {"d": "😀"}]'.encode()
    items = parse(JsonParser(), data, chunk=3)
    assert items[0] == {"a": 'x,]}"', "n": 1}
    assert items[1] == ParseFailure("element 1: a JSON int, not an object", {"value": 2})
    assert items[2] == {"b": [1, {"c": None}]}
    assert items[3] == {"d": "😀"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b'[{"a": 1}, {"b": 2', "truncated JSON array: it ends at byte 18"),
        (b'[{"a": 1},, {"b": 2}]', "missing array element at byte 10"),
        (b'[{"a": tru}]', "invalid JSON in element 0 at byte 1"),
        (b'[{"a": 1}] trailing', "data after the end of the JSON array"),
        (b'[{"a": 1}}', "unbalanced"),
    ],
)
def test_broken_json_arrays_name_the_offset(document: bytes, message: str) -> None:
    """A truncated or broken array is a SourceError naming where."""
    with pytest.raises(SourceError, match=message):
        parse(JsonParser(), document)


def test_ndjson_lines_with_a_bad_line_and_crlf() -> None:
    """NDJSON is detected; a malformed or non-object line is a PARSE_ERROR naming its line."""
    data = b'\xef\xbb\xbf{"a": 1}\r\n\r\n{"a": 2}\nnot json\n[1]\n{"a": "\xc3\xa9"}'
    items = parse(JsonParser(), data)
    assert items[0] == {"a": 1} and items[1] == {"a": 2} and items[4] == {"a": "é"}
    assert isinstance(items[2], ParseFailure) and items[2].message.startswith("line 4:")
    assert items[3] == ParseFailure("line 5: a JSON list, not an object", {"value": [1]})


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_ndjson_records_are_placed_on_their_lines(chunk: int) -> None:
    """Line markers place every NDJSON record, failures included, on its line,
    blank lines skipped, whatever the chunks."""
    data = b'\n{"a": 1}\r\n\r\n{"a": 2}\nnot json\n\n\n[1]\n{"a": 3}\n'
    got = [
        (getattr(item, "message", item), line) for item, line in located(JsonParser(), data, chunk)
    ]
    assert [line for _, line in got] == [2, 4, 5, 8, 9]
    assert got[0] == ({"a": 1}, 2) and got[4] == ({"a": 3}, 9)


def test_ndjson_undecodable_bytes_name_line_and_byte_offset() -> None:
    """A line that is not UTF-8 is a PARSE_ERROR naming its line and the bad byte's offset."""
    data = b'{"a": 1}\n{"a": "Jos\xe9"}\n{"a": 3}\n'
    items = parse(JsonParser(), data, chunk=4)
    assert items[0] == {"a": 1} and items[2] == {"a": 3}
    assert isinstance(items[1], ParseFailure)
    offset = data.index(b"\xe9")
    assert items[1].message.startswith(f"line 2: byte offset {offset}: b'\\xe9'")
    assert "must be UTF-8" in items[1].message


def test_json_array_undecodable_bytes_name_the_byte_offset() -> None:
    """An element that is not UTF-8 is a SourceError naming the element and exact byte."""
    data = b'[{"a": 1},\n  {"a": "Jos\xe9"}]'
    offset = data.index(b"\xe9")
    with pytest.raises(SourceError, match=rf"element 1: byte offset {offset}: "):
        parse(JsonParser(), data, chunk=5)


DEEP = b'{"a":' * 1000 + b"1" + b"}" * 1000


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b'[{"a": 1}, ' + DEEP + b', {"b": 2}]', "element 1 (byte offset 11)"),
        (b'{"a": 1}\n\n' + DEEP + b'\n{"b": 2}\n', "line 3"),
    ],
)
def test_json_nested_too_deep_is_a_parse_error_naming_the_element(data: bytes, where: str) -> None:
    """An element nested 1,000 deep is a PARSE_ERROR naming it; the records around it stay."""
    items = parse(JsonParser(), data, chunk=64)
    assert items[0] == {"a": 1} and items[2] == {"b": 2}
    assert isinstance(items[1], ParseFailure)
    assert items[1].message == f"{where}: JSON nested too deeply to decode (RecursionError)"


@contextmanager
def record_limit(size: int) -> Iterator[None]:
    saved = _parsers.RECORD_BYTES
    _parsers.RECORD_BYTES = size  # type: ignore[misc]
    try:
        yield
    finally:
        _parsers.RECORD_BYTES = saved  # type: ignore[misc]


@pytest.mark.parametrize("chunk", [7, 64])
def test_ndjson_lines_over_the_limit_are_parse_errors(chunk: int) -> None:
    """An NDJSON line over the size limit is a PARSE_ERROR naming it; its neighbours are kept."""
    big = b'{"big": "' + b"x" * 500 + b'"}'
    just_over = b'{"m": "' + b"y" * 100 + b'"}'  # 109 bytes: at chunk 64, its end tips it
    data = just_over + b'\n{"a": 1}\n' + big + b'\n{"a": 2}\n' + big
    with record_limit(100):
        assert parse(JsonParser(), data, chunk) == [
            ParseFailure("line 1: larger than 100 bytes", {}),
            {"a": 1},
            ParseFailure("line 3: larger than 100 bytes", {}),
            {"a": 2},
            ParseFailure("line 5: larger than 100 bytes", {}),
        ]


@pytest.mark.parametrize("chunk", [7, 64])
def test_json_elements_over_the_limit_are_parse_errors(chunk: int) -> None:
    """An array element over the size limit is a PARSE_ERROR; the scan goes on past it."""
    data = b'[{"a": 1}, {"big": "' + b"x" * 500 + b'", "n": [1, {"b": "]"}]}, {"a": 2}]'
    with record_limit(100):
        assert parse(JsonParser(), data, chunk) == [
            {"a": 1},
            ParseFailure("element 1: larger than 100 bytes", {}),
            {"a": 2},
        ]


@pytest.mark.parametrize(
    ("head", "tail"), [(b'{"a": 1}\n{"big": "', b'"}\n'), (b'[{"big": "', b'"}]')]
)
def test_a_huge_json_record_is_read_in_bounded_memory(head: bytes, tail: bytes) -> None:
    """20 MB in one NDJSON line or one array element never sits in memory."""

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(320):
            yield b"x" * 65536
        yield tail

    with record_limit(1 << 16):
        items, peak = with_peak(lambda: list(JsonParser().records(chunks(), "<stream>")))
    assert isinstance(items[-1], ParseFailure) and "larger than 65536 bytes" in items[-1].message
    assert peak < 4 * 2**20, peak


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.sampled_from(
            [b'{"a": 1}', b'{"b": "x\\n"}', b"", b"  ", b"[1]", b"no", b'{"c": "\xc3\xa9"}']
        ),
        max_size=20,
    ),
    end=st.sampled_from([b"", b"\n", b"\r\n"]),
    chunk=st.integers(1, 30),
)
def test_ndjson_chunking_does_not_matter(lines: list[bytes], end: bytes, chunk: int) -> None:
    """NDJSON read in chunks of any size gives what it gives read at once."""
    data = b'{"first": 0}\n' + b"\n".join(lines) + end
    assert parse(JsonParser(), data, chunk) == parse(JsonParser(), data, len(data))


def test_empty_json_inputs() -> None:
    assert parse(JsonParser(), b"") == []
    assert parse(JsonParser(), b"  \n ") == []
    assert parse(JsonParser(), b"[ ]") == []


# ---------------------------------------------------------------- XML


def test_xml_records_from_attributes_and_children() -> None:
    """record_tag elements become records: attributes, child text, repeated tags as lists."""
    data = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<export><meta>x</meta>'
        b'<user id="1"><email>a@x.io</email><tag>a</tag><tag>b</tag></user>'
        b'<user id="2"><email> b@x.io </email><name>\xf0\x9f\x98\x80</name></user></export>'
    )
    assert parse(XmlParser(record_tag="user"), data) == [
        {"id": "1", "email": "a@x.io", "tag": ["a", "b"]},
        {"id": "2", "email": "b@x.io", "name": "😀"},
    ]
    assert parse(XmlParser(), b"<records></records>") == []


@pytest.mark.parametrize(
    "attack",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
        b'"&lol;&lol;&lol;&lol;">]><records><record>&lol2;</record></records>',
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<records><record>&xxe;</record></records>",
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r []><records/>'.encode("utf-16"),
    ],
)
def test_xml_entity_attacks_are_refused(attack: bytes) -> None:
    """Billion laughs and XXE: refused before any entity is expanded or fetched."""
    with pytest.raises(SourceError, match="document type declaration"):
        parse(XmlParser(), attack)


def test_a_wrong_record_tag_is_named_not_an_empty_import() -> None:
    """A document whose root holds no record_tag element is a SourceError naming what it holds."""
    data = b"<customers><customer><id>1</id></customer></customers>"
    with pytest.raises(SourceError, match=r"no <record> element .* holds <customer>"):
        parse(XmlParser(), data)
    assert parse(XmlParser(), b"<records/>") == []
    assert parse(XmlParser(record_tag="customer"), data) == [{"id": "1"}]


def test_xml_elements_outside_records_are_not_kept() -> None:
    """Elements outside records are cleared as read: memory stays flat over 200,000 of them."""

    def chunks() -> Iterator[bytes]:
        yield b"<export>"
        for _ in range(100):  # chunks of 58 KB, as a file source reads 64 KiB
            yield b"<meta><x>1</x><y>2</y></meta>" * 2_000
        yield b"<record><a>1</a></record></export>"

    items, peak = with_peak(lambda: list(XmlParser().records(chunks(), "<stream>")))
    assert items == [{"a": "1"}]
    assert peak < 4 * 2**20, peak


def test_malformed_xml_names_line_and_column() -> None:
    with pytest.raises(SourceError, match="line 2, column"):
        parse(XmlParser(), b"<records>\n<record><a>1</b></record></records>")


# ---------------------------------------------------------------- compression


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_compressed_sources_are_read_transparently(compress: Callable[[bytes], bytes]) -> None:
    """gzip, bz2 and xz are detected by magic bytes, for every format."""
    csv_data = b"a,b\n1,2\n3,4\n"
    assert parse(CsvParser(), compress(csv_data)) == [Header(["a", "b"]), ["1", "2"], ["3", "4"]]
    assert parse(JsonParser(), compress(b'[{"a": 1}]')) == [{"a": 1}]
    assert parse(XmlParser(), compress(b"<r><record><a>1</a></record></r>")) == [{"a": "1"}]


def test_zstd_data_is_named_not_misread() -> None:
    """zstd data (no decoder in the standard library) is a SourceError saying so."""
    frame = b"\x28\xb5\x2f\xfd\x04\x58\x41\x00\x00a,b\n1,2\n"
    for parser in (CsvParser(), JsonParser(), XmlParser()):
        with pytest.raises(SourceError, match="zstd-compressed"):
            parse(parser, frame)


def test_a_zip_archive_such_as_an_xlsx_workbook_is_named() -> None:
    """A ZIP archive (an .xlsx workbook) is a SourceError saying what it is."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as workbook:
        workbook.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    for parser in (CsvParser(), JsonParser(), XmlParser()):
        with pytest.raises(SourceError, match=r"ZIP archive \(an Excel \.xlsx"):
            parse(parser, archive.getvalue())


def test_concatenated_gzip_members_and_truncated_data() -> None:
    data = b"".join(f"{i},{i * i}\n".encode() for i in range(20000))
    joined = gzip.compress(b"n,sq\n" + data[:1000]) + gzip.compress(data[1000:])
    assert len(parse(CsvParser(), joined, chunk=4096)) == 20001
    compressed = gzip.compress(bytes(range(256)) * 400)
    with pytest.raises(SourceError, match="truncated gzip"):
        parse(CsvParser(encoding="latin-1"), compressed[: len(compressed) // 2])


# ---------------------------------------------------------------- CSV


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_sniffed(delimiter: str) -> None:
    data = f"name{delimiter}city\nAda{delimiter}London\nBob{delimiter}Paris, TX\n".encode()
    if delimiter == ",":
        data = b'name,city\nAda,London\nBob,"Paris, TX"\n'
    assert parse(CsvParser(delimiter=None), data) == [
        Header(["name", "city"]),
        ["Ada", "London"],
        ["Bob", "Paris, TX"],
    ]


def test_oversized_csv_field_is_a_located_parse_error() -> None:
    """A field over the csv module's limit fails its record, not the import."""
    huge = "x" * (csv.field_size_limit() + 10)
    items = parse(CsvParser(), f'a,b\n1,2\n3,"{huge}"\n5,6\n'.encode(), chunk=65536)
    assert items[1] == ["1", "2"]
    assert isinstance(items[2], ParseFailure) and items[2].message.startswith("line 3:")
    assert "field larger than field limit" in items[2].message
    assert items[-1] == ["5", "6"]


# ---------------------------------------------------------------- end to end


def test_each_format_end_to_end(make_import: Make) -> None:
    """JSON, NDJSON and XML sources prepare and process like CSV."""
    di = make_import()
    sources = [
        (BytesSource(b'[{"n": 1}, {"n": 2}, 3]'), JsonParser()),
        (BytesSource(b'{"n": 1}\n{"n": 2}\nbroken\n'), JsonParser()),
        (BytesSource(gzip.compress(b"<r><record n='1'/><record n='2'/><x/></r>")), XmlParser()),
    ]
    for source, parser in sources:
        job = di.prepare(source, parser).job_id
        summary = di.run_worker(job, lambda r, c: None)
        assert summary.processed == 2, parser
        failed = list(di.failed_records(job))
        assert all(r.errors[0].code == "PARSE_ERROR" for r in failed)


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(lambda b: gzip.compress(b)[: len(b) // 2 + 10], st.binary(max_size=200)),
        st.text(alphabet='[]{},:"\\ \n\tab1<>/=!?x', max_size=120).map(str.encode),
    ),
    chunk=st.integers(1, 64),
    parser=st.sampled_from(
        [CsvParser(), CsvParser(delimiter=None), JsonParser(), XmlParser(record_tag="a")]
    ),
)
def test_parsers_on_arbitrary_bytes(data: bytes, chunk: int, parser: Parser) -> None:
    """Arbitrary bytes give records, PARSE_ERROR records, or a SourceError: nothing else."""
    try:
        items = parse(parser, data, chunk)
    except SourceError:
        return
    for item in items:
        assert isinstance(item, Header | ParseFailure | dict | list), item


@pytest.mark.parametrize("chunk", [1, 2, 5, 4096])
def test_xml_undecodable_bytes_name_exact_line_and_offset(chunk: int) -> None:
    """A byte that is not UTF-8 in an XML document without an encoding declaration
    names its line and byte offset and how to declare the encoding; declared, it reads."""
    data = b"<r><record><a>1</a></record>\n\n<record><a>Jos\xe9</a></record></r>"
    offset = data.index(b"\xe9")
    with pytest.raises(SourceError, match=rf"line 3 \(byte offset {offset}\): b'\\xe9' is not"):
        parse(XmlParser(), data, chunk)
    declared = b'<?xml version="1.0" encoding="windows-1252"?>' + data
    assert parse(XmlParser(), declared, chunk)[1] == {"a": "José"}

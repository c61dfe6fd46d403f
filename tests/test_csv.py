"""CsvParser and the byte sources: streaming, located errors, empty and odd input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from redisbatch import BytesSource, CsvParser, FileSource, SourceError
from redisbatch._parsers import Header, ParseFailure, RowBlock


def parse(data: bytes | str, **options: Any) -> list[Any]:
    source = BytesSource(data)
    return flatten(CsvParser(**options).records(source.open(), source.describe()))


def flatten(items: Any) -> list[Any]:
    """Parser items with row blocks opened up into their rows."""
    out: list[Any] = []
    for item in items:
        out.extend(item.rows if isinstance(item, RowBlock) else [item])
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
        "line 3: expected 2 values, got 3", {"a": "1", "b": "2", "_extra": ["3"]}
    )
    assert items[3] == ParseFailure("line 5: expected 2 values, got 1", {"a": "4"})
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
    with pytest.raises(SourceError, match=r"within the first 8 bytes"):
        parse(b"a,b\n1,\xff\n")
    assert parse("a\né\n".encode("latin-1"), encoding="latin-1") == [Header(["a"]), ["é"]]
    big = b"a\n" + b"x\n" * 100_000 + b"\xff\n"
    with pytest.raises(SourceError, match=r"after line \d+, within the first \d+ bytes"):
        parse(big)


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

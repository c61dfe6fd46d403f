"""preview, count and generate_template."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest

from redisbatch import (
    BytesSource,
    ConfigurationError,
    CsvParser,
    DistributedImport,
    Field,
    IterableSource,
    JsonParser,
    Schema,
    generate_template,
)
from redisbatch._demo import USERS_SCHEMA
from redisbatch._validate import Validator

Make = Callable[..., DistributedImport]
DATA = b"Mail,age\na@x.io,1\nbad,2\nA@X.io,3\n\n,\n1,2,3\nz@x.io,9\n"
SCHEMA = Schema(
    [Field("email", "email", aliases=["mail"], required=True), Field("age", "integer")],
    unique_fields=["email"],
    skip_empty_rows=True,
)


def test_preview_validates_the_first_records_without_storing(
    make_import: Make, client: object
) -> None:
    """preview: valid and invalid records, sample uniqueness, resolved columns, no keys written."""
    di = make_import(SCHEMA)
    result = di.preview(BytesSource(DATA), CsvParser(), max_records=4)
    assert result.total_sampled == 4
    assert result.columns == ["email", "age"]
    assert [r.index for r in result.valid_records] == [0]
    assert result.valid_records[0].parsed == {"email": "a@x.io", "age": 1}
    codes = [(r.index, r.errors[0].code) for r in result.invalid_records]
    assert codes == [(1, "TYPE_MISMATCH"), (2, "DUPLICATE_VALUE"), (3, "PARSE_ERROR")]
    assert result.invalid_records[1].errors[0].value == "A@X.io"
    assert client.dbsize() == 0  # type: ignore[attr-defined]


def test_preview_records_carry_their_source_line(make_import: Make) -> None:
    """Previewed records name the line they start on (CSV, NDJSON); iterables have none."""
    di = make_import(SCHEMA)
    result = di.preview(BytesSource(DATA), CsvParser(), max_records=5)
    lines = {r.index: r.line for r in [*result.valid_records, *result.invalid_records]}
    assert lines == {0: 2, 1: 3, 2: 4, 3: 7, 4: 8}  # lines 5 and 6 are empty rows, skipped
    ndjson = b'{"email": "a@x.io"}\n\n{"email": "nope"}\n'
    result = di.preview(BytesSource(ndjson), JsonParser())
    assert [(r.index, r.line) for r in result.invalid_records] == [(1, 3)]
    result = di.preview(IterableSource([{"email": "nope"}]))
    assert [(r.index, r.line) for r in result.invalid_records] == [(0, None)]


def test_count_skips_empty_rows(make_import: Make) -> None:
    """count: records after skip_empty_rows, parse failures included."""
    assert make_import(SCHEMA).count(BytesSource(DATA), CsvParser()) == 5
    assert make_import().count(BytesSource(DATA), CsvParser()) == 6
    assert make_import().count(IterableSource([{"a": 1}, {"a": 2}])) == 2


def test_preview_checks_its_arguments(make_import: Make) -> None:
    """max_records must be a non-negative int; bytes need a parser."""
    di = make_import()
    with pytest.raises(ConfigurationError, match="max_records"):
        di.preview(IterableSource([]), max_records=-1)
    with pytest.raises(ConfigurationError, match="parser"):
        di.preview(BytesSource(b"a\n1\n"))


def test_generate_template_rows_validate_against_their_schema() -> None:
    """The template's header is the schema's fields and its example rows are valid."""
    text = generate_template(USERS_SCHEMA, example_rows=5)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["email", "name", "age", "country", "signup_date"]
    assert len(rows) == 6
    validator = Validator(USERS_SCHEMA)
    for row in rows[1:]:
        _, errors = validator.validate(dict(zip(rows[0], row, strict=True)))
        assert errors == []
    assert generate_template(Schema([Field("tags", "array", separator=";")]), 1) == (
        "tags\ntags1a;tags1b\n"
    )
    with pytest.raises(ValueError, match="example_rows"):
        generate_template(USERS_SCHEMA, -1)

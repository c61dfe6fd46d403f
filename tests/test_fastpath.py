"""The batch fast path decides every row exactly as the field-by-field checker."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from redisbatch import ABSENT, Field, Schema
from redisbatch._codec import encode_row
from redisbatch._fastpath import FastValidator, _split_items, as_record
from redisbatch._validate import Validator

TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "1",
            "-0",
            "+5",
            "42",
            " 7 ",
            "3.0",
            "3.5",
            "1e3",
            "1E3",
            "-1e400",
            "1e20",
            "9007199254740993",
            "9007199254740993.0",
            "nan",
            "NaN",
            "inf",
            "-Infinity",
            "1_000",
            "٣",
            "true",
            "TRUE",
            "False",
            "yes",
            "no",
            "null",
            "None",
            "2024-02-29",
            "2024-02-30",
            "20240229",
            "2024-01-02T10:11:12",
            "2024-01-02T10:11:12Z",
            "2024-01-02 10:11:12+02:00",
            "2024-01-02T23:59:60",
            "a@b.co",
            " a@b.co",
            "a@b",
            "x@y.z.w",
            "DE",
            "de",
            "FR",
            "a;b;;c",
            " ; ",
            "a,b",
            "😀",
            "\x00",
        ]
    ),
    st.text(max_size=12),
)
VALUE = st.one_of(
    TEXT,
    TEXT,
    TEXT,
    st.integers(-(2**63), 2**64 - 1),  # what msgpack can store
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.just(ABSENT),
    st.just(datetime(2024, 1, 2, 3, 4, 5)),
    st.just(datetime(2024, 1, 2, tzinfo=UTC)),
    st.just(date(2024, 1, 2)),
    st.lists(st.sampled_from(["a", " b ", "", 3]), max_size=3),
)
TYPES = ["string", "number", "integer", "boolean", "date", "datetime", "email", "array", "custom"]


@st.composite
def fields(draw: st.DrawFn, name: str) -> Field:
    kind = draw(st.sampled_from(TYPES))
    options: dict[str, Any] = {"required": draw(st.booleans())}
    if kind in ("number", "integer") and draw(st.booleans()):
        options["min"] = draw(st.sampled_from([0, -5, 1.5, 10]))
    if kind in ("number", "integer") and draw(st.booleans()):
        high = draw(st.sampled_from([100, 3, 1e300]))
        if high >= options.get("min", high):  # min above max is refused by Field
            options["max"] = high
    if kind == "string" and draw(st.booleans()):
        options["choices"] = draw(st.sampled_from([["DE", "FR"], ["DE", ""]]))
    if kind in ("string", "email", "array") and draw(st.booleans()):
        options["min_length"] = draw(st.integers(0, 3))
    if kind in ("string", "email") and draw(st.booleans()):
        options["max_length"] = draw(st.integers(options.get("min_length", 0), 6))
    if kind in ("string", "integer") and draw(st.booleans()):
        options["pattern"] = draw(st.sampled_from([r"\d", "^D", "a"]))
    if kind == "array":
        options["separator"] = draw(st.sampled_from([",", ";"]))
    if kind == "date" and draw(st.booleans()):
        options["min"] = date(2024, 1, 1)
    if draw(st.integers(0, 5)) == 0:
        options["default"] = draw(st.sampled_from(["5", "DE", "2024-01-01", "x@y.io"]))
    if draw(st.integers(0, 5)) == 0:
        options["validator"] = lambda value: bool(str(value).strip("0"))
    if draw(st.integers(0, 8)) == 0:
        options["transform"] = lambda value: value.upper() if isinstance(value, str) else value
    return Field(name, kind, **options)  # type: ignore[arg-type]


@st.composite
def cases(draw: st.DrawFn) -> tuple[Schema, list[str], list[list[Any]]]:
    count = draw(st.integers(1, 4))
    schema_fields = [draw(fields(f"f{i}")) for i in range(count)]
    schema = Schema(schema_fields, strict=draw(st.booleans()))
    names = [f.name for f in schema_fields]
    columns = draw(st.permutations(names))
    columns = columns[: draw(st.integers(0, len(columns)))]
    columns += draw(st.lists(st.sampled_from(["x", "Other", "F0"]), unique=True, max_size=2))
    rows = draw(
        st.lists(
            st.lists(VALUE, min_size=len(columns), max_size=len(columns)), min_size=1, max_size=70
        )
    )
    return schema, columns, rows


def reference(validator: Validator, columns: list[str], row: list[Any]) -> Any:
    """The field-by-field result for a row as a worker receives it (after storage)."""
    return validator.check_raw_row(columns, msgspec.Raw(encode_row(row)))


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types (1 == 1.0 == True for ==); key order aside."""
    (parsed_a, errors_a), (parsed_b, errors_b) = a, b
    parsed_a, parsed_b = as_record(parsed_a), as_record(parsed_b)
    return repr(sorted(parsed_a.items())) == repr(sorted(parsed_b.items())) and repr(
        list(errors_a)
    ) == repr(list(errors_b))


@settings(max_examples=600, deadline=None)
@given(cases())
def test_fast_path_equals_field_by_field(case: tuple[Schema, list[str], list[list[Any]]]) -> None:
    """For any schema, header and rows, check_rows == check_row per row (values and types)."""
    schema, columns, rows = case
    validator = Validator(schema)
    fast = validator.check_rows(columns, rows)
    slow = [reference(validator, columns, row) for row in rows]
    for row, got, want in zip(rows, fast, slow, strict=True):
        assert same(got, want), (row, got, want)


def test_the_users_schema_takes_the_fast_path() -> None:
    """A typical schema compiles to the fast path (not the row-by-row fallback)."""
    from redisbatch._demo import USERS_SCHEMA

    validator = Validator(USERS_SCHEMA)
    columns = ["email", "name", "age", "country", "signup_date"]
    validator.check_rows(columns, [["a@b.co", "A", "3", "DE", "2024-01-01"]])
    assert validator._fast[tuple(columns)] is not None


NUMERIC = st.from_regex(r"\A\s?[+-]?\d{0,20}(\.\d{0,5})?([eE][+-]?\d{1,3})?\s?\Z")
DATELIKE = st.from_regex(
    r"\A\d{4}-\d{1,2}-\d{1,2}([T ]\d\d:\d\d(:\d\d(\.\d{1,7})?)?(Z|[+-]\d\d:\d\d)?)?\Z"
)
EMAILISH = st.from_regex(r"\A\s?[a-z.@]{0,6}@[a-z.]{0,6}\s?\Z")


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(["number", "integer", "date", "email", "string"]),
    values=st.lists(st.one_of(NUMERIC, DATELIKE, EMAILISH), min_size=1, max_size=70),
    bounded=st.booleans(),
)
def test_typed_fields_agree_on_near_valid_text(kind: str, values: list[str], bounded: bool) -> None:
    """Text that almost parses (numbers, dates, emails) is decided alike by both paths."""
    options: dict[str, Any] = {}
    if bounded and kind in ("number", "integer"):
        options = {"min": -1000, "max": 1e6}
    validator = Validator(Schema([Field("v", kind, required=True, **options)]))  # type: ignore[arg-type]
    rows = [[v] for v in values]
    fast = validator.check_rows(["v"], rows)
    for row, got in zip(rows, fast, strict=True):
        assert same(got, reference(validator, ["v"], row)), row


# A schema the fast path takes whole (as the standard job's), rows mostly valid:
# chunks of 32 that hold invalid rows anywhere, optional arrays often empty.
MOSTLY_VALID_SCHEMA = Schema(
    [
        Field("email", "email", required=True),
        Field("name", required=True),
        Field("age", "number", min=0),
        Field("country", choices=["DE", "FR"]),
        Field("signup_date", "date"),
        Field("tags", "array", separator=";"),
        Field("labels", "array", separator=",", required=True),
        Field("notes", "array", default=["z"]),
    ]
)
MOSTLY_VALID_COLUMNS = ["email", "name", "age", "country", "signup_date", "tags", "labels", "notes"]
GOOD_ROW = ["a@b.co", "Ada", "42", "DE", "2024-01-02", "red;blue", "x", "y"]
# Per column: values that are valid (empty arrays among them) and values that are not.
GOOD = [
    st.sampled_from(["a@b.co", " x@y.io "]),
    st.sampled_from(["Ada", "B"]),
    st.sampled_from(["0", "42", "3.5"]),
    st.sampled_from(["DE", "FR"]),
    st.sampled_from(["2024-01-02", "2010-12-31"]),
    st.sampled_from(["", None, "red", " ; ", "a;b;;c", ABSENT]),
    st.sampled_from(["x", "a,b", " , "]),
    st.sampled_from(["", None, "y", "a;b"]),
]
BAD = [
    st.sampled_from(["a.b.co", "", None, 5]),
    st.sampled_from(["", None]),
    st.sampled_from(["-1", "old", "", "nan"]),
    st.sampled_from(["XX", "de", 1]),
    st.sampled_from(["2024-02-30", "x"]),
    st.sampled_from([3, ["a", 1], True]),
    st.sampled_from(["", None, ABSENT]),
    st.sampled_from([7, False]),
]


@st.composite
def mostly_valid_rows(draw: st.DrawFn) -> list[list[Any]]:
    count = draw(st.integers(1, 130))
    rows = [[draw(strategy) for strategy in GOOD] for _ in range(count)]
    for position in draw(st.lists(st.integers(0, count - 1), max_size=6)):
        column = draw(st.integers(0, len(BAD) - 1))
        rows[position][column] = draw(BAD[column])
    return rows


@settings(max_examples=300, deadline=None)
@given(mostly_valid_rows())
def test_invalid_rows_inside_chunks_and_empty_arrays_agree(rows: list[list[Any]]) -> None:
    """Invalid rows at any place of any chunk, and empty optional arrays, give the
    field-by-field result for every row, in order (values, types, error lists)."""
    validator = Validator(MOSTLY_VALID_SCHEMA)
    fast = validator.check_rows(MOSTLY_VALID_COLUMNS, rows)
    assert validator._fast[tuple(MOSTLY_VALID_COLUMNS)] is not None
    assert len(fast) == len(rows)
    for row, got in zip(rows, fast, strict=True):
        assert same(got, reference(validator, MOSTLY_VALID_COLUMNS, row)), row


def spied(validator: Validator, columns: list[str]) -> tuple[FastValidator, list[str]]:
    """The validator's fast path for ``columns``, counting its row-by-row work."""
    validator.check_rows(columns, [list(GOOD_ROW[: len(columns)])])
    fast = validator._fast[tuple(columns)]
    assert fast is not None
    calls: list[str] = []
    slow, row_decoder = fast._slow, fast._row_decoder

    class CountingDecoder:
        def decode(self, raw: Any) -> Any:
            calls.append("decode")
            return row_decoder.decode(raw)

    def counting_slow(raw: Any) -> Any:
        calls.append("slow")
        return slow(raw)

    fast._slow, fast._row_decoder = counting_slow, CountingDecoder()  # type: ignore[assignment]
    return fast, calls


def test_an_empty_optional_array_takes_the_fast_path() -> None:
    """An optional array field that is "" or None is None without the field-by-field checker."""
    columns = MOSTLY_VALID_COLUMNS[:6]
    validator = Validator(Schema(MOSTLY_VALID_SCHEMA.fields[:6]))
    _, calls = spied(validator, columns)
    rows = [[*GOOD_ROW[:5], tags] for tags in ("", None, "red", "", " ; ")]
    got = validator.check_rows(columns, rows)
    assert calls == ["decode"] * len(rows)
    assert [as_record(values)["tags"] for values, _ in got] == [None, None, ["red"], None, []]
    assert all(errors == () for _, errors in got)


def test_a_required_or_defaulted_empty_array_still_gets_its_error_or_default() -> None:
    """Empty values of a required array (REQUIRED) or one with a default go field by field."""
    validator = Validator(MOSTLY_VALID_SCHEMA)
    _, calls = spied(validator, MOSTLY_VALID_COLUMNS)
    rows = [list(GOOD_ROW), [*GOOD_ROW[:6], "", "y"], [*GOOD_ROW[:7], ""]]
    got = validator.check_rows(MOSTLY_VALID_COLUMNS, rows)
    assert calls.count("slow") == 2 and calls.count("decode") == len(rows)
    assert [e.code for e in got[1][1]] == ["REQUIRED"]
    assert as_record(got[2][0])["notes"] == ["z"] and got[2][1] == []


def test_an_invalid_row_costs_only_itself() -> None:
    """Invalid rows anywhere in 100 rows send only themselves to the field-by-field
    checker; every row is decoded once; order is kept."""
    validator = Validator(MOSTLY_VALID_SCHEMA)
    _, calls = spied(validator, MOSTLY_VALID_COLUMNS)
    bad = {0, 1, 31, 32, 45, 46, 63, 99}
    rows = [["bad.email" if i in bad else f"u{i}@b.co", *GOOD_ROW[1:]] for i in range(100)]
    got = validator.check_rows(MOSTLY_VALID_COLUMNS, rows)
    assert calls.count("slow") == len(bad) and calls.count("decode") == len(rows)
    assert [i for i, (_, errors) in enumerate(got) if errors] == sorted(bad)
    for i, (values, errors) in enumerate(got):
        if i not in bad:
            assert as_record(values)["email"] == f"u{i}@b.co" and errors == ()
        else:
            assert [(e.field, e.code) for e in errors] == [("email", "TYPE_MISMATCH")]


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab1;, \t\u00a0\u2028\u00b2\u0665é-_"), max_size=20),
    st.sampled_from([";", ",", ", ", "a", "1"]),
)
def test_array_items_are_split_stripped_and_filtered(value: str, separator: str) -> None:
    """An array's text gives the items of the general rule (split, strip, drop
    empties), whether or not it takes the shortcut for letters and digits."""
    assert _split_items(value, separator) == list(
        filter(None, (item.strip() for item in value.split(separator)))
    )

"""The compiled validator: coercion per type, constraints, messages and codes."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import fakeredis
import pytest

from redisbatch import MISSING, ConfigurationError, DistributedImport, Field, FieldCheck, Schema
from redisbatch._validate import Validator


def check(field: Field, value: Any) -> tuple[Any, list[str]]:
    parsed, errors = Validator(Schema([field])).validate(
        {} if value is MISSING else {field.name: value}
    )
    return parsed[field.name], [e.code for e in errors]


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        ("number", "42", 42),
        ("number", " -7 ", -7),
        ("number", "3.5", 3.5),
        ("number", "1e3", 1000.0),
        ("number", 2.5, 2.5),
        ("integer", "12", 12),
        ("integer", 12.0, 12),
        ("boolean", "TRUE", True),
        ("boolean", "no", False),
        ("boolean", "1", True),
        ("boolean", 0, False),
        ("boolean", False, False),
        ("date", "2024-02-29", date(2024, 2, 29)),
        ("datetime", "2024-02-29T10:11:12Z", datetime.fromisoformat("2024-02-29T10:11:12+00:00")),
        ("datetime", "2024-02-29", datetime(2024, 2, 29)),
        ("array", "a; b ;;c", ["a", "b", "c"]),
        ("email", " ada@example.org ", "ada@example.org"),
        ("string", "x", "x"),
        ("string", 5, "5"),
        ("custom", {"k": 1}, {"k": 1}),
    ],
)
def test_valid_values_are_coerced(type_: str, value: Any, expected: Any) -> None:
    """Valid values reach the processor coerced to their type."""
    field = Field("f", type_, separator=";")  # type: ignore[arg-type]
    parsed, codes = check(field, value)
    assert codes == []
    assert parsed == expected and type(parsed) is type(expected)


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        ("number", "abc"),
        ("number", "nan"),
        ("number", True),
        ("integer", "1.5"),
        ("integer", 2.5),
        ("integer", False),
        ("boolean", "maybe"),
        ("boolean", 2),
        ("date", "2024-02-30"),
        ("date", "yesterday"),
        ("datetime", "10 o'clock"),
        ("email", "ada.example.org"),
        ("email", "ada@"),
        ("string", {"a": 1}),
        ("array", 5),
    ],
)
def test_invalid_values_are_type_mismatches(type_: str, value: Any) -> None:
    """Values that cannot be coerced give TYPE_MISMATCH in category FORMAT."""
    parsed, errors = Validator(Schema([Field("f", type_)])).validate({"f": value})  # type: ignore[arg-type]
    assert [e.code for e in errors] == ["TYPE_MISMATCH"]
    assert errors[0].category == "FORMAT" and errors[0].field == "f"
    assert errors[0].value == value
    assert parsed["f"] is None


@pytest.mark.parametrize("empty", [None, "", MISSING])
def test_required_empty_values(empty: Any) -> None:
    """An empty or absent required value is REQUIRED; an optional one becomes None."""
    assert check(Field("f", "integer", required=True), empty) == (None, ["REQUIRED"])
    assert check(Field("f", "integer"), empty) == (None, [])


def test_default_fills_absent_and_empty_values() -> None:
    """default fills absent and empty values, and is itself validated."""
    assert check(Field("f", "integer", default="7"), MISSING) == (7, [])
    assert check(Field("f", "integer", default=3, required=True), "") == (3, [])


def test_pattern_choices_ranges_and_lengths() -> None:
    """pattern searches the text; choices, min/max and lengths are inclusive constraints."""
    assert check(Field("f", pattern=r"\d{3}"), "ab123")[1] == []
    assert check(Field("f", pattern=re.compile("^x")), "yx")[1] == ["PATTERN_MISMATCH"]
    assert check(Field("f", choices=["DE", "FR"]), "de")[1] == ["INVALID_CHOICE"]
    assert check(Field("f", "integer", choices=[1, 2]), "2") == (2, [])
    assert check(Field("f", "integer", min=1, max=3), "3") == (3, [])
    assert check(Field("f", "integer", min=1, max=3), "4")[1] == ["OUT_OF_RANGE"]
    assert check(Field("f", "date", min=date(2024, 1, 1)), "2023-12-31")[1] == ["OUT_OF_RANGE"]
    assert check(Field("f", min_length=2, max_length=3), "abc") == ("abc", [])
    assert check(Field("f", min_length=2), "a")[1] == ["INVALID_LENGTH"]
    assert check(Field("f", "array", max_length=1), "a,b")[1] == ["INVALID_LENGTH"]


def test_validator_results() -> None:
    """validator: bool, FieldCheck errors, warnings that keep the record valid, exceptions."""
    assert check(Field("f", "integer", validator=lambda v: v > 0), "5") == (5, [])
    assert check(Field("f", "integer", validator=lambda v: v > 0), "-5")[1] == ["CUSTOM_VALIDATION"]
    warn = Field("f", validator=lambda v: FieldCheck(False, "odd", severity="warning"))
    parsed, errors = Validator(Schema([warn])).validate({"f": "x"})
    assert parsed["f"] == "x"
    assert [(e.code, e.severity, e.message) for e in errors] == [
        ("CUSTOM_VALIDATION", "warning", "odd")
    ]

    def boom(value: Any) -> bool:
        raise ValueError("nope")

    assert check(Field("f", validator=boom), "x")[1] == ["CUSTOM_VALIDATION"]


def test_aliases_are_case_insensitive() -> None:
    """Columns matching a field's name or alias in any case resolve to the field name."""
    validator = Validator(Schema([Field("email", aliases=("E-Mail", "mail"))]))
    assert validator.resolve_columns(["E-MAIL", "Other"]) == ["email", "Other"]
    assert validator.resolve_record({"MAIL": "x"}) == {"email": "x"}


def test_strict_rejects_unknown_columns_and_lenient_keeps_them() -> None:
    """strict gives UNKNOWN_FIELD per extra column; otherwise extras pass through."""
    schema = [Field("a")]
    parsed, errors = Validator(Schema(schema, strict=True)).validate({"a": "1", "b": "2"})
    assert parsed == {"a": "1"} and [(e.code, e.field) for e in errors] == [("UNKNOWN_FIELD", "b")]
    parsed, errors = Validator(Schema(schema)).validate({"a": "1", "b": "2"})
    assert parsed == {"a": "1", "b": "2"} and errors == []


def test_every_error_of_a_record_is_collected() -> None:
    """An invalid record reports every field's error, not only the first."""
    schema = Schema([Field("a", "integer", required=True), Field("b", "email"), Field("c")])
    _, errors = Validator(schema).validate({"b": "nope", "c": "ok"})
    assert [(e.field, e.code) for e in errors] == [("a", "REQUIRED"), ("b", "TYPE_MISMATCH")]


def test_schema_rejects_bad_declarations() -> None:
    """Bad schemas fail at construction with a message naming the field."""
    with pytest.raises(ValueError, match="type"):
        Field("x", "uuid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two fields named 'a'"):
        Schema([Field("a"), Field("a")])
    with pytest.raises(ValueError, match="unknown field 'z'"):
        Schema([Field("a")], unique_fields=["z"])


#: Schema mistakes, each with what its ConfigurationError must say.
SCHEMA_MISTAKES: list[tuple[Any, str]] = [
    (
        lambda: Field("code", pattern="[A-Z"),
        r"Field 'code': pattern '\[A-Z' does not compile",
    ),
    (
        lambda: Field("age", "integer", min=10, max=1),
        r"Field 'age': min \(10\) is above max \(1\)",
    ),
    (
        lambda: Field("name", min_length=5, max_length=2),
        r"Field 'name': min_length \(5\) is above max_length \(2\)",
    ),
    (
        lambda: Field("age", "integer", choices=["1", "2"]),
        r"Field 'age': choices of an integer field must be int values.*'1' \(str\)",
    ),
    (
        lambda: Field("ok", "boolean", choices=[1]),
        r"Field 'ok': choices of a boolean field must be bool",
    ),
    (
        lambda: Field("n", "number", choices=[True]),
        r"Field 'n': choices of a number field",
    ),
    (
        lambda: Field("when", "date", choices=["2024-01-01"]),
        r"Field 'when': choices of a date field",
    ),
    (
        lambda: Field("c", choices=[]),
        r"Field 'c': choices is empty",
    ),
    (
        lambda: Field("c", choices="abc"),
        r"Field 'c': choices must be a list",
    ),
    (
        lambda: Field("kind", "uuid"),  # type: ignore[arg-type]
        r"Field 'kind': type must be one of",
    ),
    (
        lambda: Field("name", min_length=-1),
        r"Field 'name': min_length must not be negative",
    ),
    (
        lambda: Field("name", max_length=-2),
        r"Field 'name': max_length must not be negative",
    ),
    (
        lambda: Field("name", max_length=2.5),  # type: ignore[arg-type]
        r"Field 'name': max_length must be an int",
    ),
    (
        lambda: Field("name", validator="yes"),  # type: ignore[arg-type]
        r"Field 'name': validator must be callable",
    ),
    (
        lambda: Field("name", transform=3),  # type: ignore[arg-type]
        r"Field 'name': transform must be callable",
    ),
    (
        lambda: Field("age", "integer", min="1"),
        r"Field 'age': min of an integer field must be a number",
    ),
    (
        lambda: Field("when", "date", max=datetime(2024, 1, 1)),
        r"Field 'when': max of a date field",
    ),
    (
        lambda: Field("code", pattern=3),  # type: ignore[arg-type]
        r"Field 'code': pattern must be a regex",
    ),
    (
        lambda: Schema([Field("a")], unique_fields=["b"]),
        r"unique_fields names an unknown field 'b'",
    ),
]


@pytest.mark.parametrize(("make", "message"), SCHEMA_MISTAKES)
def test_schema_mistakes_are_configuration_errors_naming_the_field(make: Any, message: str) -> None:
    """A schema that cannot work raises ConfigurationError naming the field, when built."""
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_a_bad_pattern_never_reaches_the_facade_as_re_error() -> None:
    """A pattern that does not compile fails at Field(), not as re.error at DistributedImport()."""
    with pytest.raises(ConfigurationError) as caught:
        DistributedImport(fakeredis.FakeRedis(), Schema([Field("sku", pattern="(unclosed")]))
    assert not isinstance(caught.value, re.error)
    assert "Field 'sku'" in str(caught.value)


def test_sound_declarations_are_accepted() -> None:
    """Choices and bounds of the coerced type, equal bounds, int bounds on numbers, pass."""
    Field("age", "integer", min=1.5, max=2, choices=[1, 2])
    Field("price", "number", min=0, max=0, choices=[1, 2.5])
    Field("when", "date", min=date(2024, 1, 1), max=date(2024, 1, 1))
    Field("at", "datetime", min=datetime(2024, 1, 1))
    Field("tags", "array", min_length=0, max_length=0)
    Field("x", "custom", choices=[object()])
    Field("code", pattern=re.compile("[A-Z]+"), choices=("A", "B"))

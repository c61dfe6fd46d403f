"""Schemas from JSON/TOML files and MODULE:ATTR, with errors naming file and field."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import pytest

from redisbatch import Schema
from redisbatch._schema_file import SchemaFileError, load_schema

FIELDS = [
    {"name": "email", "type": "email", "required": True, "aliases": ["E-mail"]},
    {"name": "age", "type": "integer", "min": 0, "max": 130, "default": 18},
    {"name": "country", "choices": ["DE", "FR"]},
    {"name": "code", "pattern": "^[A-Z]{3}$", "min_length": 3, "max_length": 3},
    {"name": "tags", "type": "array", "separator": ";"},
    {"name": "since", "type": "date", "min": "2020-01-01", "max": "2030-12-31"},
]


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_json_schema_file(tmp_path: Path) -> None:
    """Every data option of Field reads from JSON; date bounds become dates."""
    document = {"fields": FIELDS, "strict": True, "skip_empty_rows": True,
                "unique_fields": ["email"]}  # fmt: skip
    schema = load_schema(_write(tmp_path, "s.json", json.dumps(document)))
    assert [f.name for f in schema.fields] == [f["name"] for f in FIELDS]
    assert schema.strict and schema.skip_empty_rows and schema.unique_fields == ("email",)
    by_name = {f.name: f for f in schema.fields}
    assert by_name["email"].aliases == ("E-mail",) and by_name["email"].required
    assert (by_name["age"].min, by_name["age"].max, by_name["age"].default) == (0, 130, 18)
    assert by_name["since"].min == date(2020, 1, 1)
    assert by_name["tags"].separator == ";" and by_name["code"].max_length == 3


def test_toml_schema_file(tmp_path: Path) -> None:
    """TOML gives the same schema, fields as [[fields]] tables, native dates accepted."""
    text = """
unique_fields = ["email"]

[[fields]]
name = "email"
type = "email"
required = true

[[fields]]
name = "since"
type = "date"
min = 2020-01-01
max = "2030-12-31"
"""
    schema = load_schema(_write(tmp_path, "s.toml", text))
    assert [f.name for f in schema.fields] == ["email", "since"]
    assert schema.fields[1].min == date(2020, 1, 1) and schema.fields[1].max == date(2030, 12, 31)
    assert schema.unique_fields == ("email",)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([{"name": "a"}, {"name": "age", "maxx": 3}],
         "fields[1] ('age'): unknown option 'maxx' (did you mean 'max'?)"),
        ([{"name": "age", "type": "int"}], "fields[0] ('age'): 'type' must be one of"),
        ([{"name": "d", "type": "date", "min": "soon"}],
         "fields[0] ('d'): 'min' is not an ISO date: 'soon'"),
        ([{"name": "n", "type": "number", "max": "10"}], "fields[0] ('n'): 'max' must be a number"),
        ([{"type": "string"}], "fields[0]: 'name' is missing"),
        ([{"name": "r", "required": "yes"}], "fields[0] ('r'): 'required' must be true or false"),
        ([{"name": "a"}, {"name": "a"}], "two fields named 'a'"),
    ],
)  # fmt: skip
def test_bad_field_names_file_and_field(tmp_path: Path, fields: Any, message: str) -> None:
    """A bad option is reported with the file, the field's position and name."""
    path = _write(tmp_path, "schema.json", json.dumps({"fields": fields}))
    with pytest.raises(SchemaFileError) as info:
        load_schema(path)
    assert str(info.value).startswith(path + ": ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_documents(tmp_path: Path) -> None:
    """Syntax errors give their line; unknown keys and missing files are named."""
    broken = _write(tmp_path, "b.json", '{"fields": [\n  {"name": "a",}\n]}')
    with pytest.raises(SchemaFileError, match=r"b\.json: invalid JSON at line 2 column"):
        load_schema(broken)
    with pytest.raises(SchemaFileError, match=r"b\.toml: invalid TOML"):
        load_schema(_write(tmp_path, "b.toml", "[[fields]\nname ="))
    with pytest.raises(SchemaFileError, match="unknown key 'unique' \\(did you mean"):
        load_schema(_write(tmp_path, "u.json", '{"fields": [{"name": "a"}], "unique": ["a"]}'))
    with pytest.raises(SchemaFileError, match=r"missing\.json: cannot read"):
        load_schema(str(tmp_path / "missing.json"))
    with pytest.raises(SchemaFileError, match="unique_fields names an unknown field 'b'"):
        load_schema(
            _write(tmp_path, "n.json", '{"fields": [{"name": "a"}], "unique_fields": ["b"]}')
        )


class Person(msgspec.Struct):
    email: str
    age: int | None = None


PEOPLE = Schema.from_struct(Person)


def test_module_attr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """MODULE:ATTR names a Schema or a msgspec Struct; anything else is refused."""
    assert load_schema(f"{__name__}:PEOPLE") is PEOPLE
    from_struct = load_schema(f"{__name__}:Person")
    assert from_struct.record_type is Person
    assert [f.name for f in from_struct.fields] == ["email", "age"]
    with pytest.raises(SchemaFileError, match="is a function, not a Schema"):
        load_schema(f"{__name__}:test_module_attr")
    with pytest.raises(Exception, match="cannot import 'no_such_module_x'"):
        load_schema("no_such_module_x:S")
    with pytest.raises(Exception, match="has no attribute 'Nope'"):
        load_schema(f"{__name__}:Nope")
    monkeypatch.chdir(tmp_path)  # the working directory's modules are importable
    (tmp_path / "my_schemas_mod.py").write_text(
        "from redisbatch import Field, Schema\nS = Schema([Field('x')])\n"
    )
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert [f.name for f in load_schema("my_schemas_mod:S").fields] == ["x"]

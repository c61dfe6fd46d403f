"""Schemas named on the command line: a JSON or TOML file, or ``MODULE:ATTR``.

A file holds the ``Field`` options that are data (not callables)::

    {"fields": [{"name": "email", "type": "email", "required": true}, ...],
     "strict": false, "skip_empty_rows": false, "unique_fields": ["email"]}

TOML has the same keys, each field a ``[[fields]]`` table. Every mistake is
reported as one line naming the file and the field, e.g.
``schema.json: fields[2] ('age'): unknown option 'maxx' (did you mean 'max'?)``.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import sys
import tomllib
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

import msgspec

from ._exceptions import ConfigurationError
from ._schema import FIELD_TYPES, Field, Schema

__all__ = ["SchemaFileError", "import_attr", "load_schema", "schema_from_data"]

_SCHEMA_KEYS: Final = ("fields", "strict", "skip_empty_rows", "unique_fields")
_FIELD_KEYS: Final = (
    "name",
    "type",
    "required",
    "pattern",
    "default",
    "separator",
    "aliases",
    "choices",
    "min",
    "max",
    "min_length",
    "max_length",
)


class SchemaFileError(ConfigurationError):
    """A schema file (or ``MODULE:ATTR``) that cannot be used; the message is one line."""


def _did_you_mean(word: str, options: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bound(kind: str, value: Any) -> Any:
    """A ``min``/``max`` as the field compares it; raises ValueError when unusable."""
    if kind in ("date", "datetime"):
        if isinstance(value, datetime):
            return value if kind == "datetime" else value.date()
        if isinstance(value, date):
            return value if kind == "date" else datetime(value.year, value.month, value.day)
        if isinstance(value, str):
            try:
                return (date if kind == "date" else datetime).fromisoformat(value)
            except ValueError:
                raise ValueError(f"is not an ISO {kind}: {value!r}") from None
        raise ValueError(f"must be an ISO {kind} string, got {type(value).__name__}")
    if not _is_number(value):
        raise ValueError(f"must be a number, got {value!r}")
    return value


def _field_options(where: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SchemaFileError(f"{where}: must be a table/object, got {type(raw).__name__}")
    for key in raw:
        if key not in _FIELD_KEYS:
            raise SchemaFileError(
                f"{where}: unknown option {key!r}{_did_you_mean(str(key), _FIELD_KEYS)}"
            )
    if "name" not in raw:
        raise SchemaFileError(f"{where}: 'name' is missing")
    options = dict(raw)
    checks: dict[str, tuple[Callable[[Any], bool], str]] = {
        "name": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
        "type": (lambda v: v in FIELD_TYPES, f"one of {', '.join(sorted(FIELD_TYPES))}"),
        "required": (lambda v: isinstance(v, bool), "true or false"),
        "pattern": (lambda v: isinstance(v, str), "a string (a regular expression)"),
        "separator": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
        "aliases": (
            lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v),
            "a list of strings",
        ),
        "choices": (lambda v: isinstance(v, list), "a list"),
        "min_length": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                       "a non-negative integer"),
        "max_length": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                       "a non-negative integer"),
    }  # fmt: skip
    for key, (ok, expected) in checks.items():
        if key in options and not ok(options[key]):
            raise SchemaFileError(f"{where}: {key!r} must be {expected}, got {options[key]!r}")
    kind = options.get("type", "string")
    for key in ("min", "max"):
        if key in options:
            try:
                options[key] = _bound(kind, options[key])
            except ValueError as exc:
                raise SchemaFileError(f"{where}: {key!r} {exc}") from None
    if "aliases" in options:
        options["aliases"] = tuple(options["aliases"])
    return options


def schema_from_data(data: Any, origin: str) -> Schema:
    """A ``Schema`` from a decoded JSON/TOML document; ``origin`` names it in errors."""
    if not isinstance(data, dict):
        raise SchemaFileError(f"{origin}: must hold an object with 'fields'")
    for key in data:
        if key not in _SCHEMA_KEYS:
            raise SchemaFileError(
                f"{origin}: unknown key {key!r}{_did_you_mean(str(key), _SCHEMA_KEYS)}"
            )
    raw_fields = data.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise SchemaFileError(f"{origin}: 'fields' must be a non-empty list of fields")
    fields: list[Field] = []
    for position, raw in enumerate(raw_fields):
        where = f"{origin}: fields[{position}]"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            where += f" ({raw['name']!r})"
        options = _field_options(where, raw)
        name = options.pop("name")
        try:
            fields.append(Field(name, **options))
        except (ValueError, TypeError) as exc:
            raise SchemaFileError(f"{where}: {exc}") from None
    for key in ("strict", "skip_empty_rows"):
        if key in data and not isinstance(data[key], bool):
            raise SchemaFileError(f"{origin}: {key!r} must be true or false")
    unique = data.get("unique_fields", [])
    if not isinstance(unique, list) or not all(isinstance(u, str) for u in unique):
        raise SchemaFileError(f"{origin}: 'unique_fields' must be a list of field names")
    try:
        return Schema(
            fields,
            strict=data.get("strict", False),
            skip_empty_rows=data.get("skip_empty_rows", False),
            unique_fields=unique,
        )
    except (ValueError, TypeError) as exc:
        raise SchemaFileError(f"{origin}: {exc}") from None


def _read(path: Path, origin: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaFileError(f"{origin}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SchemaFileError(f"{origin}: not UTF-8 text") from None
    if path.suffix.lower() == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SchemaFileError(f"{origin}: invalid TOML: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaFileError(
            f"{origin}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def import_attr(spec: str, what: str) -> Any:
    """``MODULE:ATTR`` imported (the working directory first on the path, as
    ``python -m`` has it); raises ConfigurationError with a one-line message."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"{what} must be MODULE:ATTR, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"{what} {spec!r}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the module's own code failed
        raise ConfigurationError(
            f"{what} {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from None
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigurationError(
                f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return value


def load_schema(spec: str | os.PathLike[str]) -> Schema:
    """A schema from a ``.json``/``.toml`` file or ``MODULE:ATTR`` naming a
    ``Schema`` or a msgspec Struct class."""
    text = os.fspath(spec)
    path = Path(text)
    if path.suffix.lower() in (".json", ".toml") or path.exists():
        return schema_from_data(_read(path, text), text)
    if ":" not in text:
        raise SchemaFileError(
            f"{text}: no such file (a schema is a .json/.toml file or MODULE:ATTR)"
        )
    value = import_attr(text, "schema")
    if isinstance(value, Schema):
        return value
    if isinstance(value, type) and issubclass(value, msgspec.Struct):
        try:
            return Schema.from_struct(value)
        except (ValueError, TypeError) as exc:
            raise SchemaFileError(f"{text}: {exc}") from None
    raise SchemaFileError(
        f"{text}: is a {type(value).__name__}, not a Schema or a msgspec Struct class"
    )

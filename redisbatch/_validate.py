"""The schema compiled once into per-field checkers (steps 2, 4 and 5 of the
record pipeline listed in ``_pipeline``: aliases, transforms, validation with
coercion).

Everything that can be decided from the schema alone — coercer per type,
compiled patterns, choice sets, messages — is decided in ``Validator.__init__``
(one ``_checker.FieldChecker`` per field). Per record, a field costs one dict
lookup, one coercion and the checks that field actually declares.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import msgspec

from ._checker import CATEGORIES, FieldChecker, error, is_empty
from ._codec import decode_row, encode_row, raw_record
from ._fastpath import Checked, FastValidator
from ._results import ValidationError
from ._schema import MISSING, Schema

__all__ = ["CATEGORIES", "Validator", "error", "is_empty"]


# ---------------------------------------------------------------- the schema


class Validator:
    """A schema compiled once; ``validate`` runs per record."""

    __slots__ = ("_aliases", "_fast", "_known", "_strict", "checkers", "schema")

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.checkers = tuple(FieldChecker(f) for f in schema.fields)
        self._fast: dict[tuple[str, ...], FastValidator | None] = {}
        self._strict = schema.strict
        self._known = frozenset(f.name for f in schema.fields)
        aliases: dict[str, str] = {}
        for f in schema.fields:
            for alias in (f.name, *f.aliases):
                aliases.setdefault(alias.lower(), f.name)
        self._aliases = aliases

    def resolve_columns(self, columns: Iterable[str]) -> list[str]:
        """Step 2, done once per column header: each column's field name."""
        return [self._aliases.get(column.lower(), column) for column in columns]

    def resolve_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """Step 2 for a free-form record (one whose keys are not a fixed header)."""
        aliases = self._aliases
        return {aliases.get(key.lower(), key): value for key, value in record.items()}

    def validate(self, record: dict[str, Any]) -> tuple[dict[str, Any], list[ValidationError]]:
        """Steps 4 and 5: the coerced record and every error found."""
        errors: list[ValidationError] = []
        parsed = dict(record) if not self._strict else {}
        for checker in self.checkers:
            try:
                value = checker.prepare(record.get(checker.name, MISSING))
            except Exception as exc:
                errors.append(
                    error(
                        checker.name,
                        "CUSTOM_VALIDATION",
                        f"{checker.name} transform failed: {exc}",
                        record.get(checker.name),
                    )
                )
                parsed[checker.name] = None
                continue
            parsed[checker.name] = checker.check(value, errors)
        if self._strict:
            for key, value in record.items():
                if key not in self._known:
                    errors.append(
                        error(key, "UNKNOWN_FIELD", f"{key} is not a field of the schema", value)
                    )
        return parsed, errors

    def check_row(self, columns: Sequence[str], row: list[Any]) -> Checked:
        """One stored row (values in ``columns`` order) through steps 2, 4 and 5."""
        return self.validate(raw_record(self.resolve_columns(columns), row))

    def check_raw_row(self, columns: Sequence[str], raw: msgspec.Raw) -> Checked:
        """``check_row`` for a row still in msgpack bytes."""
        return self.validate(raw_record(self.resolve_columns(columns), decode_row(raw)))

    def _check_resolved(self, fields: list[str], raw: msgspec.Raw) -> Checked:
        """``check_raw_row`` with the header already resolved to field names
        (step 2 done once per batch, not per row)."""
        return self.validate(raw_record(fields, decode_row(raw)))

    def check_raw_rows(self, columns: Sequence[str], raw_rows: list[msgspec.Raw]) -> list[Checked]:
        """Every row of a batch (msgpack bytes) through steps 2, 4 and 5, in C
        where the schema allows."""
        key = tuple(columns)
        fields = self.resolve_columns(key)
        if key not in self._fast:
            if len(self._fast) > 16:
                self._fast.clear()
            try:
                self._fast[key] = FastValidator(
                    self.checkers, fields, self._strict, partial(self._check_resolved, fields)
                )
            except ValueError:
                self._fast[key] = None
        fast = self._fast[key]
        if fast is None:
            check = self._check_resolved
            return [check(fields, raw) for raw in raw_rows]
        return fast.check(raw_rows)

    def check_rows(self, columns: Sequence[str], rows: list[list[Any]]) -> list[Checked]:
        """``check_raw_rows`` for rows in hand (preview, tests)."""
        return self.check_raw_rows(columns, [msgspec.Raw(encode_row(row)) for row in rows])

"""Looking at a source without storing it: ``preview``, ``count``, and the
CSV template of a schema. Pure functions over an opened source."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import msgspec

from ._parsers import Header, Line, ParseFailure, RowBlock, line_at, row_is_empty
from ._pipeline import RecordPipeline
from ._results import PreviewResult, ProcessedRecord
from ._schema import Field, Schema
from ._unique import UniqueKeys
from ._validate import error

__all__ = ["count_records", "generate_template", "preview_records"]


def iter_records(items: Iterator[Any], skip_empty_rows: bool) -> Iterator[Any]:
    """The source's records in order — dicts, or ParseFailures — with headers
    applied and empty rows skipped, as prepare would store them."""
    for record, _ in iter_located(items, skip_empty_rows):
        yield record


def iter_located(items: Iterator[Any], skip_empty_rows: bool) -> Iterator[tuple[Any, int | None]]:
    """``iter_records`` with the line each record starts on (None without lines)."""
    header: list[str] = []
    index = 0
    cursor: int | None = None  # the line of the next record that names none (see Line)
    for item in items:
        if isinstance(item, Header):
            header = item.columns
            continue
        if isinstance(item, Line):
            cursor = item.number
            continue
        if isinstance(item, RowBlock | list):
            rows = item.rows if isinstance(item, RowBlock) else [item]
            table = item.lines if isinstance(item, RowBlock) and item.lines else None
            for position, row in enumerate(rows):
                line = cursor if table is None else line_at(table, position)
                cursor = None if line is None else line + 1
                if not (skip_empty_rows and row_is_empty(row)):
                    index += 1
                    yield dict(zip(header, row, strict=False)), line
            continue
        line = item.line if isinstance(item, ParseFailure) and item.line else cursor
        cursor = None if line is None else line + 1
        if isinstance(item, dict):
            if skip_empty_rows and row_is_empty(item.values()):
                continue
            record: Any = {str(k): v for k, v in item.items()}
        elif isinstance(item, ParseFailure):
            record = item
        else:
            record = ParseFailure.not_a_mapping(item, index)
        index += 1
        yield record, line


def count_records(items: Iterator[Any], skip_empty_rows: bool) -> int:
    return sum(1 for _ in iter_records(items, skip_empty_rows))


def preview_records(
    pipeline: RecordPipeline, items: Iterator[Any], max_records: int
) -> PreviewResult:
    """Steps 1 to 6 of the pipeline for the first records (uniqueness within
    the sample); no hook or duplicate checker runs, nothing is stored."""
    schema = pipeline.schema
    skip = schema is not None and schema.skip_empty_rows
    validator = pipeline.validator
    seen_columns: dict[str, None] = {}
    valid: list[ProcessedRecord] = []
    invalid: list[ProcessedRecord] = []
    first_of: dict[tuple[int, str], int] = {}
    unique = (
        UniqueKeys(validator) if validator is not None and schema and schema.unique_fields else None
    )
    for index, (record, line) in enumerate(iter_located(items, skip)):
        if index >= max_records:
            break
        if isinstance(record, ParseFailure):
            invalid.append(
                ProcessedRecord(
                    index=index,
                    raw=record.raw,
                    parsed=record.raw,
                    status="invalid",
                    errors=[error("_row", "PARSE_ERROR", record.message, None)],
                    processing_error=None,
                    retry_count=0,
                    line=line,
                )
            )
            continue
        for column in record:
            seen_columns.setdefault(column, None)
        result = pipeline.check(index, record)
        if unique is not None:
            result = _mark_sample_duplicates(unique, record, index, result, first_of)
        if line is not None:
            result = msgspec.structs.replace(result, line=line)
        (valid if result.status == "valid" else invalid).append(result)
    columns = list(seen_columns)
    if validator is not None:
        columns = validator.resolve_columns(columns)
    return PreviewResult(
        valid_records=valid,
        invalid_records=invalid,
        total_sampled=len(valid) + len(invalid),
        columns=columns,
    )


def _mark_sample_duplicates(
    unique: UniqueKeys,
    record: dict[str, Any],
    index: int,
    result: ProcessedRecord,
    first_of: dict[tuple[int, str], int],
) -> ProcessedRecord:
    entries = bytearray()
    unique.add_record(record, 0, entries)
    errors = list(result.errors)
    for offset in range(0, len(entries), 21):
        digest, number = bytes(entries[offset : offset + 16]), entries[offset + 20]
        key = (number, digest.hex())
        if key in first_of:
            name = unique.fields[number]
            errors.append(
                error(
                    name,
                    "DUPLICATE_VALUE",
                    f"{name} duplicates record {first_of[key]}",
                    unique.validator.resolve_record(record).get(name),
                )
            )
        else:
            first_of[key] = index
    if len(errors) == len(result.errors):
        return result
    return ProcessedRecord(
        index=result.index,
        raw=result.raw,
        parsed=result.parsed,
        status="invalid",
        errors=errors,
        processing_error=None,
        retry_count=0,
    )


# ---------------------------------------------------------------- template


def _example(field: Field, row: int) -> str:
    if field.choices:
        choices = list(field.choices)
        return str(choices[row % len(choices)])
    kind = field.type
    low = field.min
    if kind == "email":
        return f"user{row + 1}@example.com"
    if kind == "integer":
        return str(int(low if isinstance(low, int | float) else 0) + row + 1)
    if kind == "number":
        return str((low if isinstance(low, int | float) else 0) + row + 1.5)
    if kind == "boolean":
        return "true" if row % 2 == 0 else "false"
    if kind == "date":
        start = low if isinstance(low, date) else date(2024, 1, 1)
        return (start + timedelta(days=row)).isoformat()
    if kind == "datetime":
        start = low if isinstance(low, datetime) else datetime(2024, 1, 1, 9, 0, 0)
        return (start + timedelta(hours=row)).isoformat()
    if kind == "array":
        return field.separator.join(f"{field.name}{row + 1}{suffix}" for suffix in ("a", "b"))
    if kind == "custom":
        return ""
    text = f"{field.name} {row + 1}"
    if field.min_length is not None and len(text) < field.min_length:
        text = text.ljust(field.min_length, "x")
    if field.max_length is not None:
        text = text[: field.max_length]
    return text


def generate_template(schema: Schema, example_rows: int = 0) -> str:
    """A CSV template for ``schema``: a header row of its field names, plus
    ``example_rows`` (default 0) rows of synthetic values by field type
    (``user1@example.com`` for an email, ISO dates, a choice for a field
    with ``choices``, values within ``min``/``min_length``; empty for a
    custom field). Patterns and validators are not consulted, so an example
    row may not pass them. Returns the CSV text, ``\n``-terminated lines.
    Raises ``TypeError`` if ``schema`` is not a ``Schema``."""
    if not isinstance(schema, Schema):
        raise TypeError(f"schema must be a Schema, got {type(schema).__name__}")
    if isinstance(example_rows, bool) or not isinstance(example_rows, int) or example_rows < 0:
        raise ValueError("example_rows must be a non-negative int")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f.name for f in schema.fields])
    for row in range(example_rows):
        writer.writerow([_example(f, row) for f in schema.fields])
    return out.getvalue()

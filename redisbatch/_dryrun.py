"""``redisbatch validate``: a whole source through the schema, without Redis.

The records take the path a worker's do: the orchestrator's ``Batcher`` cuts
and encodes them into batches exactly as ``prepare`` stores them, and each
batch is decoded and checked by ``Validator.check_raw_rows`` — the compiled
fast path (rows decoded into a msgspec Struct per header, in C). So what
``validate`` accepts is what the workers will accept, at about the cost of
merely reading the file. ``unique_fields`` are checked within the file, the
first occurrence in source order being the valid one, as in a job.

Memory stays flat: one batch is alive at a time, plus, with ``unique_fields``,
one entry per distinct unique value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Final

import msgspec

from ._batcher import Batcher
from ._codec import decode_batch
from ._events import EventEmitter
from ._parsers import RowBlock
from ._pipeline import RecordPipeline
from ._results import ValidationError
from ._schema import Schema
from ._sources import decompressed
from ._unique import ENTRY_SIZE, UniqueKeys
from ._validate import Validator, error

__all__ = ["DryRunError", "DryRunReport", "dry_run"]

_BATCH: Final = 1000
_ITEMS: Final = 64  # parser items pulled at a time (a CSV block is one item)


class DryRunError(msgspec.Struct, frozen=True):
    """One problem of one record: ``row`` is its 0-based index in the source."""

    row: int
    field: str
    code: str
    message: str
    value: Any = None


class DryRunReport(msgspec.Struct, frozen=True):
    """What ``validate`` found."""

    source: str
    total_records: int
    valid_records: int
    invalid_records: int
    warnings: int
    errors_by_code: dict[str, int]
    first_errors: list[DryRunError]
    elapsed: float


class _Tally:
    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.total = self.invalid = self.warnings = 0
        self.by_code: dict[str, int] = {}
        self.first: list[DryRunError] = []

    def record(self, row: int, errors: list[ValidationError] | tuple[ValidationError, ...]) -> None:
        self.total += 1
        if not errors:
            return
        invalid = False
        for e in errors:
            if e.severity != "error":
                self.warnings += 1
                continue
            invalid = True
            self.by_code[e.code] = self.by_code.get(e.code, 0) + 1
            if len(self.first) < self.keep:
                value = e.value if isinstance(e.value, str | int | float | bool) else None
                self.first.append(DryRunError(row, e.field, e.code, e.message, value))
        self.invalid += invalid


class _Unique:
    """First occurrences of unique values within the file (digest -> row)."""

    def __init__(self, keys: UniqueKeys) -> None:
        self.keys = keys
        self.first: dict[bytes, int] = {}

    def duplicates(self, first_index: int, entries: bytes) -> dict[int, list[ValidationError]]:
        found: dict[int, list[ValidationError]] = {}
        for offset in range(0, len(entries), ENTRY_SIZE):
            entry = entries[offset : offset + ENTRY_SIZE]
            key = entry[:16] + entry[20:21]
            position = int.from_bytes(entry[16:20], "big")
            row = first_index + position
            earlier = self.first.setdefault(key, row)
            if earlier != row:
                name = self.keys.fields[entry[20]]
                found.setdefault(position, []).append(
                    error(name, "DUPLICATE_VALUE", f"{name} duplicates record {earlier}", None)
                )
        return found


def _batches(items: Iterator[Any], batcher: Batcher) -> Iterator[Any]:
    """The batches ``prepare`` would store, fed as it feeds them (a block
    with its line table, so failures name the same lines)."""
    for item in items:
        if type(item) is RowBlock:
            yield from batcher.add_block(item.rows, item.lines)
        else:
            batch = batcher.add(item)
            if batch is not None:
                yield batch
    last = batcher.finish()
    if last is not None:
        yield last


def dry_run(schema: Schema, source: Any, parser: Any, *, first_errors: int = 20) -> DryRunReport:
    """Validates every record of ``source`` (a byte Source) read by ``parser``."""
    started = time.perf_counter()
    validator = Validator(schema)
    origin = source.describe()
    items = parser.records(decompressed(source.open(), origin), origin)
    unique = _Unique(UniqueKeys(validator)) if schema.unique_fields else None
    batcher = Batcher(
        _BATCH,
        skip_empty_rows=schema.skip_empty_rows,
        origin=origin,
        unique=None if unique is None else unique.keys,
    )
    to_struct = None
    if schema.record_type is not None:
        to_struct = RecordPipeline(
            schema, hooks=None, continue_on_error=True, max_retries=0, retry_delay=0.0,
            emitter=EventEmitter(),
        ).to_struct  # fmt: skip
    tally = _Tally(first_errors)
    for encoded in _batches(items, batcher):
        batch = decode_batch(encoded.payload)
        columns = batcher.columns
        dups = (
            {} if unique is None else unique.duplicates(batch.first_index, encoded.unique_entries)
        )
        failures = batch.failures
        positions = [p for p in range(len(batch)) if p not in failures]
        checked = validator.check_raw_rows(columns, [batch.raw_rows[p] for p in positions])
        results: dict[int, Any] = dict(zip(positions, checked, strict=True))
        for position in range(len(batch)):
            row = batch.first_index + position
            failure = failures.get(position)
            if failure is not None:
                tally.record(row, [error("_row", "PARSE_ERROR", failure[0], None)])
                continue
            parsed, errors = results[position]
            extra = dups.get(position)
            if extra:
                errors = [*errors, *extra]
            if to_struct is not None and not any(e.severity == "error" for e in errors):
                try:
                    to_struct(parsed if type(parsed) is dict else msgspec.structs.asdict(parsed))
                except msgspec.ValidationError as exc:
                    errors = [*errors, error("_record", "TYPE_MISMATCH", str(exc), None)]
            tally.record(row, errors)
    return DryRunReport(
        source=origin,
        total_records=tally.total,
        valid_records=tally.total - tally.invalid,
        invalid_records=tally.invalid,
        warnings=tally.warnings,
        errors_by_code=dict(sorted(tally.by_code.items(), key=lambda kv: -kv[1])),
        first_errors=tally.first,
        elapsed=time.perf_counter() - started,
    )

"""Per-record cost of the record pipeline against a hand-written validator.

    python benchmarks/pipeline.py [--records 200000] [--invalid 0.01] [--batch-size 500]
    python benchmarks/pipeline.py --data standard   # issue 13's standard job rows

``--data standard`` takes the rows and schema of ``benchmarks/standard_job.py``
(``tags`` empty in about a quarter of the rows, every 100th email malformed;
``--invalid`` is then ignored) and its hand-written validator.

The users schema: email (email, required), name (required), age (number),
country (string, choices), signup_date (date), tags (array, ";"). Both sides
start from the same msgpack batch payloads (as a worker receives them), both
collect every error of an invalid record, in the same process, best of
--repeat runs interleaved. Prints one JSON line:

  validate_us_per_record     decode + validate (+ errors) per record, ours
  baseline_us_per_record     the same with the hand-written plain-Python validator
  ratio                      ours / hand-written (target: <= 1.0)
  pipeline_us_per_record     ours through the whole record pipeline with a no-op
                             processor (contexts, retries wrapper, events, driver)
  pipeline_baseline_us       hand-written validate + call the processor per record
  pipeline_ratio
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import random
import re
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import msgspec

from redisbatch import Field, ProcessingContext, Schema
from redisbatch._codec import StoredBatch, decode_batch, encode_batch
from redisbatch._events import EventEmitter
from redisbatch._fastpath import as_record
from redisbatch._pipeline import RecordPipeline
from redisbatch._sync import SyncDriver
from redisbatch._validate import Validator

COLUMNS = ["email", "name", "age", "country", "signup_date", "tags"]
COUNTRIES = ("DE", "FR", "US", "JP", "BR")
SCHEMA = Schema(
    [
        Field("email", "email", required=True),
        Field("name", required=True),
        Field("age", "number"),
        Field("country", choices=list(COUNTRIES)),
        Field("signup_date", "date"),
        Field("tags", "array", separator=";"),
    ]
)


def make_row(i: int, rng: random.Random, invalid: float) -> list[str]:
    """Row ``i`` of the users data; with probability ``invalid`` one column spoiled
    (``rng`` draws once, twice when it spoils)."""
    row = [
        f"user{i}@example.com",
        f"User {i}",
        str(18 + i % 60),
        COUNTRIES[i % 5],
        f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
        "red; green;blue",
    ]
    if rng.random() < invalid:
        column = rng.randrange(5)
        row[column] = ["not-an-email", "", "old", "XX", "2024-02-31"][column]
    return row


def make_rows(count: int, invalid: float, seed: int = 3) -> list[list[str]]:
    rng = random.Random(seed)
    return [make_row(i, rng, invalid) for i in range(count)]


def standard_rows(count: int) -> list[list[str]]:
    """The standard job's rows (``benchmarks/standard_job.py``, its seed)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import standard_job

    with tempfile.TemporaryDirectory() as folder:
        path = standard_job.generate(Path(folder) / "users.csv", count)
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            assert next(reader) == COLUMNS
            return list(reader)


# ---------------------------------------------------------------- hand-written

EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
CHOICES = frozenset(COUNTRIES)


def hand_validate(row: list[Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """What a careful engineer writes by hand for this schema."""
    errors: list[tuple[str, str]] = []
    email, name, age, country, signup, tags = row
    parsed: dict[str, Any] = {}
    if not email:
        errors.append(("email", "REQUIRED"))
        parsed["email"] = None
    elif EMAIL.match(email.strip()):
        parsed["email"] = email.strip()
    else:
        errors.append(("email", "TYPE_MISMATCH"))
        parsed["email"] = None
    if not name:
        errors.append(("name", "REQUIRED"))
    parsed["name"] = name or None
    if age:
        try:
            parsed["age"] = int(age) if INTEGER.match(age) else float(age)
        except ValueError:
            errors.append(("age", "TYPE_MISMATCH"))
            parsed["age"] = None
    else:
        parsed["age"] = None
    if country and country not in CHOICES:
        errors.append(("country", "INVALID_CHOICE"))
        parsed["country"] = None
    else:
        parsed["country"] = country or None
    if signup:
        try:
            parsed["signup_date"] = date.fromisoformat(signup)
        except ValueError:
            errors.append(("signup_date", "TYPE_MISMATCH"))
            parsed["signup_date"] = None
    else:
        parsed["signup_date"] = None
    parsed["tags"] = [t.strip() for t in tags.split(";") if t.strip()] if tags else None
    return parsed, errors


def noop(record: Any, ctx: Any) -> None:
    pass


def run_flow(flow: Any) -> Any:
    """The sync driver's loop, without Redis: only user calls occur here."""
    return SyncDriver(None).run(flow)  # type: ignore[arg-type]


def best_of(repeat: int, ours: Any, theirs: Any) -> tuple[float, float]:
    """Best times of two functions, runs interleaved so that drift in the
    machine's speed hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, sink in ((ours, times[0]), (theirs, times[1])):
            started = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - started)
    return min(times[0]), min(times[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--invalid", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--data", choices=("synthetic", "standard"), default="synthetic")
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="run with Python's cyclic garbage collector off, to see its share",
    )
    args = parser.parse_args()

    schema, validate_row = SCHEMA, hand_validate
    if args.data == "standard":
        import standard_job

        rows = standard_rows(args.records)
        schema = standard_job.SCHEMA

        def validate_row(row: list[Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
            return standard_job.hand_validate(dict(zip(COLUMNS, row, strict=True)))
    else:
        rows = make_rows(args.records, args.invalid)
    payloads = [
        encode_batch(StoredBatch(i, rows[i : i + args.batch_size]))
        for i in range(0, len(rows), args.batch_size)
    ]
    # A worker holds its batch, not the whole source: keep only the payloads
    # alive, so the garbage collector sees the heap a worker has.
    del rows
    gc.collect()
    raw_decoder = msgspec.msgpack.Decoder()
    validator = Validator(schema)

    def ours() -> int:
        invalid = 0
        for payload in payloads:
            batch = decode_batch(payload)
            for parsed, errors in validator.check_raw_rows(COLUMNS, batch.raw_rows):
                as_record(parsed)  # the dict the processor gets, as the pipeline makes it
                invalid += bool(errors)
        return invalid

    def hand() -> int:
        invalid = 0
        for payload in payloads:
            batch_rows = raw_decoder.decode(payload)[1]
            for row in batch_rows:
                _, errors = validate_row(row)
                invalid += bool(errors)
        return invalid

    assert ours() == hand(), "both validators must find the same invalid records"
    pipeline = RecordPipeline(
        schema, hooks=None, continue_on_error=True, max_retries=0, retry_delay=0,
        emitter=EventEmitter(),
    )  # fmt: skip

    def context(index: int) -> ProcessingContext:
        return ProcessingContext("job", "batch-0", 0, index, args.records, "w", f"job:{index}")

    def ours_pipeline() -> None:
        for payload in payloads:
            run_flow(pipeline.run(decode_batch(payload), COLUMNS, context, noop, None))

    def hand_pipeline() -> None:
        for payload in payloads:
            first, batch_rows = raw_decoder.decode(payload)[:2]
            for offset, row in enumerate(batch_rows):
                parsed, errors = validate_row(row)
                if not errors:
                    noop(parsed, context(first + offset))

    per = 1e6 / args.records
    if args.no_gc:
        gc.disable()
    validate_s, baseline_s = best_of(args.repeat, ours, hand)
    pipeline_s, pipeline_base_s = best_of(args.repeat, ours_pipeline, hand_pipeline)
    print(
        json.dumps(
            {
                "records": args.records,
                "data": args.data,
                "gc": not args.no_gc,
                "invalid_share": args.invalid,
                "invalid_records": ours(),
                "validate_us_per_record": round(validate_s * per, 3),
                "baseline_us_per_record": round(baseline_s * per, 3),
                "ratio": round(validate_s / baseline_s, 3),
                "pipeline_us_per_record": round(pipeline_s * per, 3),
                "pipeline_baseline_us": round(pipeline_base_s * per, 3),
                "pipeline_ratio": round(pipeline_s / pipeline_base_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

"""The standard job of issue 13, shared by every benchmark that compares systems.

A users CSV ``email,name,age,country,signup_date,tags`` of N rows (seeded,
every 100th email malformed) and its schema: email ``email`` required, name
required, age ``number``, country ``string``, signup_date ``date``, tags
``array`` with separator ``;``.

``hand_validate`` is the same schema written by hand (what a careful engineer
writes in a Celery or RQ task); ``bare_baseline`` is the reference cost:
``csv.DictReader`` + ``hand_validate`` in one process, measured in records
per CPU-second.

    python benchmarks/standard_job.py --rows 100000 [--out users.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import time
from datetime import date
from pathlib import Path
from typing import Any

from redisbatch import Field, Schema

COLUMNS = ("email", "name", "age", "country", "signup_date", "tags")
COUNTRIES = ("DE", "FR", "US", "JP", "BR", "IT", "ES", "CA")
TAGS = ("red", "green", "blue", "vip", "beta", "trial")
FIRST = ("Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis")
LAST = ("Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton")
MALFORMED_EVERY = 100  # the row with index i % 100 == 99 has a malformed email

SCHEMA = Schema(
    [
        Field("email", "email", required=True),
        Field("name", required=True),
        Field("age", "number"),
        Field("country", "string"),
        Field("signup_date", "date"),
        Field("tags", "array", separator=";"),
    ]
)


def expected_invalid(rows: int) -> int:
    """How many rows of a generated file are invalid (the malformed emails)."""
    return rows // MALFORMED_EVERY


def generate(path: Path, rows: int, seed: int = 13) -> Path:
    """Writes the users CSV of ``rows`` rows to ``path`` (same seed, same bytes)."""
    rng = random.Random(seed)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(COLUMNS) + "\n")
        for start in range(0, rows, 10_000):
            lines = []
            for i in range(start, min(rows, start + 10_000)):
                at = "." if i % MALFORMED_EVERY == MALFORMED_EVERY - 1 else "@"
                tags = ";".join(rng.sample(TAGS, rng.randint(0, 3)))
                year, month, day = rng.randint(2010, 2025), rng.randint(1, 12), rng.randint(1, 28)
                signup = f"{year}-{month:02d}-{day:02d}"
                lines.append(
                    f"user{i}{at}example.com,"
                    f"{rng.choice(FIRST)} {rng.choice(LAST)},"
                    f"{rng.randint(18, 90)},"
                    f"{rng.choice(COUNTRIES)},"
                    f"{signup},"
                    f"{tags}\n"
                )
            out.write("".join(lines))
    partial.replace(path)
    return path


def cached(folder: Path, rows: int) -> Path:
    """The generated file for ``rows`` in ``folder``, made once."""
    path = folder / f"users-{rows}.csv"
    return path if path.exists() else generate(path, rows)


EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")


def hand_validate(record: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The standard schema by hand: the coerced record and its (field, code) errors."""
    errors: list[tuple[str, str]] = []
    parsed: dict[str, Any] = dict(record)
    email = (record.get("email") or "").strip()
    if not email:
        errors.append(("email", "REQUIRED"))
    elif EMAIL.match(email):
        parsed["email"] = email
    else:
        errors.append(("email", "TYPE_MISMATCH"))
    if not record.get("name"):
        errors.append(("name", "REQUIRED"))
    age = record.get("age")
    if age:
        try:
            parsed["age"] = int(age) if INTEGER.match(age) else float(age)
        except ValueError:
            errors.append(("age", "TYPE_MISMATCH"))
    signup = record.get("signup_date")
    if signup:
        try:
            parsed["signup_date"] = date.fromisoformat(signup)
        except ValueError:
            errors.append(("signup_date", "TYPE_MISMATCH"))
    tags = record.get("tags")
    parsed["tags"] = [t.strip() for t in tags.split(";") if t.strip()] if tags else None
    return parsed, errors


def noop(record: dict[str, Any]) -> None:
    """The peers' processor: does nothing."""


def hand_batch(first: int, rows: list[list[str]]) -> tuple[int, dict[int, str]]:
    """One batch as a peer's task runs it: each row validated by hand, the valid ones
    passed to ``noop``. Returns (processed, the invalid rows as JSON by source index)."""
    failures: dict[int, str] = {}
    processed = 0
    for offset, row in enumerate(rows):
        parsed, errors = hand_validate(dict(zip(COLUMNS, row, strict=True)))
        if errors:
            failures[first + offset] = json.dumps({"row": row, "errors": errors})
        else:
            noop(parsed)
            processed += 1
    return processed, failures


def bare_pass(path: Path) -> tuple[int, int]:
    """csv.DictReader + hand_validate over the file: (rows, invalid)."""
    rows = invalid = 0
    with path.open(encoding="utf-8", newline="") as handle:
        for record in csv.DictReader(handle):
            rows += 1
            _, errors = hand_validate(record)
            invalid += bool(errors)
    return rows, invalid


def bare_baseline(path: Path, repeat: int = 3) -> dict[str, Any]:
    """The reference cost: best CPU time of ``repeat`` bare passes, in this process."""
    cpu: list[float] = []
    rows = invalid = 0
    for _ in range(repeat):
        started = time.process_time()
        rows, invalid = bare_pass(path)
        cpu.append(time.process_time() - started)
    best = min(cpu)
    return {
        "rows": rows,
        "invalid": invalid,
        "cpu_s": [round(c, 3) for c in cpu],
        "cpu_us_per_record": round(best * 1e6 / rows, 3),
        "records_per_cpu_s": round(rows / best),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("users.csv"))
    args = parser.parse_args()
    generate(args.out, args.rows)
    print(bare_baseline(args.out))


if __name__ == "__main__":
    main()

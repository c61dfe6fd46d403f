"""CPU and memory of ``redisbatch validate`` against a hand-written loop.

    python benchmarks/validate.py [--rows 1000000] [--invalid 0.01] [--repeat 3]

Generates a users CSV (seeded; kept in --dir, reused if present), then in
this one process: the dry run ``redisbatch validate`` performs
(``_dryrun.dry_run``: the CSV parser, the batcher, the workers' compiled
fast path), and a hand-written ``csv.DictReader`` + validation loop for the
same schema (email, name required, age number, country choices, signup_date
date, tags array), both counting invalid records by error code. CPU time
(``time.process_time``) of the best of --repeat interleaved runs. Prints one
JSON line: rows, invalid records, CPU seconds of each, their ratio (target
<= 1.2), and the process's peak RSS (ru_maxrss) after the first run of ours.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import resource
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from pipeline import COLUMNS, COUNTRIES, SCHEMA, make_row

from redisbatch import CsvParser, FileSource
from redisbatch._dryrun import dry_run


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, rows: int, invalid: float, seed: int = 3) -> None:
    rng = random.Random(seed)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(COLUMNS) + "\n")
        for start in range(0, rows, 10_000):
            lines = []
            for i in range(start, min(rows, start + 10_000)):
                lines.append(",".join(make_row(i, rng, invalid)) + "\n")
            out.write("".join(lines))
    partial.replace(path)


EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
CHOICES = frozenset(COUNTRIES)


def hand_validate(record: dict[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """What a careful engineer writes by hand for this schema."""
    errors: list[tuple[str, str]] = []
    parsed: dict[str, Any] = dict(record)
    email = record.get("email") or ""
    if not email:
        errors.append(("email", "REQUIRED"))
    elif EMAIL.match(email.strip()):
        parsed["email"] = email.strip()
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
    country = record.get("country")
    if country and country not in CHOICES:
        errors.append(("country", "INVALID_CHOICE"))
    signup = record.get("signup_date")
    if signup:
        try:
            parsed["signup_date"] = date.fromisoformat(signup)
        except ValueError:
            errors.append(("signup_date", "TYPE_MISMATCH"))
    tags = record.get("tags")
    parsed["tags"] = [t.strip() for t in tags.split(";") if t.strip()] if tags else None
    return parsed, errors


def hand(path: Path) -> tuple[int, dict[str, int]]:
    invalid = 0
    by_code: dict[str, int] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for record in csv.DictReader(handle):
            _, errors = hand_validate(record)
            if errors:
                invalid += 1
                for _, code in errors:
                    by_code[code] = by_code.get(code, 0) + 1
    return invalid, by_code


def ours(path: Path) -> tuple[int, dict[str, int]]:
    report = dry_run(SCHEMA, FileSource(path), CsvParser())
    return report.invalid_records, report.errors_by_code


def cpu(fn: Any, path: Path) -> tuple[float, Any]:
    started = time.process_time()
    result = fn(path)
    return time.process_time() - started, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--invalid", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()

    Path(args.dir).mkdir(parents=True, exist_ok=True)
    path = Path(args.dir) / f"redisbatch-validate-{args.rows}-{args.invalid}.csv"
    if not path.exists():
        generate(path, args.rows, args.invalid)
    rss_start = peak_rss_mb()
    first_s, (invalid, by_code) = cpu(ours, path)
    rss_ours = peak_rss_mb()
    hand_s, (hand_invalid, hand_codes) = cpu(hand, path)
    assert invalid == hand_invalid, (invalid, hand_invalid)
    assert by_code == hand_codes, (by_code, hand_codes)
    ours_times, hand_times = [first_s], [hand_s]
    for _ in range(args.repeat - 1):
        ours_times.append(cpu(ours, path)[0])
        hand_times.append(cpu(hand, path)[0])
    print(
        json.dumps(
            {
                "rows": args.rows,
                "file_mb": round(path.stat().st_size / 2**20, 1),
                "invalid_records": invalid,
                "validate_cpu_s": round(min(ours_times), 3),
                "dictreader_loop_cpu_s": round(min(hand_times), 3),
                "ratio": round(min(ours_times) / min(hand_times), 3),
                "peak_rss_mb_before": round(rss_start, 1),
                "peak_rss_mb_after_validate": round(rss_ours, 1),
                "peak_rss_mb_after_both": round(peak_rss_mb(), 1),
            }
        )
    )


if __name__ == "__main__":
    main()

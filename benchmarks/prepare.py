"""Prepare throughput and memory on a large CSV, against plain csv.reader.

    python benchmarks/prepare.py --size-mb 1024 [--style STYLE] [--repeat 3]

Generates a users CSV of about --size-mb (kept in --dir, reused if present)
in one of these styles:

- ``plain``: no quotes, LF line ends;
- ``quoted``: every field quoted;
- ``crlf``: CRLF line ends (these three are split with ``str.split``);
- ``mixed``: one name in eight quoted for the comma it holds (those lines
  go to ``csv.reader``);
- ``multiline``: one name in eight quoted for the line break it holds
  (whole chunks go to ``csv.reader``).

Then, in this one process, --repeat times: iterates it with csv.reader (the
baseline rows/s) and prepares it into a Redis server (--url, else REDIS_URL,
else an embedded one). Prints one JSON line: rows, file MB, csv.reader and
prepare rows/s of the best run of each, the ratio of every run pair and
their median, and the process's peak RSS in MB (ru_maxrss) after the
baseline and after preparing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import redis

from redisbatch import CsvParser, DistributedImport, FileSource
from redisbatch._embedded import EmbeddedServer

COUNTRIES = ("DE", "FR", "US", "JP", "BR")
STYLES = ("plain", "quoted", "crlf", "mixed", "multiline")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def name(i: int, q: str, style: str) -> str:
    if style == "mixed" and i % 8 == 0:
        return f'"Doe, User {i}"'
    if style == "multiline" and i % 8 == 0:
        return f'"User {i}\nsecond line"'
    return f"{q}User {i}{q}"


def generate(path: Path, size_mb: int, style: str = "plain") -> int:
    target = size_mb * 1024 * 1024
    rows = 0
    q = '"' if style == "quoted" else ""
    end = "\r\n" if style == "crlf" else "\n"
    partial = path.with_name(path.name + ".partial")  # an interrupted run leaves no file to reuse
    with partial.open("w", encoding="utf-8", newline="") as out:
        out.write(f"email,name,age,country,signup_date,tags{end}")
        written = 0
        while written < target:
            lines = [
                f"{q}user{i}@example.com{q},{name(i, q, style)},{q}{18 + i % 60}{q},"
                f"{q}{COUNTRIES[i % 5]}{q},{q}2024-{1 + i % 12:02d}-{1 + i % 28:02d}{q},"
                f"{q}red;green;blue{q}{end}"
                for i in range(rows, rows + 10000)
            ]
            chunk = "".join(lines)
            out.write(chunk)
            written += len(chunk)
            rows += len(lines)
    partial.replace(path)
    return rows


def count_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--style", choices=STYLES, default="plain")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    suffix = "" if args.style == "plain" else f"-{args.style}"
    path = Path(args.dir) / f"redisbatch-users-{args.size_mb}mb{suffix}.csv"
    if not path.exists():
        generate(path, args.size_mb, args.style)
    reader_times: list[float] = []
    prepare_times: list[float] = []
    rss_reader = rss_prepare = 0.0

    with ExitStack() as stack:
        url = args.url or stack.enter_context(EmbeddedServer()).url
        client = redis.Redis.from_url(url)
        di = DistributedImport(client, batch_size=args.batch_size, namespace=f"pb{os.getpid()}")
        for _ in range(args.repeat):
            started = time.perf_counter()
            rows = count_rows(path)
            reader_times.append(time.perf_counter() - started)
            rss_reader = max(rss_reader, peak_rss_mb())

            started = time.perf_counter()
            job = di.prepare(FileSource(path), CsvParser())
            prepare_times.append(time.perf_counter() - started)
            rss_prepare = max(rss_prepare, peak_rss_mb())
            assert job.total_records == rows, (job.total_records, rows)
            di.delete(job.job_id)

    ratios = [r / p for r, p in zip(reader_times, prepare_times, strict=True)]
    print(
        json.dumps(
            {
                "style": args.style,
                "rows": rows,
                "file_mb": round(path.stat().st_size / 2**20, 1),
                "csv_reader_rows_per_s": round(rows / min(reader_times)),
                "prepare_rows_per_s": round(rows / min(prepare_times)),
                "ratios": [round(r, 3) for r in ratios],
                "median_ratio": round(statistics.median(ratios), 3),
                "peak_rss_mb_after_csv_reader": round(rss_reader, 1),
                "peak_rss_mb_after_prepare": round(rss_prepare, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

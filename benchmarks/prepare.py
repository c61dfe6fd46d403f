"""Prepare throughput and memory on a large CSV, against plain csv.reader.

    python benchmarks/prepare.py --size-mb 1024

Generates a users CSV of about --size-mb (kept in --dir, reused if present),
then, in this one process: iterates it with csv.reader (the baseline rows/s),
and prepares it into a Redis server (--url, else REDIS_URL, else an embedded
one). Prints one JSON line: rows, file MB, csv.reader rows/s, prepare rows/s,
their ratio, and the process's peak RSS in MB (ru_maxrss) after each step.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import redis

from redisbatch import CsvParser, DistributedImport, FileSource
from redisbatch._embedded import EmbeddedServer

COUNTRIES = ("DE", "FR", "US", "JP", "BR")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, size_mb: int) -> int:
    target = size_mb * 1024 * 1024
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name,age,country,signup_date,tags\n")
        written = 0
        while written < target:
            lines = [
                f"user{i}@example.com,User {i},{18 + i % 60},{COUNTRIES[i % 5]},"
                f"2024-{1 + i % 12:02d}-{1 + i % 28:02d},red;green;blue\n"
                for i in range(rows, rows + 10000)
            ]
            chunk = "".join(lines)
            out.write(chunk)
            written += len(chunk)
            rows += len(lines)
    return rows


def count_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    path = Path(args.dir) / f"redisbatch-users-{args.size_mb}mb.csv"
    if not path.exists():
        generate(path, args.size_mb)
    rss_start = peak_rss_mb()

    started = time.perf_counter()
    rows = count_rows(path)
    reader_s = time.perf_counter() - started
    rss_reader = peak_rss_mb()

    with ExitStack() as stack:
        url = args.url or stack.enter_context(EmbeddedServer()).url
        client = redis.Redis.from_url(url)
        di = DistributedImport(client, batch_size=args.batch_size, namespace=f"pb{os.getpid()}")
        started = time.perf_counter()
        job = di.prepare(FileSource(path), CsvParser())
        prepare_s = time.perf_counter() - started
        rss_prepare = peak_rss_mb()
        assert job.total_records == rows, (job.total_records, rows)
        di.delete(job.job_id)

    print(
        json.dumps(
            {
                "rows": rows,
                "file_mb": round(path.stat().st_size / 2**20, 1),
                "csv_reader_rows_per_s": round(rows / reader_s),
                "prepare_rows_per_s": round(rows / prepare_s),
                "ratio": round(reader_s / prepare_s, 3),
                "peak_rss_mb_start": round(rss_start, 1),
                "peak_rss_mb_after_csv_reader": round(rss_reader, 1),
                "peak_rss_mb_after_prepare": round(rss_prepare, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

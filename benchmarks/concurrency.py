"""Concurrency of the async facade, and bulk inserts with a batch processor.

    python benchmarks/concurrency.py [--records 20000] [--io-ms 5] [--ceiling]

1. An async processor that awaits --io-ms (simulated I/O) per record, over
   --records records in batches of 500, one worker, at concurrency 1, 10,
   50 and 200: records/s and the ratio to the ideal (concurrency / io time,
   capped by nothing else). With --ceiling, also the ratio that bare asyncio
   reaches on this machine for the same calls (no Redis, no validation):
   what the event loop itself allows, worth knowing on a busy machine.
2. Bulk inserts into SQLite: a batch_processor doing one executemany per
   batch against a per-record processor doing one INSERT each, same data,
   same run.

Prints one JSON line per measurement. The server is --url, else REDIS_URL,
else an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

from redisbatch import (
    AsyncDistributedImport,
    BatchContext,
    DistributedImport,
    Field,
    IterableSource,
    Schema,
    batch_processor,
)
from redisbatch._embedded import EmbeddedServer

SCHEMA = Schema([Field("id", "integer", required=True), Field("email", "email", required=True)])


def rows(count: int) -> IterableSource:
    return IterableSource({"id": str(i), "email": f"user{i}@example.com"} for i in range(count))


async def asyncio_ceiling(records: int, io_s: float, concurrency: int) -> float:
    """The ratio to ideal of ``records`` bare ``asyncio.sleep(io_s)`` calls,
    ``concurrency`` at a time."""
    numbers = iter(range(records))

    async def lane() -> None:
        for _ in numbers:
            await asyncio.sleep(io_s)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return records / (time.perf_counter() - started) / (concurrency / io_s)


async def concurrency_run(url: str, records: int, io_s: float, concurrency: int) -> dict[str, Any]:
    client = redis.asyncio.Redis.from_url(url)
    di = AsyncDistributedImport(
        client, SCHEMA, batch_size=500, concurrency=concurrency, namespace=f"cc{concurrency}"
    )
    job = (await di.prepare(rows(records))).job_id

    async def io_bound(record: dict[str, Any], ctx: Any) -> None:
        await asyncio.sleep(io_s)

    started = time.perf_counter()
    summary = await di.run_worker(job, io_bound)
    elapsed = time.perf_counter() - started
    assert summary.processed == records
    await di.delete(job)
    await client.aclose()
    rate = records / elapsed
    ideal = concurrency / io_s
    return {
        "benchmark": "async-concurrency",
        "records": records,
        "io_ms": io_s * 1000,
        "concurrency": concurrency,
        "records_per_s": round(rate),
        "ideal_records_per_s": round(ideal),
        "ratio_to_ideal": round(rate / ideal, 3),
    }


def bulk_insert_run(url: str, records: int, folder: Path) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    results: dict[str, float] = {}
    for mode in ("per_record", "batch_processor"):
        db = sqlite3.connect(folder / f"{mode}.db", check_same_thread=False)
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL)")
        di = DistributedImport(client, SCHEMA, batch_size=500, namespace=f"bulk-{mode}")
        job = di.prepare(rows(records)).job_id

        def insert_one(record: dict[str, Any], ctx: Any, db: sqlite3.Connection = db) -> None:
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO users VALUES (?, ?)", (record["id"], record["email"])
                )

        @batch_processor
        def insert_many(
            records: list[dict[str, Any]], ctx: BatchContext, db: sqlite3.Connection = db
        ) -> None:
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO users VALUES (?, ?)",
                    [(r["id"], r["email"]) for r in records],
                )

        started = time.perf_counter()
        summary = di.run_worker(job, insert_one if mode == "per_record" else insert_many)
        results[mode] = records / (time.perf_counter() - started)
        assert summary.processed == records
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == records
        di.delete(job)
        db.close()
    return {
        "benchmark": "bulk-insert-sqlite",
        "records": records,
        "per_record_records_per_s": round(results["per_record"]),
        "batch_processor_records_per_s": round(results["batch_processor"]),
        "speedup": round(results["batch_processor"] / results["per_record"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--io-ms", type=float, default=5.0)
    parser.add_argument("--levels", default="1,10,50,200")
    parser.add_argument("--url", default=os.environ.get("REDIS_URL"))
    parser.add_argument(
        "--ceiling", action="store_true", help="also measure bare asyncio at each level"
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.url or stack.enter_context(EmbeddedServer()).url
        for level in (int(x) for x in args.levels.split(",")):
            # At concurrency 1 the run takes records * io time: sample fewer records.
            records = args.records if level > 1 else min(args.records, 2000)
            result = asyncio.run(concurrency_run(url, records, args.io_ms / 1000, level))
            if args.ceiling:
                ceiling = asyncio.run(asyncio_ceiling(records, args.io_ms / 1000, level))
                result["asyncio_ceiling_ratio"] = round(ceiling, 3)
            print(json.dumps(result), flush=True)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        print(json.dumps(bulk_insert_run(url, args.records, folder)), flush=True)


if __name__ == "__main__":
    main()

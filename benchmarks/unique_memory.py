"""Memory of unique_fields on a large prepare: the orchestrator stays flat,
Redis holds one small hash entry per unique value.

    python benchmarks/unique_memory.py --records 10000000

Prepares generated users (email unique, 1% repeated) from a generator, so
the source itself takes no memory. Prints one JSON line: records/s of the
prepare, the orchestrator's peak RSS before and after it, and the job's
unique hash size in Redis (MEMORY USAGE) per unique value. The same prepare
without unique_fields runs first as the baseline for the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import redis

from redisbatch import DistributedImport, Field, IterableSource, Schema
from redisbatch._embedded import EmbeddedServer


def users(count: int) -> Iterator[dict[str, Any]]:
    for i in range(count):
        n = i - 1 if i % 100 == 99 else i  # 1% repeat the previous email
        yield {"email": f"user{n}@example.com", "name": f"User {i}"}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(
    client: redis.Redis, schema: Schema, records: int
) -> tuple[DistributedImport, str, float]:
    di = DistributedImport(client, schema, batch_size=1000, namespace=f"um{os.getpid()}")
    started = time.perf_counter()
    job = di.prepare(IterableSource(users(records))).job_id
    return di, job, records / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.url or stack.enter_context(EmbeddedServer()).url
        client = redis.Redis.from_url(url)
        fields = [Field("email", "email", required=True), Field("name")]
        rss_start = peak_rss_mb()
        plain, plain_job, plain_rate = prepare(client, Schema(fields), args.records)
        plain.delete(plain_job)
        rss_plain = peak_rss_mb()
        di, job, rate = prepare(client, Schema(fields, unique_fields=["email"]), args.records)
        rss_unique = peak_rss_mb()
        unique_key = di._core.store.keys(job).unique
        entries = client.hlen(unique_key)
        unique_bytes = int(client.memory_usage(unique_key, samples=0) or 0)
        di.delete(job)
        print(
            json.dumps(
                {
                    "records": args.records,
                    "unique_values": entries,
                    "prepare_records_per_s": round(rate),
                    "baseline_records_per_s": round(plain_rate),
                    "ratio": round(rate / plain_rate, 3),
                    "peak_rss_mb_start": round(rss_start, 1),
                    "peak_rss_mb_after_plain": round(rss_plain, 1),
                    "peak_rss_mb_after_unique": round(rss_unique, 1),
                    "redis_unique_hash_mb": round(unique_bytes / 2**20, 1),
                    "redis_bytes_per_unique_value": round(unique_bytes / max(1, entries), 1),
                }
            )
        )


if __name__ == "__main__":
    main()

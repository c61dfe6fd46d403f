"""The standard job on RQ: one RQ job per batch, run by forking workers.

Each batch job validates its rows by hand (``standard_job.hand_validate``),
passes valid records to a no-op processor, and then, in one MULTI/EXEC:
stores every invalid record in ``<job>:failed`` (field = source index), marks
its batch done in ``<job>:batches`` with HSETNX (a redelivered batch finds it
set and counts nothing twice) and reads how many batches are done. The one
job whose HSETNX was new and saw every batch done is the completion callback:
it sums the counts and pushes the summary to ``<job>:done`` -- exactly once.
(RQ's own ``depends_on`` with thousands of dependencies checks every
dependency on each completion, quadratic in batches, so it is not used.)
"""

from __future__ import annotations

import json
import os

import redis
from standard_job import hand_batch

_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        # The server run.py started (never a default: the user's own Redis is not ours).
        _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client


def process_batch(job: str, index: int, total: int, first: int, rows: list[list[str]]) -> int:
    processed, failures = hand_batch(first, rows)
    pipe = client().pipeline(transaction=True)
    if failures:
        pipe.hset(f"{job}:failed", mapping=failures)
    pipe.hsetnx(f"{job}:batches", str(index), f"{processed},{len(failures)}")
    pipe.hlen(f"{job}:batches")
    *_, new, done = pipe.execute()
    if new and done == total:
        counts = [v.split(b",") for v in client().hvals(f"{job}:batches")]
        summary = {
            "processed": sum(int(p) for p, _ in counts),
            "failed": sum(int(f) for _, f in counts),
            "batches": len(counts),
        }
        client().rpush(f"{job}:done", json.dumps(summary))
    return processed


def _preloaded_worker_class() -> type:
    from rq.worker import Worker

    class PreloadedWorker(Worker):
        """RQ's forking worker, with this module imported in the parent (as RQ's
        docs advise): each work horse is forked with the task code loaded."""

    return PreloadedWorker


PreloadedWorker = _preloaded_worker_class()

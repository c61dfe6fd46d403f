"""A serverless function's handler: process batches until the time limit nears.

Each invocation is one worker; many may run at once against the same Redis.
The job is prepared elsewhere (see quickstart.py) and its id passed in the event.
"""

from __future__ import annotations

import os
from typing import Any

import redis

from redisbatch import BatchContext, DistributedImport, batch_processor

client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
di = DistributedImport(client, namespace="example", stale_batch_timeout=120)


@batch_processor
def insert_users(records: list[dict[str, Any]], ctx: BatchContext) -> dict[int, str] | None:
    # One bulk write per batch, e.g. executemany / COPY, idempotent on ctx.idempotency_key.
    return None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    remaining = context.get_remaining_time_in_millis() / 1000 if context else 60.0
    summary = di.run_worker(
        event["job_id"], insert_users, wait=False, time_budget=max(0.0, remaining - 10)
    )
    return {"batches": summary.batches, "processed": summary.processed, "done": summary.finalized}

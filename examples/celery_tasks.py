"""Fan a prepared job out to the Celery workers you already run.

The orchestrator prepares the job (see quickstart.py), then calls
``fan_out(job_id, tasks=N)``: N Celery tasks each run ``run_worker`` with a
time budget, so no task outlives your broker's visibility timeout or your
``task_time_limit``. A task whose budget ran out before the job ended queues
one more of itself, so the job always finishes, however long it is.

    celery -A celery_tasks worker --concurrency 4     # your existing workers
    python -c "import celery_tasks; celery_tasks.fan_out('users-2026-12', tasks=8)"

Stopping a Celery worker (warm shutdown) stops the run at the next record
boundary: what was done is committed and the rest of the batch handed back.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import redis
from celery import Celery  # type: ignore[import-untyped]

from redisbatch import DistributedImport, ProcessingContext

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
NAMESPACE = os.environ.get("REDISBATCH_NAMESPACE", "example")
#: Seconds one task may run; keep it well under the broker's visibility timeout.
TIME_BUDGET = 240.0

app = Celery("redisbatch_example", broker=os.environ.get("CELERY_BROKER_URL", REDIS_URL))


@functools.cache
def importer() -> DistributedImport:
    """One facade per worker process (built on first use, after Celery forks)."""
    return DistributedImport(redis.Redis.from_url(REDIS_URL), namespace=NAMESPACE)


def save_record(record: dict[str, Any], ctx: ProcessingContext) -> None:
    """Stands in for your write; idempotent on ctx.idempotency_key (a batch may run twice)."""
    importer().redis.hset(f"{NAMESPACE}:saved", ctx.idempotency_key, repr(sorted(record.items())))


@app.task(name="redisbatch.example.process_job", acks_late=True)  # type: ignore[untyped-decorator]
def process_job(job_id: str, time_budget: float = TIME_BUDGET) -> dict[str, Any]:
    """Works on the job for at most ``time_budget`` seconds; queues a successor if the
    job is still running then."""
    di = importer()
    summary = di.run_worker(job_id, save_record, time_budget=time_budget)
    status = di.status(job_id)
    if status is not None and not status.is_complete:
        process_job.delay(job_id, time_budget)  # the budget ran out: hand over
    return {
        "worker": summary.worker_id,
        "batches": summary.batches,
        "processed": summary.processed,
        "finalized": summary.finalized,
        "state": None if status is None else status.state,
    }


def fan_out(job_id: str, tasks: int, time_budget: float = TIME_BUDGET) -> list[Any]:
    """Queues ``tasks`` tasks on the job; returns their AsyncResults."""
    return [process_job.delay(job_id, time_budget) for _ in range(tasks)]

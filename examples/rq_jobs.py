"""Fan a prepared job out to the RQ workers you already run.

The orchestrator prepares the job (see quickstart.py), then calls
``fan_out(job_id, jobs=N)``: N RQ jobs each run ``run_worker`` with a time
budget under RQ's ``job_timeout`` (RQ kills a job that exceeds it). One whose
budget ran out before the import ended enqueues one more of itself on the same
queue, so the import always finishes.

    rq worker redisbatch                  # your existing workers, on the queue used here
    python -c "import rq_jobs; rq_jobs.fan_out('users-2026-12', jobs=8)"
"""

from __future__ import annotations

import functools
import os
from typing import Any

import redis
from rq import Queue, get_current_job

from redisbatch import DistributedImport, ProcessingContext

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
NAMESPACE = os.environ.get("REDISBATCH_NAMESPACE", "example")
QUEUE = "redisbatch"
#: Seconds one RQ job works; RQ's job_timeout is set a minute above it.
TIME_BUDGET = 240.0


@functools.cache
def importer() -> DistributedImport:
    """One facade per worker process."""
    return DistributedImport(redis.Redis.from_url(REDIS_URL), namespace=NAMESPACE)


def save_record(record: dict[str, Any], ctx: ProcessingContext) -> None:
    """Stands in for your write; idempotent on ctx.idempotency_key (a batch may run twice)."""
    importer().redis.hset(f"{NAMESPACE}:saved", ctx.idempotency_key, repr(sorted(record.items())))


def process_job(job_id: str, time_budget: float = TIME_BUDGET) -> dict[str, Any]:
    """Works on the import for at most ``time_budget`` seconds; enqueues a successor
    if it is still running then."""
    di = importer()
    summary = di.run_worker(job_id, save_record, time_budget=time_budget)
    status = di.status(job_id)
    if status is not None and not status.is_complete:
        current = get_current_job()
        if current is not None:  # the budget ran out: hand over on the same queue
            queue = Queue(current.origin, connection=current.connection)
            _enqueue(queue, job_id, time_budget)
    return {
        "worker": summary.worker_id,
        "batches": summary.batches,
        "processed": summary.processed,
        "finalized": summary.finalized,
        "state": None if status is None else status.state,
    }


def _enqueue(queue: Queue, job_id: str, time_budget: float) -> Any:
    return queue.enqueue(
        process_job, job_id, time_budget, job_timeout=int(time_budget) + 60, result_ttl=3600
    )


def fan_out(
    job_id: str, jobs: int, time_budget: float = TIME_BUDGET, connection: Any = None
) -> list[Any]:
    """Enqueues ``jobs`` RQ jobs on the import; returns them."""
    queue = Queue(QUEUE, connection=connection or importer().redis)
    return [_enqueue(queue, job_id, time_budget) for _ in range(jobs)]

"""The standard job on Celery: one task per batch in a chord, on a Redis
broker and result backend; a prefork worker (-c 4) runs it.

Each batch task validates its rows by hand (``standard_job.hand_validate``),
passes valid records to a no-op processor, stores every invalid record in the
job's Redis hash ``<job>:failed`` (field = source index, so a redelivered
task writes the same fields again), and returns its counts. The chord's body
``complete`` runs once, after every batch: it sums the counts and pushes the
summary to ``<job>:done`` (the completion callback).

    celery -A celery_tasks worker -c 4 -P prefork   (BENCH_REDIS_URL names the server)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready
from standard_job import hand_batch

#: The server run.py started (never a default: the user's own Redis is not ours to write to).
URL = os.environ["BENCH_REDIS_URL"]
app = Celery("peers", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    task_ignore_result=False,
    broker_connection_retry_on_startup=True,
    result_expires=3600,
)
_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(URL)
    return _client


@app.task(name="peers.process_batch")
def process_batch(job: str, first: int, rows: list[list[str]]) -> list[int]:
    processed, failures = hand_batch(first, rows)
    if failures:
        client().hset(f"{job}:failed", mapping=failures)
    return [processed, len(failures)]


@app.task(name="peers.complete")
def complete(results: list[list[int]], job: str) -> None:
    summary = {
        "processed": sum(r[0] for r in results),
        "failed": sum(r[1] for r in results),
        "batches": len(results),
    }
    client().rpush(f"{job}:done", json.dumps(summary))


@worker_ready.connect
def _ready(**_: Any) -> None:
    marker = os.environ.get("BENCH_READY_FILE")
    if marker:
        Path(marker).write_text("ready")

"""Worker process bodies for the fault tests (importable by spawned children)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis

from redisbatch import DistributedImport


def slow_worker(url: str, namespace: str, job_id: str, stale: float) -> None:
    """Processes records slowly, marking each one seen in a Redis set."""
    client = redis.Redis.from_url(url)
    di = DistributedImport(client, namespace=namespace, stale_batch_timeout=stale)

    def processor(record: dict[str, Any], ctx: Any) -> None:
        client.sadd(f"{namespace}:seen", ctx.record_index)
        time.sleep(0.002)

    di.run_worker(job_id, processor)


def poison_worker(url: str, namespace: str, job_id: str, poison: int) -> None:
    """Kills its own process on the poison record, as a segfault or OOM kill would."""
    client = redis.Redis.from_url(url)
    di = DistributedImport(
        client, namespace=namespace, stale_batch_timeout=0.5, max_batch_attempts=2
    )

    def processor(record: dict[str, Any], ctx: Any) -> None:
        if record["n"] == poison:
            os.kill(os.getpid(), signal.SIGKILL)

    di.run_worker(job_id, processor)

"""Worker process bodies for the fault tests (importable by spawned children)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import redis
import redis.asyncio

from redisbatch import AsyncDistributedImport, DistributedImport


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


def slow_prepare(url: str, namespace: str, job_id: str, count: int) -> None:
    """Prepares ``resume_rows(count)`` slowly, to be killed halfway."""
    from redisbatch import Field, IterableSource, Schema

    schema = Schema([Field("email", "email"), Field("n", "integer")], unique_fields=["email"])
    di = DistributedImport(redis.Redis.from_url(url), schema, batch_size=100, namespace=namespace)

    def slowly() -> Any:
        for row in resume_rows(count):
            time.sleep(0.0005)
            yield row

    di.prepare(IterableSource(slowly()), job_id=job_id)


def resume_rows(count: int) -> Any:
    """Rows with some invalid values and repeated emails, the same every time."""
    for i in range(count):
        email = f"u{i % 700}@x.io" if i % 7 else f"u{i}@x.io"
        yield {"email": email, "n": "bad" if i % 97 == 0 else str(i)}


def stoppable_worker(url: str, namespace: str, job_id: str, facade: str) -> None:
    """Processes records slowly (0.1 s each, marking each one seen) until stopped:
    exits 143 on SIGTERM (``handle_signals=True``), 130 on Ctrl-C (SIGINT)."""
    try:
        if facade == "sync":
            client = redis.Redis.from_url(url)
            di = DistributedImport(client, namespace=namespace, stale_batch_timeout=60)

            def processor(record: dict[str, Any], ctx: Any) -> None:
                client.sadd(f"{namespace}:seen", record["n"])
                time.sleep(0.1)

            di.run_worker(job_id, processor, handle_signals=True)
        else:
            asyncio.run(_async_stoppable_worker(url, namespace, job_id))
    except KeyboardInterrupt:
        sys.exit(130)


async def _async_stoppable_worker(url: str, namespace: str, job_id: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    di = AsyncDistributedImport(client, namespace=namespace, stale_batch_timeout=60)

    async def processor(record: dict[str, Any], ctx: Any) -> None:
        await client.sadd(f"{namespace}:seen", record["n"])
        await asyncio.sleep(0.1)

    await di.run_worker(job_id, processor, handle_signals=True)

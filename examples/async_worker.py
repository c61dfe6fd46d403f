"""An asyncio worker awaiting I/O for each record, 50 records at a time.

python examples/async_worker.py          # REDIS_URL, else redis://localhost:6379/0
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis.asyncio

from redisbatch import AsyncDistributedImport, IterableSource, ProcessingContext


async def call_api(record: dict[str, Any], ctx: ProcessingContext) -> None:
    await asyncio.sleep(0.005)  # an HTTP call, sent with ctx.idempotency_key


async def main() -> None:
    client = redis.asyncio.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    di = AsyncDistributedImport(client, batch_size=500, concurrency=50, namespace="example")
    job = await di.prepare(IterableSource({"n": i} for i in range(5000)))
    summary = await di.run_worker(job.job_id, call_api)
    print(summary)
    await di.delete(job.job_id)
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())

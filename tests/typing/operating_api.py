"""Type-checks the API for operating jobs (``mypy --strict tests/typing``): failure
thresholds, retry_failed, watch and the JobStatus additions, on both facades."""

from __future__ import annotations

import redis
import redis.asyncio

from redisbatch import AsyncDistributedImport, DistributedImport, JobNotFoundError, JobStatus


def sync_operating(client: redis.Redis) -> None:
    di = DistributedImport(client, tolerated_failure_count=10, tolerated_failure_percentage=2.5)
    retried: int = di.retry_failed("job", include_invalid=True)
    for status in di.watch("job", interval=0.5):
        attempt: int = status.attempt
        rate: float | None = status.rate
        eta: float | None = status.eta
        workers: int = status.workers
        print(retried, attempt, rate, eta, workers)
    try:
        list(di.watch("nope"))
    except JobNotFoundError as exc:
        print(exc.job_id)


async def async_operating(client: redis.asyncio.Redis) -> None:
    di = AsyncDistributedImport(client, tolerated_failure_percentage=1.0)
    retried: int = await di.retry_failed("job")
    snapshots: list[JobStatus] = [status async for status in di.watch("job", interval=0.5)]
    print(retried, snapshots)

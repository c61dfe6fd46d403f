"""``DistributedImport``: the sync facade (API contract, section 1).

Each method is a flow from ``Core`` run by the ``SyncDriver``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
import redis.asyncio
import redis.cluster

from ._config import Settings, check_client_options
from ._core import Core, default_worker_id, parse_batch_id
from ._events import Handler
from ._keys import check_job_id
from ._parsers import Parser
from ._pipeline import DuplicateChecker, Hooks, Processor
from ._results import (
    BatchResult,
    JobStatus,
    PrepareResult,
    PreviewResult,
    ProcessedRecord,
    WorkerSummary,
)
from ._schema import Schema
from ._sync import SyncDriver

__all__ = ["DistributedImport"]

_FAILED_CHUNK = 200  # batches read per round trip by failed_records


def _check_sync_client(client: Any) -> None:
    if not isinstance(client, redis.Redis | redis.cluster.RedisCluster):
        hint = ""
        if isinstance(client, redis.asyncio.Redis | redis.asyncio.RedisCluster):
            hint = " (for a redis.asyncio client use AsyncDistributedImport)"
        raise TypeError(
            "redis must be a redis-py sync client (redis.Redis, redis.RedisCluster, "
            f"fakeredis.FakeRedis), got {type(client).__name__}{hint}"
        )
    check_client_options(client.get_connection_kwargs())


class DistributedImport:
    """Prepare a source into batches in Redis; process them from any number of workers."""

    def __init__(
        self,
        redis: Any,
        schema: Schema | None = None,
        *,
        batch_size: int = 100,
        continue_on_error: bool = True,
        max_retries: int = 0,
        retry_delay: float = 1.0,
        stale_batch_timeout: float = 900.0,
        max_batch_attempts: int = 5,
        hooks: Hooks | None = None,
        duplicate_checker: DuplicateChecker | None = None,
        namespace: str = "redisbatch",
        retention: float | None = 7 * 24 * 3600,
        max_pending_batches: int | None = None,
    ) -> None:
        _check_sync_client(redis)
        self._core = Core(
            schema,
            hooks,
            Settings(
                batch_size=batch_size,
                continue_on_error=continue_on_error,
                max_retries=max_retries,
                retry_delay=retry_delay,
                stale_batch_timeout=stale_batch_timeout,
                max_batch_attempts=max_batch_attempts,
                namespace=namespace,
                retention=retention,
                max_pending_batches=max_pending_batches,
            ),
            duplicate_checker,
        )
        self._driver = SyncDriver(redis)
        self.redis = redis

    # ------------------------------------------------------------ orchestrator

    def prepare(
        self, source: Any, parser: Parser | None = None, *, job_id: str | None = None
    ) -> PrepareResult:
        """Streams the source into batches in Redis, then seals the job."""
        return self._driver.run(self._core.prepare_flow(source, parser, job_id))

    def preview(
        self, source: Any, parser: Parser | None = None, max_records: int = 10
    ) -> PreviewResult:
        """Validates the first records of a source without storing anything."""
        return self._core.preview(source, parser, max_records)

    def count(self, source: Any, parser: Parser | None = None) -> int:
        """How many records the source yields (after ``skip_empty_rows``)."""
        return self._core.count(source, parser)

    # ------------------------------------------------------------ workers

    def process_worker_batch(
        self, job_id: str, processor: Processor, worker_id: str
    ) -> BatchResult:
        """Claims one batch, processes it, commits it, and maybe finalizes the job."""
        return self._driver.run(self._core.batch_flow(job_id, processor, worker_id))

    def run_worker(
        self,
        job_id: str,
        processor: Processor,
        worker_id: str | None = None,
        *,
        wait: bool = True,
    ) -> WorkerSummary:
        """Processes batches until the job reaches a final state (or, with
        ``wait=False``, until nothing is claimable)."""
        return self._driver.run(self._core.worker_flow(job_id, processor, worker_id, wait))

    def release_batch(self, job_id: str, batch_id: str | int, worker_id: str) -> bool:
        """Returns a claimed batch to the queue if ``worker_id`` still holds it."""
        flow = self._core.store.release(check_job_id(job_id), parse_batch_id(batch_id), worker_id)
        return self._driver.run(flow)

    def reclaim_stale_batches(self, job_id: str, timeout: float | None = None) -> int:
        """Makes batches idle longer than ``timeout`` claimable again."""
        limit = self._core.settings.stale_batch_timeout if timeout is None else timeout
        return self._driver.run(self._core.store.reclaim_stale(check_job_id(job_id), limit))

    # ------------------------------------------------------------ reading

    def status(self, job_id: str) -> JobStatus | None:
        """A consistent snapshot of the job, or None for an unknown job."""
        return self._driver.run(self._core.status_flow(job_id))

    def failed_records(self, job_id: str) -> Iterator[ProcessedRecord]:
        """Every invalid or failed record with its errors, in source order."""
        store = self._core.store
        total = self._driver.run(store.total_batches(check_job_id(job_id)))
        for first in range(0, total, _FAILED_CHUNK):
            last = min(total, first + _FAILED_CHUNK)
            yield from self._driver.run(store.failed_chunk(job_id, first, last))

    # ------------------------------------------------------------ control

    def pause(self, job_id: str) -> bool:
        return self._driver.run(self._core.store.pause(check_job_id(job_id)))

    def resume(self, job_id: str) -> bool:
        return self._driver.run(self._core.resume_flow(job_id))

    def abort(self, job_id: str) -> bool:
        return self._driver.run(self._core.store.end(check_job_id(job_id), "ABORTED"))

    def delete(self, job_id: str) -> bool:
        return self._driver.run(self._core.store.delete(check_job_id(job_id)))

    # ------------------------------------------------------------ events

    def on(self, event_type: str, handler: Handler) -> DistributedImport:
        self._core.emitter.on(event_type, handler)
        return self

    def on_any(self, handler: Handler) -> DistributedImport:
        self._core.emitter.on_any(handler)
        return self

    def off_any(self, handler: Handler) -> DistributedImport:
        self._core.emitter.off_any(handler)
        return self

    @staticmethod
    def new_worker_id() -> str:
        """The default worker id: ``hostname:pid:random``."""
        return default_worker_id()

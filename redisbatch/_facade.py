"""The facades (API contract, section 1): ``DistributedImport`` here, and the
base both it and ``AsyncDistributedImport`` share.

Each public method is a flow from ``Core`` handed to the facade's driver:
the only code written twice is that hand-over (``run(...)`` vs
``await run(...)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypedDict

import redis
import redis.asyncio
import redis.cluster

from ._config import Settings, check_client_options
from ._core import Core, default_worker_id
from ._events import Handler
from ._parsers import Parser
from ._pipeline import BatchProcessor, DuplicateChecker, Hooks, Processor
from ._results import (
    BatchResult,
    JobStatus,
    PrepareResult,
    PreviewResult,
    ProcessedRecord,
    WorkerSummary,
)
from ._schema import Schema
from ._sync import SyncDriver, sigterm_as_exit

__all__ = ["DistributedImport", "ImportOptions"]

AnyProcessor = Processor | BatchProcessor


class ImportOptions(TypedDict, total=False):
    """The keyword options both facades take (API contract, section 1)."""

    batch_size: int
    continue_on_error: bool
    max_retries: int
    retry_delay: float
    stale_batch_timeout: float
    max_batch_attempts: int
    hooks: Hooks | None
    duplicate_checker: DuplicateChecker | None
    namespace: str
    retention: float | None
    max_pending_batches: int | None
    max_batch_bytes: int
    tolerated_failure_count: int | None
    tolerated_failure_percentage: float | None


_SYNC_CLIENTS = (redis.Redis, redis.cluster.RedisCluster)
_ASYNC_CLIENTS = (redis.asyncio.Redis, redis.asyncio.RedisCluster)


class _Facade:
    """What both facades share: options, the core, local events."""

    _clients: tuple[type, ...] = _SYNC_CLIENTS
    _client_kind = "sync"

    def __init__(
        self,
        redis: Any,
        schema: Schema | None = None,
        *,
        batch_size: int = 100,
        continue_on_error: bool = True,
        max_retries: int = 0,
        retry_delay: float = 1.0,
        stale_batch_timeout: float = 60.0,
        max_batch_attempts: int = 5,
        hooks: Hooks | None = None,
        duplicate_checker: DuplicateChecker | None = None,
        namespace: str = "redisbatch",
        retention: float | None = 7 * 24 * 3600,
        max_pending_batches: int | None = None,
        max_batch_bytes: int = 4 * 1024 * 1024,
        tolerated_failure_count: int | None = None,
        tolerated_failure_percentage: float | None = None,
    ) -> None:
        self._check_client(redis)
        self.redis = redis
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
                max_batch_bytes=max_batch_bytes,
                tolerated_failure_count=tolerated_failure_count,
                tolerated_failure_percentage=tolerated_failure_percentage,
            ),
            duplicate_checker,
        )
        self._connect(redis)

    def _connect(self, client: Any) -> None:
        """Sets up the facade's driver."""
        raise NotImplementedError

    @classmethod
    def _check_client(cls, client: Any) -> None:
        if not isinstance(client, cls._clients):
            other = _ASYNC_CLIENTS if cls._clients is _SYNC_CLIENTS else _SYNC_CLIENTS
            hint = ""
            if isinstance(client, other):
                hint = " (use " + (
                    "AsyncDistributedImport)" if other is _ASYNC_CLIENTS else "DistributedImport)"
                )
            raise TypeError(
                f"redis must be a redis-py {cls._client_kind} client, "
                f"got {type(client).__name__}{hint}"
            )
        check_client_options(client.get_connection_kwargs())  # type: ignore[attr-defined]

    def on(self, event_type: str, handler: Handler) -> Any:
        """Calls ``handler(event)`` for each local event of that type."""
        self._core.emitter.on(event_type, handler)
        return self

    def on_any(self, handler: Handler) -> Any:
        """Calls ``handler(event)`` for every local event."""
        self._core.emitter.on_any(handler)
        return self

    def off_any(self, handler: Handler) -> Any:
        self._core.emitter.off_any(handler)
        return self

    @staticmethod
    def new_worker_id() -> str:
        """The default worker id: ``hostname:pid:random``."""
        return default_worker_id()


class DistributedImport(_Facade):
    """Prepare a source into batches in Redis; process them from any number of workers."""

    _driver: SyncDriver

    def _connect(self, client: Any) -> None:
        self._driver = SyncDriver(client)
        from ._eviction import eviction_flow

        self._driver.run(eviction_flow(client))  # one warning if keys may be evicted

    # ------------------------------------------------------------ orchestrator

    def prepare(
        self,
        source: Any,
        parser: Parser | None = None,
        *,
        job_id: str | None = None,
        resume: bool = False,
    ) -> PrepareResult:
        """Streams the source into batches in Redis, then seals the job."""
        return self._driver.run(self._core.prepare_flow(source, parser, job_id, resume))

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
        self,
        job_id: str,
        processor: AnyProcessor,
        worker_id: str,
        *,
        time_budget: float | None = None,
    ) -> BatchResult:
        """Claims one batch, processes it, commits it, and maybe finalizes the job."""
        return self._driver.run(self._core.batch_flow(job_id, processor, worker_id, time_budget))

    def run_worker(
        self,
        job_id: str,
        processor: AnyProcessor,
        worker_id: str | None = None,
        *,
        wait: bool = True,
        time_budget: float | None = None,
        wait_for_job: float = 0.0,
        handle_signals: bool = False,
    ) -> WorkerSummary:
        """Processes batches until the job reaches a final state (or, with
        ``wait=False``, until nothing is claimable; or the budget is spent).

        A job that does not exist raises ``JobNotFoundError`` once
        ``wait_for_job`` seconds have passed without it appearing.
        Interrupted mid-batch (``KeyboardInterrupt``, ``SystemExit``), the
        worker commits the records it finished, hands the rest of its batch
        back to the queue at once and lets the interruption go on; with
        ``handle_signals=True`` (main thread only) SIGTERM raises
        ``SystemExit(143)`` for the call's duration. Connection errors (a
        Redis restart, a failover) are retried with backoff for up to
        ``stale_batch_timeout``."""
        flow = self._core.worker_flow(job_id, processor, worker_id, wait, time_budget, wait_for_job)
        if not handle_signals:
            return self._driver.run(flow)
        with sigterm_as_exit() as gate:
            return self._driver.run(flow, gate)

    def release_batch(self, job_id: str, batch_id: str | int, worker_id: str) -> bool:
        """Returns a claimed batch to the queue if ``worker_id`` still holds it."""
        return self._driver.run(self._core.release_flow(job_id, batch_id, worker_id))

    def reclaim_stale_batches(self, job_id: str, timeout: float | None = None) -> int:
        """Makes batches idle longer than ``timeout`` claimable again."""
        return self._driver.run(self._core.reclaim_flow(job_id, timeout))

    # ------------------------------------------------------------ reading

    def status(self, job_id: str) -> JobStatus | None:
        """A consistent snapshot of the job, or None for an unknown job."""
        return self._driver.run(self._core.status_flow(job_id))

    def failed_records(self, job_id: str) -> Iterator[ProcessedRecord]:
        """Every invalid or failed record with its errors, in source order."""
        total = self._driver.run(self._core.total_batches_flow(job_id))
        for flow in self._core.failed_chunks(job_id, total):
            yield from self._driver.run(flow)

    # ------------------------------------------------------------ control

    def pause(self, job_id: str) -> bool:
        return self._driver.run(self._core.pause_flow(job_id))

    def resume(self, job_id: str) -> bool:
        return self._driver.run(self._core.resume_flow(job_id))

    def abort(self, job_id: str) -> bool:
        return self._driver.run(self._core.abort_flow(job_id))

    def delete(self, job_id: str) -> bool:
        return self._driver.run(self._core.delete_flow(job_id))

    # ------------------------------------------------------------ operating jobs

    def jobs(self) -> list[JobStatus]:
        """The namespace's jobs, newest first."""
        from ._jobs import jobs_flow

        return self._driver.run(jobs_flow(self._core.store))

    def export_failed(self, job_id: str, file: Any, format: str = "csv") -> int:
        """Writes every failed/invalid record to ``file`` (a path or a text file
        object) as ``csv`` or ``jsonl``, ready to fix and import again; returns
        how many were written (see ``_export``)."""
        from ._export import FailedExport, columns_flow, job_not_found
        from ._keys import check_job_id

        exists, columns = self._driver.run(columns_flow(self._core.store, check_job_id(job_id)))
        if not exists:
            raise job_not_found(job_id)
        with FailedExport(file, format, columns) as out:
            for record in self.failed_records(job_id):
                out.write(record)
        return out.count

    def retry_failed(self, job_id: str, *, include_invalid: bool = False) -> int:
        """Redrives a finished job: its records that failed in processing (and,
        with ``include_invalid``, its invalid ones) run again as a new attempt
        of the same job, successes kept; returns how many records run again (0,
        and nothing changes, when none). See ``_redrive``."""
        from ._redrive import redrive_flow

        return self._driver.run(redrive_flow(self._core.store, job_id, include_invalid))

    def watch(self, job_id: str, interval: float = 1.0) -> Iterator[JobStatus]:
        """The job's snapshots: the current one, then one per change, ending with
        exactly one final snapshot; fed by the job's event stream (each refresh
        waits up to ``interval`` seconds for a worker's commit). An unknown job
        raises ``JobNotFoundError``."""
        from ._watch import Watch, socket_timeout

        watching = Watch(self._core.store, job_id, interval, socket_timeout(self.redis))
        while not watching.done:
            status = self._driver.run(watching.step())
            if status is not None:
                yield status

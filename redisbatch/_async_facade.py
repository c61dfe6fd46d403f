"""``AsyncDistributedImport``: the async facade over a ``redis.asyncio`` client.

The same flows as ``DistributedImport``, run by the ``AsyncDriver``;
``concurrency`` records of one batch may be in the processor at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Unpack

import redis.asyncio

from ._async import AsyncDriver, sigterm_cancels
from ._config import check_positive_int
from ._facade import _ASYNC_CLIENTS, AnyProcessor, ImportOptions, _Facade
from ._parsers import Parser
from ._results import (
    BatchResult,
    JobStatus,
    PrepareResult,
    PreviewResult,
    ProcessedRecord,
    WorkerSummary,
)
from ._schema import Schema

__all__ = ["AsyncDistributedImport"]


class AsyncDistributedImport(_Facade):
    """``DistributedImport`` for asyncio programs; processors and hooks may be ``async def``."""

    _clients = _ASYNC_CLIENTS
    _client_kind = "asyncio"

    def __init__(
        self,
        redis: redis.asyncio.Redis | Any,
        schema: Schema | None = None,
        *,
        concurrency: int = 1,
        **options: Unpack[ImportOptions],
    ) -> None:
        self.concurrency = check_positive_int("concurrency", concurrency)
        super().__init__(redis, schema, **options)

    _driver: AsyncDriver

    def _connect(self, client: Any) -> None:
        from ._eviction import CheckingAsyncDriver  # checks the eviction policy at first use

        self._driver = CheckingAsyncDriver(client, self.concurrency)

    # ------------------------------------------------------------ orchestrator

    async def prepare(
        self,
        source: Any,
        parser: Parser | None = None,
        *,
        job_id: str | None = None,
        resume: bool = False,
    ) -> PrepareResult:
        """Streams the source into batches in Redis, then seals the job. The
        source is read in this thread: a slow source holds the event loop."""
        return await self._driver.run(self._core.prepare_flow(source, parser, job_id, resume))

    async def preview(
        self, source: Any, parser: Parser | None = None, max_records: int = 10
    ) -> PreviewResult:
        """Validates the first records of a source (read in a worker thread)."""
        return await asyncio.to_thread(self._core.preview, source, parser, max_records)

    async def count(self, source: Any, parser: Parser | None = None) -> int:
        """How many records the source yields (read in a worker thread)."""
        return await asyncio.to_thread(self._core.count, source, parser)

    # ------------------------------------------------------------ workers

    async def process_worker_batch(
        self,
        job_id: str,
        processor: AnyProcessor,
        worker_id: str,
        *,
        time_budget: float | None = None,
    ) -> BatchResult:
        """Claims one batch, processes it, commits it, and maybe finalizes the job."""
        return await self._driver.run(
            self._core.batch_flow(job_id, processor, worker_id, time_budget)
        )

    async def run_worker(
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

        As ``DistributedImport.run_worker``. Cancelled mid-batch, the worker
        commits the records it finished, hands the rest back at once and
        lets the cancellation go on. With ``handle_signals=True`` (in the
        main thread's event loop) SIGTERM cancels this call the same way,
        which then raises ``SystemExit(143)``."""
        flow = self._core.worker_flow(job_id, processor, worker_id, wait, time_budget, wait_for_job)
        if not handle_signals:
            return await self._driver.run(flow)
        task = asyncio.current_task()
        assert task is not None
        with sigterm_cancels(task) as gate:
            try:
                summary = await self._driver.run(flow, gate)
            except asyncio.CancelledError:
                if gate.fired and task.uncancel() == 0:
                    raise SystemExit(128 + gate.fired[0]) from None
                raise
            if gate.fired:  # a SIGTERM during the last Redis call
                raise SystemExit(128 + gate.fired[0])
            return summary

    async def release_batch(self, job_id: str, batch_id: str | int, worker_id: str) -> bool:
        """Returns a claimed batch to the queue if ``worker_id`` still holds it."""
        return await self._driver.run(self._core.release_flow(job_id, batch_id, worker_id))

    async def reclaim_stale_batches(self, job_id: str, timeout: float | None = None) -> int:
        """Makes batches idle longer than ``timeout`` claimable again."""
        return await self._driver.run(self._core.reclaim_flow(job_id, timeout))

    # ------------------------------------------------------------ reading

    async def status(self, job_id: str) -> JobStatus | None:
        """A consistent snapshot of the job, or None for an unknown job."""
        return await self._driver.run(self._core.status_flow(job_id))

    async def failed_records(self, job_id: str) -> AsyncIterator[ProcessedRecord]:
        """Every invalid or failed record with its errors, in source order."""
        total = await self._driver.run(self._core.total_batches_flow(job_id))
        for flow in self._core.failed_chunks(job_id, total):
            for record in await self._driver.run(flow):
                yield record

    # ------------------------------------------------------------ control

    async def pause(self, job_id: str) -> bool:
        return await self._driver.run(self._core.pause_flow(job_id))

    async def resume(self, job_id: str) -> bool:
        return await self._driver.run(self._core.resume_flow(job_id))

    async def abort(self, job_id: str) -> bool:
        return await self._driver.run(self._core.abort_flow(job_id))

    async def delete(self, job_id: str) -> bool:
        return await self._driver.run(self._core.delete_flow(job_id))

    # ------------------------------------------------------------ operating jobs

    async def jobs(self) -> list[JobStatus]:
        """The namespace's jobs, newest first."""
        from ._jobs import jobs_flow

        return await self._driver.run(jobs_flow(self._core.store))

    async def export_failed(self, job_id: str, file: Any, format: str = "csv") -> int:
        """Writes every failed/invalid record to ``file`` (a path or a text file
        object) as ``csv`` or ``jsonl``; returns how many were written. The
        file is written in this thread, a record at a time."""
        from ._export import FailedExport, columns_flow, job_not_found
        from ._keys import check_job_id

        exists, columns = await self._driver.run(
            columns_flow(self._core.store, check_job_id(job_id))
        )
        if not exists:
            raise job_not_found(job_id)
        with FailedExport(file, format, columns) as out:
            async for record in self.failed_records(job_id):
                out.write(record)
        return out.count

    async def retry_failed(self, job_id: str, *, include_invalid: bool = False) -> int:
        """Redrives a finished job (see ``DistributedImport.retry_failed``)."""
        from ._redrive import redrive_flow

        return await self._driver.run(redrive_flow(self._core.store, job_id, include_invalid))

    async def watch(self, job_id: str, interval: float = 1.0) -> AsyncIterator[JobStatus]:
        """The job's snapshots as it changes (see ``DistributedImport.watch``)."""
        from ._watch import Watch, socket_timeout

        watching = Watch(self._core.store, job_id, interval, socket_timeout(self.redis))
        while not watching.done:
            status = await self._driver.run(watching.step())
            if status is not None:
                yield status

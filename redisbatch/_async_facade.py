"""``AsyncDistributedImport``: the async facade over a ``redis.asyncio`` client.

The same flows as ``DistributedImport``, run by the ``AsyncDriver``;
``concurrency`` records may be in the processor at once. ``run_worker``
starts its next batch while its current batch's last records run, so that
no lane waits for a commit and a claim.
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
    """``DistributedImport`` for asyncio programs; processors and hooks may be ``async def``.

    The same jobs, the same Redis keys and the same semantics as
    ``DistributedImport`` (the two interoperate: a job prepared by one can be
    worked by the other); every method is a coroutine except ``on``,
    ``on_any``, ``off_any`` and ``new_worker_id``, and ``failed_records`` is
    an async iterator.

    Args:
      redis: a ``redis.asyncio`` client (``redis.asyncio.Redis``,
        ``redis.asyncio.RedisCluster``, ``fakeredis.FakeAsyncRedis``) created
        with ``decode_responses=False`` (the default).
      schema: the ``Schema`` records are validated against; None (default)
        passes them through unvalidated.
      concurrency: how many records may be in the processor at once
        (default 1: one after the other). Records of a batch still settle,
        and their events fire, in source order. Above 1, ``run_worker``
        claims the next batch once the current one has fewer records left
        to start than lanes: the new batch's records take the lanes the
        last ones leave (never more than ``concurrency`` in flight, at most
        two batches held, each committed on its own). With a
        ``batch_processor`` (one call per batch) batches do not overlap, and
        none is started ahead once ``time_budget`` is spent.
      **options: every keyword option of ``DistributedImport``, with the
        same defaults: ``batch_size`` (100), ``continue_on_error`` (True),
        ``max_retries`` (0), ``retry_delay`` (1.0; retry k waits
        ``retry_delay * 2**(k-1)``), ``stale_batch_timeout`` (60; heartbeat
        every third of it), ``max_batch_attempts`` (5), ``hooks``,
        ``duplicate_checker``, ``namespace`` ("redisbatch"), ``retention``
        (7 days), ``max_pending_batches`` (None), ``max_batch_bytes``
        (4 MiB), ``tolerated_failure_count`` and
        ``tolerated_failure_percentage`` (None). ``help(DistributedImport)``
        explains each.

    Processors, hooks and the duplicate checker may be ``async def`` or plain
    functions; a plain processor that blocks holds the event loop (the
    heartbeat still runs between records). Cancelling a ``run_worker`` task
    mid-batch commits what it finished and hands the rest back at once.
    """

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
        """Streams ``source`` (read with ``parser``) once into batches in Redis,
        then seals the job; returns a ``PrepareResult``. ``job_id`` names the
        job (default a new uuid4 hex); ``resume=True`` continues a prepare
        whose process died. As ``DistributedImport.prepare``, including its
        exceptions (``JobExistsError``, ``SourceError``,
        ``ConfigurationError``). The source is read in this thread: a slow
        source holds the event loop."""
        return await self._driver.run(self._core.prepare_flow(source, parser, job_id, resume))

    async def preview(
        self, source: Any, parser: Parser | None = None, max_records: int = 10
    ) -> PreviewResult:
        """Validates the first ``max_records`` records of ``source`` (read with
        ``parser`` in a worker thread) without touching Redis; returns a
        ``PreviewResult``. No hook, duplicate checker or processor runs."""
        return await asyncio.to_thread(self._core.preview, source, parser, max_records)

    async def count(self, source: Any, parser: Parser | None = None) -> int:
        """How many records ``source`` (read with ``parser`` in a worker thread)
        yields, after the schema's ``skip_empty_rows``."""
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
        """Claims one batch of ``job_id`` under ``worker_id``, runs its records
        through validation and ``processor`` (up to ``concurrency`` at once),
        commits it atomically, and finalizes the job if it was the last;
        ``time_budget`` seconds bound the call (the unfinished rest is handed
        back). Returns a ``BatchResult``; see
        ``DistributedImport.process_worker_batch``."""
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
        """Processes batches of ``job_id`` until the job reaches a final state
        (or, with ``wait=False``, until nothing is claimable; or the
        ``time_budget`` is spent); returns a ``WorkerSummary``.

        ``worker_id`` defaults to ``new_worker_id()``; ``wait_for_job`` is how
        long to wait for a job that does not exist yet before raising
        ``JobNotFoundError``. While the job is PREPARING or PAUSED, or others
        hold its last batches, it keeps polling and reclaims stale batches;
        connection errors are retried with backoff for up to
        ``stale_batch_timeout``. With ``concurrency`` 1, each commit also
        claims the worker's next batch (one round trip between two batches)
        while the budget, if any, is not spent; with more, batches overlap
        instead (see ``concurrency``). Cancelled mid-batch,
        the worker commits the records it finished, hands the rest back at once
        and lets the cancellation go on. With ``handle_signals=True`` (in the
        main thread's event loop) SIGTERM cancels this call the same way,
        which then raises ``SystemExit(143)``."""
        flow = self._core.worker_flow(
            job_id, processor, worker_id, wait, time_budget, wait_for_job, self.concurrency > 1
        )
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
        """Returns batch ``batch_id`` (its id or index) of ``job_id`` to the queue,
        only if ``worker_id`` still holds it (its later commit is then
        refused). Returns True if it was released, else False."""
        return await self._driver.run(self._core.release_flow(job_id, batch_id, worker_id))

    async def reclaim_stale_batches(self, job_id: str, timeout: float | None = None) -> int:
        """Makes the batches of ``job_id`` whose holder has not committed or
        heartbeated for ``timeout`` seconds (default ``stale_batch_timeout``)
        claimable again; returns how many."""
        return await self._driver.run(self._core.reclaim_flow(job_id, timeout))

    # ------------------------------------------------------------ reading

    async def status(self, job_id: str) -> JobStatus | None:
        """A consistent snapshot of ``job_id`` as a ``JobStatus``, or None for an
        unknown (or expired) job."""
        return await self._driver.run(self._core.status_flow(job_id))

    async def failed_records(self, job_id: str) -> AsyncIterator[ProcessedRecord]:
        """Async iterator of every invalid or failed record of ``job_id`` as a
        ``ProcessedRecord`` with its errors, in source order (``async for``)."""
        total = await self._driver.run(self._core.total_batches_flow(job_id))
        for flow in self._core.failed_chunks(job_id, total):
            for record in await self._driver.run(flow):
                yield record

    # ------------------------------------------------------------ control

    async def pause(self, job_id: str) -> bool:
        """Pauses ``job_id``: no batch is claimed until ``resume``. Workers keep
        polling; batches already claimed finish and their commits count; a
        running ``prepare`` goes on storing. Returns True if the job was
        paused, False for an unknown job or one not PREPARING or PROCESSING."""
        return await self._driver.run(self._core.pause_flow(job_id))

    async def resume(self, job_id: str) -> bool:
        """Resumes a paused ``job_id``: claims go on; if every batch finished
        while it was paused, this call finalizes the job and emits
        ``job:completed``. Returns True if the job was resumed, False for an
        unknown job or one not PAUSED."""
        return await self._driver.run(self._core.resume_flow(job_id))

    async def abort(self, job_id: str) -> bool:
        """Ends ``job_id`` as ABORTED, a final state: no batch is claimed again,
        waiting workers return, a running ``prepare`` stops at its next batch;
        batches already claimed may still commit (what they finished counts,
        the rest is skipped). No ``job:completed`` is emitted. Returns True if
        the job was aborted, False for an unknown or already final job."""
        return await self._driver.run(self._core.abort_flow(job_id))

    async def delete(self, job_id: str) -> bool:
        """Removes every Redis key of ``job_id``, whatever its state; workers
        still on it return with ``state=None`` and their commits are refused.
        Returns True if anything was removed, False for an unknown job."""
        return await self._driver.run(self._core.delete_flow(job_id))

    # ------------------------------------------------------------ operating jobs

    async def jobs(self) -> list[JobStatus]:
        """The namespace's jobs, newest first."""
        from ._jobs import jobs_flow

        return await self._driver.run(jobs_flow(self._core.store))

    async def export_failed(self, job_id: str, file: Any, format: str = "csv") -> int:
        """Writes every failed/invalid record to ``file`` (a path or a text file
        object) as ``csv`` or ``jsonl``; returns how many were written. The
        rows, their ``_row``/``_line``/``_error_codes``/``_errors`` columns and
        the escaping of formula cells are those of
        ``DistributedImport.export_failed``; an unknown job raises
        ``JobNotFoundError``. The file is written in this thread, a record at
        a time."""
        from ._export import FailedExport, export_columns_flow

        columns = await self._driver.run(export_columns_flow(self._core.store, job_id))
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

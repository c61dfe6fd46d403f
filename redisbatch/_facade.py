"""The facades: ``DistributedImport`` here, and the base both it and
``AsyncDistributedImport`` share.

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
from ._hooks import BatchProcessor, DuplicateChecker, Hooks, Processor
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
from ._sync import SyncDriver, sigterm_as_exit

__all__ = ["DistributedImport", "ImportOptions"]

AnyProcessor = Processor | BatchProcessor


class ImportOptions(TypedDict, total=False):
    """The keyword options both facades take (see ``help(DistributedImport)``)."""

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
        """Calls ``handler(event)`` for each event of ``event_type`` this instance emits.

        ``event_type`` is one of ``"distributed:prepared"``, ``"batch:claimed"``,
        ``"batch:started"``, ``"batch:completed"``, ``"batch:failed"``,
        ``"record:processed"``, ``"record:failed"``, ``"record:retried"``,
        ``"job:completed"`` (the ``type`` of the event classes, e.g.
        ``BatchClaimed.type``); another raises ``ValueError``. Events are local:
        a handler sees what this instance's own calls did, not other workers'.
        A handler that raises is logged and ignored. Returns ``self``, so calls
        chain."""
        self._core.emitter.on(event_type, handler)
        return self

    def on_any(self, handler: Handler) -> Any:
        """Calls ``handler(event)`` for every event this instance emits (see ``on``).
        Returns ``self``."""
        self._core.emitter.on_any(handler)
        return self

    def off_any(self, handler: Handler) -> Any:
        """Stops calling ``handler`` registered with ``on_any`` (nothing happens if it
        was not). Returns ``self``."""
        self._core.emitter.off_any(handler)
        return self

    @staticmethod
    def new_worker_id() -> str:
        """A new worker id as ``run_worker`` makes one when none is given:
        ``hostname:pid:random``."""
        return default_worker_id()


class DistributedImport(_Facade):
    """Prepare a source into batches in Redis; process them from any number of workers.

    One process calls ``prepare(source, parser)``: it streams the source once
    into batches stored in Redis and returns a ``PrepareResult`` whose
    ``job_id`` the workers need. Any number of workers (processes, machines,
    queue tasks, serverless functions) call ``run_worker(job_id, processor)``:
    each claims batches atomically, validates their records against the
    schema, passes each valid record to ``processor(record, ctx)``, commits
    the batch's counts, and returns when the job is final; exactly one of them
    finalizes it. ``status(job_id)`` tells where a job stands,
    ``failed_records(job_id)`` what failed and why.

    Counts, failed records and finalization are exactly-once, but a processor
    may see a record twice (a worker can die after processing and before
    committing): make its writes idempotent, keyed on
    ``ctx.idempotency_key``.

    Args:
      redis: a redis-py *sync* client (``redis.Redis``, ``redis.RedisCluster``,
        ``fakeredis.FakeRedis``) created with ``decode_responses=False`` (the
        default). Use ``AsyncDistributedImport`` with a ``redis.asyncio``
        client.
      schema: the ``Schema`` each record is validated and coerced against;
        None (default) passes records through unvalidated.
      batch_size: records per batch (default 100). A batch is the unit a
        worker claims and commits, and that another redoes after a crash.
      continue_on_error: True (default): a failed record is stored with its
        errors and the batch goes on. False: the first failed record stops
        its batch, which is committed FAILED with what was done so far (the
        records after it are skipped: neither processed nor failed); other
        batches go on, and the job ends FAILED.
      max_retries: how many times a processor call that raised is retried
        (default 0: not at all) before the record fails with
        ``processing_error`` set; each retry emits ``record:retried``.
        Invalid records are never retried.
      retry_delay: backoff in seconds (default 1.0): retry k waits
        ``retry_delay * 2**(k-1)``, i.e. 1, 2, 4, ... seconds.
      stale_batch_timeout: seconds (default 60) after which a batch whose
        worker has neither committed nor heartbeated may be reclaimed by
        another worker. Live workers heartbeat by themselves every third of it
        (20 s by default): each processor call or retry wait must return
        within that third, or the worker may lose its batch (its commit is
        then refused and another worker redoes the batch). A worker
        stopped by Ctrl-C or SIGTERM hands its batch back at once; only one
        killed outright leaves its batch waiting for this timeout.
      max_batch_attempts: deliveries of one batch (first claim, reclaims,
        claims after a release) before it is dead-lettered (default 5): the
        batch becomes FAILED, its records fail with ``processing_error``
        "batch dead-lettered after N attempts", and the job ends FAILED. A
        hand-back by a time budget or a stopped worker is not an attempt.
      hooks: a ``Hooks`` of optional callables run around each record:
        ``before_validate``, ``after_validate``, ``before_process``,
        ``after_process`` (see ``help(Hooks)``). A hook that raises fails the
        record with "<hook_name> hook failed: <message>".
      duplicate_checker: a callable ``(record, ctx) -> bool | DuplicateResult``
        asked, for each record still valid after validation and
        ``unique_fields``, whether it already exists elsewhere (say, in your
        database). True makes the record invalid with code
        ``EXTERNAL_DUPLICATE``; so does an exception in it, with the message
        "Duplicate check failed: ...".
      namespace: prefix of every Redis key (default "redisbatch"); jobs in
        two namespaces never see each other. No braces.
      retention: seconds every key of a job (state, counts, failed records)
        is kept once the job is final (default 7 days); None keeps them
        forever. A batch's raw records are deleted as soon as it is
        committed, whatever this is.
      max_pending_batches: backpressure (default None: no limit): once this
        many stored batches are unclaimed, ``prepare`` waits until workers
        have claimed half of them (at least one), then refills the window up
        to this many; workers keep the other half to work on meanwhile, and a
        source larger than Redis' memory can feed slower workers.
      max_batch_bytes: a batch is cut when its encoded records reach this
        many bytes (default 4 MiB, at least 1024), even below
        ``batch_size``; a single record larger than this is stored as a
        ``PARSE_ERROR`` record.
      tolerated_failure_count, tolerated_failure_percentage: failure
        thresholds (default None: none). When the job's failed records
        (invalid or failed in processing) exceed the count, or exceed this
        percentage of ``total_records`` (of what is stored so far while
        preparing), the commit that crossed it turns the job FAILED at once:
        no further batch is claimed, commits already in flight still count,
        and that worker emits ``job:completed``. "Exceed" is strict.

    An invalid option raises ``TypeError`` or ``ConfigurationError`` (a
    ``ValueError``) naming it; so does a client that is not a sync redis-py
    client, or one with ``decode_responses=True``.

    A job's states: PREPARING (``prepare`` is storing; workers may already
    run), PROCESSING, PAUSED (``pause``), then one final state: COMPLETED,
    FAILED (a batch failed: ``continue_on_error=False`` or dead-lettered; a
    failure threshold was crossed; or the source could not be read) or
    ABORTED (``abort``). Records that fail validation or processing do not
    fail the job (unless a threshold is set); they are listed by
    ``failed_records``.

    Events (``on``/``on_any``) are local to this instance. The library logs
    to the ``redisbatch`` logger (stale reclaims, dead-letters, a worker
    waiting on batches held by others).
    """

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
        """Streams ``source`` once into batches in Redis, then seals the job.

        Args:
          source: a ``FileSource``, ``BytesSource``, ``UrlSource`` or
            ``IterableSource`` (of dicts).
          parser: ``CsvParser()``, ``JsonParser()`` or ``XmlParser()``; may be
            omitted only for an ``IterableSource``.
          job_id: the id to give the job (a non-empty string without braces);
            default a new uuid4 hex.
          resume: continue a prepare whose process died (the job still
            PREPARING): the same source is read again, batches already stored
            are skipped, and the job ends as an uninterrupted prepare would.

        Each batch is published as soon as it is stored: workers may start
        before this returns (``run_worker(..., wait_for_job=...)`` waits for
        the job to appear). Returns a ``PrepareResult`` (``job_id``,
        ``total_records``, ``total_batches``); emits
        ``distributed:prepared``. An empty source gives a job COMPLETED at
        once. ``abort`` from elsewhere stops it at its next batch, returning
        what was stored.

        Raises ``JobExistsError`` when ``job_id`` is in use (with
        ``resume=True``: when the job is not one left PREPARING, saying why);
        ``SourceError`` when the source cannot be opened (no job is created)
        or fails mid-stream (the job is left FAILED with ``error`` set);
        ``ConfigurationError`` for a byte source without a parser."""
        return self._driver.run(self._core.prepare_flow(source, parser, job_id, resume))

    def preview(
        self, source: Any, parser: Parser | None = None, max_records: int = 10
    ) -> PreviewResult:
        """Validates the first ``max_records`` records of ``source`` (read with
        ``parser``, as in ``prepare``) without touching Redis. Returns a
        ``PreviewResult``: valid and invalid records with their errors, how
        many were sampled, and the source's columns. ``unique_fields`` are
        checked within the sample; no hook, ``duplicate_checker`` or processor
        runs."""
        return self._core.preview(source, parser, max_records)

    def count(self, source: Any, parser: Parser | None = None) -> int:
        """How many records ``source`` (read with ``parser``) yields, after the
        schema's ``skip_empty_rows``; reads the whole source, stores nothing."""
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
        """Claims one batch of ``job_id`` (reclaiming a stale one first if any),
        runs its records through validation and ``processor``, commits the
        batch's results atomically, and finalizes the job if it was the last.

        Args:
          processor: ``processor(record, ctx)`` called per valid record with a
            ``ProcessingContext`` (its return value is ignored; raising fails
            the record after ``max_retries``), or a ``batch_processor``.
          worker_id: this worker's name (any non-empty string without braces;
            ``new_worker_id()`` makes one). The batch is held under it.
          time_budget: seconds this call may take (a serverless function passes
            its remaining time minus a margin); when it would be exceeded the
            worker stops taking records, commits what it finished and hands
            the rest of the batch back (not counted as an attempt).

        Returns a ``BatchResult``: ``claimed=False`` with a ``reason`` when
        nothing was claimable; ``accepted=False`` when the batch was taken
        from this worker before it committed (nothing counted twice);
        ``job_complete=True`` for the one call that finalized the job.
        Connection errors propagate (use ``run_worker`` to ride them out)."""
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
        """Processes batches of ``job_id`` until the job reaches a final state
        (COMPLETED, FAILED or ABORTED); the usual worker loop.

        While the job is PREPARING or PAUSED, or other workers hold its last
        batches, it keeps polling, and so reclaims a dead worker's batches
        once they are stale. Args: ``processor`` and ``time_budget`` as in
        ``process_worker_batch`` (the budget also ends the polling);
        ``worker_id`` default ``new_worker_id()``; ``wait=False`` returns as
        soon as nothing is claimable; ``wait_for_job`` seconds to wait for a
        job that does not exist yet (default 0). Returns a ``WorkerSummary``
        whose ``state`` tells a COMPLETED job from a FAILED or ABORTED one
        (None if the job was deleted meanwhile). Each commit also claims the
        worker's next batch (one round trip between two batches) while the
        budget, if any, is not spent.

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
        """Returns batch ``batch_id`` (its id or index) of ``job_id`` to the queue,
        only if ``worker_id`` still holds it; its holder's later commit or
        heartbeat is then refused. The next claim counts as a new attempt.
        Returns True if the batch was released, False otherwise."""
        return self._driver.run(self._core.release_flow(job_id, batch_id, worker_id))

    def reclaim_stale_batches(self, job_id: str, timeout: float | None = None) -> int:
        """Makes the batches of ``job_id`` whose holder has not committed or
        heartbeated for ``timeout`` seconds (default ``stale_batch_timeout``)
        claimable again, revoking their holders. Workers do this by
        themselves; this is for operators. Returns how many were reclaimed."""
        return self._driver.run(self._core.reclaim_flow(job_id, timeout))

    # ------------------------------------------------------------ reading

    def status(self, job_id: str) -> JobStatus | None:
        """A consistent snapshot of ``job_id`` as a ``JobStatus`` (state, batch and
        record counts, timestamps), or None for an unknown (or expired) job."""
        return self._driver.run(self._core.status_flow(job_id))

    def failed_records(self, job_id: str) -> Iterator[ProcessedRecord]:
        """Yields every invalid or failed record of ``job_id`` as a
        ``ProcessedRecord`` (with its ``errors`` and ``processing_error``), in
        source order, reading Redis a few batches at a time. Nothing for an
        unknown job."""
        total = self._driver.run(self._core.total_batches_flow(job_id))
        for flow in self._core.failed_chunks(job_id, total):
            yield from self._driver.run(flow)

    # ------------------------------------------------------------ control

    def pause(self, job_id: str) -> bool:
        """Pauses ``job_id``: no batch is claimed until ``resume``. Workers keep
        running and polling (``run_worker`` does not return); batches already
        claimed finish and their commits count; a running ``prepare`` goes on
        storing. Returns True if the job was paused, False for an unknown job
        or one not PREPARING or PROCESSING."""
        return self._driver.run(self._core.pause_flow(job_id))

    def resume(self, job_id: str) -> bool:
        """Resumes a paused ``job_id``: claims go on (back to PREPARING if its
        ``prepare`` has not finished, else PROCESSING); if every batch finished
        while it was paused, this call finalizes the job and emits
        ``job:completed``. Returns True if the job was resumed, False for an
        unknown job or one not PAUSED."""
        return self._driver.run(self._core.resume_flow(job_id))

    def abort(self, job_id: str) -> bool:
        """Ends ``job_id`` as ABORTED, a final state: no batch is claimed again,
        waiting workers' ``run_worker`` return (``state="ABORTED"``), and a
        running ``prepare`` stops at its next batch. Batches already claimed
        may still commit: what they finished counts, the rest is skipped. No
        ``job:completed`` is emitted; the retention clock starts. Returns True
        if the job was aborted, False for an unknown or already final job."""
        return self._driver.run(self._core.abort_flow(job_id))

    def delete(self, job_id: str) -> bool:
        """Removes every Redis key of ``job_id`` (state, batches, counts, failed
        records), whatever its state; workers still running on it return with
        ``state=None`` and their commits are refused. Returns True if anything
        was removed, False for an unknown job."""
        return self._driver.run(self._core.delete_flow(job_id))

    # ------------------------------------------------------------ operating jobs

    def jobs(self) -> list[JobStatus]:
        """The namespace's jobs, newest first."""
        from ._jobs import jobs_flow

        return self._driver.run(jobs_flow(self._core.store))

    def export_failed(self, job_id: str, file: Any, format: str = "csv") -> int:
        """Writes every failed/invalid record to ``file`` (a path or a text file
        object) as ``csv`` or ``jsonl``, ready to fix and import again; returns
        how many were written.

        Each row holds the record's original columns, then ``_row`` (its 0-based
        index in the source), ``_line`` (its line, for CSV and NDJSON sources),
        ``_error_codes`` and ``_errors`` (``; ``-separated). In CSV, a cell a
        spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``,
        ``@``, tab or CR; plain numbers excepted) gets a ``'`` in front; JSONL
        keeps every value as it was. A non-strict schema ignores the extra
        columns when the fixed file is imported again. Raises
        ``JobNotFoundError`` for an unknown job."""
        from ._export import FailedExport, export_columns_flow

        columns = self._driver.run(export_columns_flow(self._core.store, job_id))
        with FailedExport(file, format, columns) as out:
            for record in self.failed_records(job_id):
                out.write(record)
        return out.count

    def retry_failed(self, job_id: str, *, include_invalid: bool = False) -> int:
        """Redrives a finished job: its records that failed in processing (and,
        with ``include_invalid``, its invalid ones) run again as a new attempt
        of the same job, successes kept; returns how many records run again (0,
        and nothing changes, when none). Only a COMPLETED or FAILED job can be
        redriven; any other raises ``ConfigurationError``, an unknown job
        ``JobNotFoundError``. Each record keeps its index, line and
        ``idempotency_key``."""
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

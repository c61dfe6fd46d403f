"""What both facades share: settings, store, pipeline, events, and the flows
behind every public method. A facade is this plus a driver."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

from ._batcher import Batcher
from ._config import Settings
from ._effects import Flow, Join, Sleep, Spawn
from ._events import EventEmitter
from ._exceptions import ConfigurationError, JobNotFoundError
from ._hooks import BatchProcessor, DuplicateChecker, Hooks, Processor
from ._keys import check_job_id
from ._parsers import Parser
from ._pipeline import RecordPipeline
from ._prepare import prepare
from ._results import (
    BatchResult,
    JobStatus,
    PrepareResult,
    PreviewResult,
    ProcessedRecord,
    WorkerSummary,
)
from ._sample import count_records, preview_records
from ._schema import Schema
from ._scripts import Reply
from ._sources import ByteSource, IterableSource, decompressed
from ._store import FINAL_STATES, Claim, Store
from ._unique import UniqueKeys
from ._worker import (
    TRANSIENT_ERRORS,
    Chain,
    emit_job_completed,
    give_back_unknown,
    process_batch,
    riding_out,
)

__all__ = ["Core", "default_worker_id", "parse_batch_id"]

log = logging.getLogger("redisbatch")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def parse_batch_id(batch_id: str | int) -> int:
    """``"batch-7"`` (as results name batches) or ``7`` -> 7."""
    if isinstance(batch_id, int) and not isinstance(batch_id, bool):
        return batch_id
    if isinstance(batch_id, str):
        text = batch_id.removeprefix("batch-")
        if text.isdigit():
            return int(text)
    raise ConfigurationError(f"batch_id must look like 'batch-<index>', got {batch_id!r}")


def _check_processor(processor: object) -> None:
    if not callable(processor):
        raise TypeError("processor must be callable (a function or a batch_processor)")


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds")
    if not value >= 0:
        raise ConfigurationError(f"{name} must not be negative, got {value!r}")
    return float(value)


def _deadline(time_budget: float | None) -> float | None:
    """The ``time.monotonic()`` by which a worker with this budget stops."""
    if time_budget is None:
        return None
    if isinstance(time_budget, bool) or not isinstance(time_budget, int | float):
        raise TypeError("time_budget must be a number of seconds or None")
    if time_budget < 0:
        raise ConfigurationError("time_budget must not be negative")
    return time.monotonic() + time_budget


class _Tally:
    """What a worker's batches added up to, for its ``WorkerSummary``."""

    __slots__ = ("batches", "failed", "finalized", "processed", "worker_id")

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.batches = self.processed = self.failed = 0
        self.finalized = False

    def add(self, result: BatchResult) -> None:
        """Counts a batch whose commit was accepted, and notes a finalization."""
        self.finalized = self.finalized or result.job_complete
        if result.accepted:
            self.batches += 1
            self.processed += result.processed_count
            self.failed += result.failed_count

    def summary(self, state: str | None) -> WorkerSummary:
        return WorkerSummary(
            worker_id=self.worker_id,
            batches=self.batches,
            processed=self.processed,
            failed=self.failed,
            finalized=self.finalized,
            state=state,
        )


class Core:
    """The I/O-free half of a facade."""

    def __init__(
        self,
        schema: Schema | None,
        hooks: Hooks | None,
        settings: Settings,
        duplicate_checker: DuplicateChecker | None = None,
    ) -> None:
        if schema is not None and not isinstance(schema, Schema):
            raise TypeError(f"schema must be a Schema or None, got {type(schema).__name__}")
        if hooks is not None and not isinstance(hooks, Hooks):
            raise TypeError(f"hooks must be a Hooks or None, got {type(hooks).__name__}")
        if duplicate_checker is not None and not callable(duplicate_checker):
            raise TypeError("duplicate_checker must be callable")
        self.settings = settings
        self.schema = schema
        self.emitter = EventEmitter()
        self.store = Store(
            settings.namespace,
            stale_timeout=settings.stale_batch_timeout,
            max_batch_attempts=settings.max_batch_attempts,
            retention=settings.retention,
            tolerated_failure_count=settings.tolerated_failure_count,
            tolerated_failure_percentage=settings.tolerated_failure_percentage,
        )
        self.pipeline = RecordPipeline(
            schema,
            hooks=hooks,
            duplicate_checker=duplicate_checker,
            continue_on_error=settings.continue_on_error,
            max_retries=settings.max_retries,
            retry_delay=settings.retry_delay,
            emitter=self.emitter,
        )

    # ------------------------------------------------------------ prepare

    def open_source(self, source: Any, parser: Parser | None) -> tuple[Iterator[Any], str]:
        """Opens the source (raising SourceError before any job exists)."""
        if isinstance(source, IterableSource):
            if parser is not None:
                raise ConfigurationError("an IterableSource yields records: pass no parser")
            return source.open(), source.describe()
        if isinstance(source, ByteSource):
            if parser is None:
                raise ConfigurationError(
                    f"{source!r} holds bytes: pass a parser (CsvParser(), ...)"
                )
            if not isinstance(parser, Parser):
                raise TypeError(f"parser must be a Parser, got {type(parser).__name__}")
            origin = source.describe()
            return parser.records(decompressed(source.open(), origin), origin), origin
        raise TypeError(f"source must be a Source, got {type(source).__name__}")

    def prepare_flow(
        self, source: Any, parser: Parser | None, job_id: str | None, resume: bool = False
    ) -> Flow[PrepareResult]:
        if resume and job_id is None:
            raise ConfigurationError("resume=True needs the job_id of the interrupted prepare")
        job_id = uuid.uuid4().hex if job_id is None else check_job_id(job_id)
        items, origin = self.open_source(source, parser)
        validator = self.pipeline.validator
        batcher = Batcher(
            self.settings.batch_size,
            skip_empty_rows=self.schema is not None and self.schema.skip_empty_rows,
            origin=origin,
            unique=UniqueKeys(validator)
            if validator is not None and validator.schema.unique_fields
            else None,
            max_batch_bytes=self.settings.max_batch_bytes,
        )
        return prepare(
            self.store,
            self.emitter,
            job_id,
            items,
            batcher,
            origin,
            max_pending=self.settings.max_pending_batches,
            poll=self.settings.poll_interval,
            resume=resume,
        )

    def preview(self, source: Any, parser: Parser | None, max_records: int) -> PreviewResult:
        if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 0:
            raise ConfigurationError("max_records must be a non-negative int")
        items, _ = self.open_source(source, parser)
        return preview_records(self.pipeline, items, max_records)

    def count(self, source: Any, parser: Parser | None) -> int:
        items, _ = self.open_source(source, parser)
        return count_records(items, self.schema is not None and self.schema.skip_empty_rows)

    # ------------------------------------------------------------ workers

    def batch_flow(
        self,
        job_id: str,
        processor: Processor | BatchProcessor,
        worker_id: str,
        time_budget: float | None = None,
    ) -> Flow[BatchResult]:
        check_job_id(job_id)
        _check_processor(processor)
        deadline = _deadline(time_budget)
        result, _ = yield from self._one_batch(job_id, processor, worker_id, deadline)
        return result

    def _one_batch(
        self,
        job_id: str,
        processor: Processor | BatchProcessor,
        worker_id: str,
        deadline: float | None,
        ride_out: float = 0.0,
        holding: set[int] | None = None,
        chain: Chain | None = None,
    ) -> Flow[tuple[BatchResult, Claim]]:
        return process_batch(
            self.store,
            self.pipeline,
            self.emitter,
            job_id,
            processor,
            worker_id,
            self.settings.heartbeat_interval,
            deadline,
            ride_out,
            holding,
            chain,
        )

    def worker_flow(
        self,
        job_id: str,
        processor: Processor | BatchProcessor,
        worker_id: str | None,
        wait: bool,
        time_budget: float | None = None,
        wait_for_job: float = 0.0,
        overlap: bool = False,
    ) -> Flow[WorkerSummary]:
        """``run_worker``: batches until the job is final (see the facades).
        Connection errors are ridden out for up to ``stale_batch_timeout``.

        With ``overlap`` (an async driver with several lanes), the next batch
        is claimed and started while the current one's last records run
        (``Spawn``/``Join``): at most two batches held, each with its own
        lease and commit, their results counted in claim order. Without it,
        each commit claims the next batch in the same call (``Chain``)."""
        check_job_id(job_id)
        _check_processor(processor)
        deadline = _deadline(time_budget)
        job_wait_ends = time.monotonic() + _seconds("wait_for_job", wait_for_job)
        worker_id = worker_id or default_worker_id()
        stale = self.settings.stale_batch_timeout
        tally = _Tally(worker_id)
        seen = False
        state: str | None = None
        first_delay, longest_delay = self.settings.poll_interval
        delay = first_delay
        next_look = 0.0  # when a waiting worker next looks at who holds the batches
        # The batches this worker holds knowingly (none is "unknowingly held"),
        # and, with overlap, the handle of the batch started ahead.
        holding: set[int] = set()
        ahead: list[Any] = []
        chain = None if overlap else Chain()
        # A claim a commit made is taken even when the budget ran out meanwhile:
        # its batch, cut at once by the budget, is handed back whole; a claim
        # that found none still reports what it did (batches it dead-lettered,
        # the job's finalization: reported by no other call).
        while (
            ahead
            or deadline is None
            or time.monotonic() < deadline
            or (chain is not None and chain.holds_claim)
        ):
            result, claim = yield from self._take(
                overlap, ahead, job_id, processor, worker_id, deadline, holding, chain
            )
            tally.add(result)
            if claim.reason == Reply.JOB_NOT_FOUND:
                if seen:
                    log.warning(
                        "job %s is gone (deleted, or lost by a Redis restart without "
                        "persistence): worker %s stops", job_id, worker_id,
                    )  # fmt: skip
                    return tally.summary(None)
                if time.monotonic() >= job_wait_ends:
                    raise JobNotFoundError(job_id, waited=wait_for_job)
                yield self._wait_for_job(job_id, delay, job_wait_ends, deadline)
                delay = min(delay * 2, longest_delay)
                continue
            seen = True
            if claim.state is not None:
                state = claim.state
            if result.claimed:
                delay = first_delay
                continue
            if claim.state in FINAL_STATES:
                break
            if claim.dead_lettered:
                continue
            if not wait:
                break
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + stale
                if (yield from self._look_at_holders(job_id, worker_id, state, holding)):
                    continue
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            yield Sleep(delay, wake_on=self._queue(job_id, state))
            delay = min(delay * 2, longest_delay)
        yield from self._join_ahead(ahead, tally)
        if state not in FINAL_STATES:
            state = yield from riding_out(
                lambda: self.store.job_state(job_id), stale, f"job {job_id}: state"
            )
        return tally.summary(state)

    def _wait_for_job(
        self, job_id: str, delay: float, ends: float, deadline: float | None
    ) -> Sleep:
        """The wait before looking again for a job not created yet: the poll
        delay, cut at the end of ``wait_for_job`` and of the time budget; it
        ends early once the job's first batch is stored."""
        if deadline is not None:
            ends = min(ends, deadline)
        return Sleep(
            min(delay, max(0.0, ends - time.monotonic())), wake_on=self._queue(job_id, None)
        )

    def _queue(self, job_id: str, state: str | None) -> str | None:
        """The job's queue stream: a wait between claims ends early once a batch
        is stored or handed back there (``Sleep.wake_on``); not while the job is
        paused (a batch stored then is not claimable: the wait goes on)."""
        return None if state == "PAUSED" else self.store.keys(job_id).queue

    def _take(
        self,
        overlap: bool,
        ahead: list[Any],
        job_id: str,
        processor: Processor | BatchProcessor,
        worker_id: str,
        deadline: float | None,
        holding: set[int],
        chain: Chain | None = None,
    ) -> Flow[tuple[BatchResult, Claim]]:
        """The next batch's result. With ``overlap``, the batch after it is
        started (into ``ahead``) once this one leaves lanes idle, unless the
        time budget is spent."""
        if not overlap:
            return (
                yield from self._next_batch(job_id, processor, worker_id, deadline, holding, chain)
            )
        current = ahead.pop() if ahead else (
            yield Spawn(self._next_batch(job_id, processor, worker_id, deadline, holding))
        )  # fmt: skip
        done, value = yield Join(current, early=True)
        if not done:
            if deadline is None or time.monotonic() < deadline:
                ahead.append(
                    (yield Spawn(self._next_batch(job_id, processor, worker_id, deadline, holding)))
                )
            done, value = yield Join(current)
        return value  # type: ignore[no-any-return]

    @staticmethod
    def _join_ahead(ahead: list[Any], tally: _Tally) -> Flow[None]:
        """Counts a batch started ahead, once it ends (the loop stopped meanwhile)."""
        while ahead:
            _, (result, _) = yield Join(ahead.pop())
            tally.add(result)

    def _next_batch(
        self,
        job_id: str,
        processor: Processor | BatchProcessor,
        worker_id: str,
        deadline: float | None,
        holding: set[int] | None = None,
        chain: Chain | None = None,
    ) -> Flow[tuple[BatchResult, Claim]]:
        """One batch of ``run_worker``, riding out connection errors."""
        tries = 0

        def attempt() -> Flow[tuple[BatchResult, Claim]]:
            nonlocal tries
            tries += 1
            return self._batch_after(
                tries > 1, job_id, processor, worker_id, deadline, holding, chain
            )

        stale = self.settings.stale_batch_timeout
        return (yield from riding_out(attempt, stale, f"job {job_id}: worker {worker_id}: claim"))

    def _batch_after(
        self,
        outage: bool,
        job_id: str,
        processor: Processor | BatchProcessor,
        worker_id: str,
        deadline: float | None,
        holding: set[int] | None = None,
        chain: Chain | None = None,
    ) -> Flow[tuple[BatchResult, Claim]]:
        """One batch; after a connection error, first gives back any batch this
        worker holds without knowing it (a claim whose reply was lost, or a
        commit's claim of the next batch), so that it waits for no stale timeout."""
        if outage:
            yield from give_back_unknown(
                self.store, job_id, worker_id, " after a lost reply", holding
            )
        stale = self.settings.stale_batch_timeout
        return (
            yield from self._one_batch(
                job_id, processor, worker_id, deadline, stale, holding, chain
            )
        )

    def _look_at_holders(
        self, job_id: str, worker_id: str, state: str | None, holding: set[int] | None = None
    ) -> Flow[bool]:
        """Once per stale timeout while a worker waits: gives back a batch this
        worker holds without knowing it (a claim whose reply was lost and that
        the client sent again: True, claim again at once), and logs who holds
        the others and how long until they are reclaimable."""
        try:
            held = yield from self.store.held_batches(job_id)
            if not holding and any(holder == worker_id for holder, _ in held):
                yield from give_back_unknown(
                    self.store, job_id, worker_id, ", claimed by a request whose reply was lost"
                )
                return True
        except TRANSIENT_ERRORS:
            return False
        if not held:
            log.info("job %s (%s): worker %s waiting for batches", job_id, state, worker_id)
            return False
        soonest = max(0.0, (self.store.stale_ms - max(idle for _, idle in held)) / 1000)
        holders = sorted({holder for holder, _ in held})
        log.info(
            "job %s: worker %s waiting on %d%s batch(es) held by other workers (%s); "
            "if a holder stopped heartbeating, its batch becomes reclaimable in %.1f s",
            job_id, worker_id, len(held), "+" if len(held) >= 100 else "",
            ", ".join(holders[:5]) + (", ..." if len(holders) > 5 else ""), soonest,
        )  # fmt: skip
        return False

    # ------------------------------------------------------------ control

    def release_flow(self, job_id: str, batch_id: str | int, worker_id: str) -> Flow[bool]:
        return self.store.release(check_job_id(job_id), parse_batch_id(batch_id), worker_id)

    def reclaim_flow(self, job_id: str, timeout: float | None) -> Flow[int]:
        limit = self.settings.stale_batch_timeout if timeout is None else timeout
        if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
            raise ConfigurationError("timeout must be a non-negative number of seconds")
        return self.store.reclaim_stale(check_job_id(job_id), limit)

    def pause_flow(self, job_id: str) -> Flow[bool]:
        return self.store.pause(check_job_id(job_id))

    def abort_flow(self, job_id: str) -> Flow[bool]:
        return self.store.end(check_job_id(job_id), "ABORTED")

    def delete_flow(self, job_id: str) -> Flow[bool]:
        return self.store.delete(check_job_id(job_id))

    def failed_chunks(
        self, job_id: str, total_batches: int
    ) -> Iterator[Flow[list[ProcessedRecord]]]:
        """Flows reading the failed records, in source order (``_redrive.failed_flows``)."""
        from ._redrive import failed_flows

        return failed_flows(self.store, job_id, total_batches)

    def total_batches_flow(self, job_id: str) -> Flow[int]:
        return self.store.total_batches(check_job_id(job_id))

    def resume_flow(self, job_id: str) -> Flow[bool]:
        resumed, finalized = yield from self.store.resume(check_job_id(job_id))
        if finalized is not None:
            emit_job_completed(self.emitter, job_id, finalized)
        return resumed

    def status_flow(self, job_id: str) -> Flow[JobStatus | None]:
        return self.store.status(check_job_id(job_id))

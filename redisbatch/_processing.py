"""Phase B of the record pipeline (see ``_pipeline``): the processor over
every record still valid, then retries with backoff for the records that
failed (step 10 of the pipeline).

A per-record processor runs as one ``CallEach`` (which an async driver may
run concurrently), a batch processor as one ``Call``; backoff waits are
``Sleep`` effects. A lost lease, an interruption or the deadline stops the
calls; what was not attempted is handed back by the caller. The retried
events are kept on the records, to be emitted in phase C (``_settle``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import msgspec

from ._effects import Call, CallEach, Flow, Interrupted, Lease, Sleep
from ._events import RecordRetried
from ._fastpath import as_record
from ._hooks import BatchProcessor, Processor
from ._inflight import Ready, ready_of
from ._results import BatchContext, ProcessingContext

__all__ = ["Processing"]

log = logging.getLogger("redisbatch")


class _Calls(Sequence[tuple[Any, ProcessingContext]]):
    """The processor's arguments for ready records, each record's dict made
    only when its call comes (so a batch's dicts are not all alive at once)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: list[tuple[ProcessingContext, Any]]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: Any) -> Any:
        ctx, item = self._entries[index]
        return (item.parsed if isinstance(item, Ready) else as_record(item), ctx)

    def __iter__(self) -> Iterator[tuple[Any, ProcessingContext]]:
        as_dict = msgspec.structs.asdict
        for ctx, item in self._entries:
            if type(item) is dict:
                yield (item, ctx)
            elif isinstance(item, Ready):
                yield (item.parsed, ctx)
            else:
                yield (as_dict(item), ctx)


class Processing:
    """The retry policy, compiled once; ``call_each`` or ``call_batch`` per batch."""

    __slots__ = ("continue_on_error", "max_retries", "retry_delay")

    def __init__(self, *, continue_on_error: bool, max_retries: int, retry_delay: float) -> None:
        self.continue_on_error = continue_on_error
        self.max_retries = max_retries
        self.retry_delay = retry_delay

    def call_each(
        self,
        processor: Processor,
        settled: list[tuple[ProcessingContext, Any]],
        ready: list[int],
        troubled: dict[int, Ready],
        lease: Lease | None,
        deadline: float | None,
    ) -> Flow[int]:
        """The processor once per ready record, then retries for the failures
        (recorded in ``troubled``). Returns how many ready records were
        attempted (a prefix of ``ready``)."""
        attempted = 0
        stop_on_error = not self.continue_on_error
        while attempted < len(ready):
            pending = ready[attempted:]
            try:
                outcomes = yield CallEach(
                    processor,
                    _Calls(list(map(settled.__getitem__, pending))),
                    lease,
                    stop_on_error=stop_on_error,
                    deadline=deadline,
                )
            except Interrupted:  # before any outcome could be reported
                break
            if not outcomes:
                break  # out of time, or the lease is gone
            raised = False
            for offset, exc in enumerate(outcomes):
                if exc is None:
                    continue
                raised = True
                position = pending[offset]
                record = ready_of(position, settled[position])
                record.attempts = 1
                troubled[position] = record
                try:
                    finished = yield from self._retry(record, exc, processor, lease)
                except Interrupted:
                    finished = False
                if not finished:  # the lease is lost or the worker stopping
                    return attempted + offset
                if record.error is not None and stop_on_error:
                    return attempted + offset + 1
            attempted += len(outcomes)
            if len(outcomes) < len(pending) and not raised:
                break  # out of time, or the lease is gone
        return attempted

    def call_batch(
        self,
        processor: BatchProcessor,
        ready: list[Ready],
        stopped: Callable[[], bool],
        lease: Lease | None,
    ) -> Flow[int]:
        """One batch processor call for every ready record, with retries;
        0 when it was stopped (the lease lost, the worker interrupted)."""
        if not ready:
            return 0
        if stopped():
            return 0
        first_ctx = ready[0].ctx
        batch_ctx = BatchContext(
            job_id=first_ctx.job_id,
            batch_id=first_ctx.batch_id,
            batch_index=first_ctx.batch_index,
            worker_id=first_ctx.worker_id,
            total_records=first_ctx.total_records,
            record_indexes=[r.ctx.record_index for r in ready],
            idempotency_key=f"{first_ctx.job_id}:batch:{first_ctx.batch_index}",
        )
        records = [r.parsed for r in ready]
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1 and lease is not None and lease.stopped:
                return 0
            try:
                failures = yield Call(processor.fn, (records, batch_ctx))
                break
            except Interrupted:
                return 0
            except Exception as exc:
                message = str(exc) or type(exc).__name__
                if attempt > self.max_retries:
                    for record in ready:
                        record.error, record.attempts = message, attempt
                    return len(ready)
                for record in ready:
                    record.note_retry(self._retried_event(record.ctx, attempt, message))
                try:
                    yield from self._backoff(attempt, lease)
                except Interrupted:
                    return 0
        by_index = {r.ctx.record_index: r for r in ready}
        if isinstance(failures, Mapping):
            for index, message in failures.items():
                target = by_index.get(index)
                if target is None:
                    log.warning("batch processor named record %r, not in its batch", index)
                    continue
                target.error = str(message)
        elif failures is not None:
            log.warning("batch processor returned %r; expected a mapping or None", failures)
        for record in ready:
            record.attempts = attempt
        return len(ready)

    def _retry(
        self, record: Ready, first_error: Exception, processor: Processor, lease: Lease | None
    ) -> Flow[bool]:
        """Retries a failed call with exponential backoff; sets ``record.error``
        when every retry failed. False (the record not done) when the lease
        stopped first: lost, or its worker stopping."""
        error_text = str(first_error) or type(first_error).__name__
        while record.attempts <= self.max_retries:
            if lease is not None and lease.stopped:
                return False
            record.note_retry(self._retried_event(record.ctx, record.attempts, error_text))
            yield from self._backoff(record.attempts, lease)
            if lease is not None and lease.stopped:
                return False
            record.attempts += 1
            try:
                yield Call(processor, (record.parsed, record.ctx))
                return True
            except Exception as exc:
                error_text = str(exc) or type(exc).__name__
        record.error = error_text
        return True

    def _backoff(self, retry: int, lease: Lease | None) -> Flow[None]:
        """Retry k waits retry_delay * 2**(k-1) (less if the lease stops meanwhile)."""
        if self.retry_delay > 0:
            yield Sleep(self.retry_delay * 2 ** (retry - 1), lease)

    def _retried_event(self, ctx: ProcessingContext, attempt: int, message: str) -> RecordRetried:
        return RecordRetried(
            job_id=ctx.job_id,
            timestamp=time.time(),
            batch_id=ctx.batch_id,
            record_index=ctx.record_index,
            attempt=attempt,
            max_retries=self.max_retries,
            error=message,
        )

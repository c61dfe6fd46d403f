"""Phase C of the record pipeline (see ``_pipeline``): in source order, each
record's retried events, ``hooks.after_process`` for the processed ones, the
record:processed / record:failed events, and the ``BatchOutcome`` to commit
(how many processed, the failed records, the batch's state).

Without ``continue_on_error`` the first failed record fails the batch; an
interruption in ``after_process`` hands that record and the rest back.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ._codec import ReceivedBatch
from ._effects import Call, Flow, Interrupted
from ._events import EventEmitter, RecordFailed, RecordProcessed
from ._inflight import Ready, Row, hook_failed, ready_of
from ._results import ProcessedRecord, ProcessingContext

__all__ = ["BatchOutcome", "Settler"]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What processing one batch produced, ready to commit.

    ``done`` records (a prefix of the batch) are settled; the rest, when
    ``done < size`` and the batch did not fail, is handed back to the queue.
    """

    processed: int
    failed: list[ProcessedRecord]
    state: str  # "COMPLETED" or "FAILED"
    error: str | None
    done: int
    size: int


class Settler:
    """The ``after_process`` hook, the emitter and ``continue_on_error``;
    ``settle`` per batch."""

    __slots__ = ("after_process", "continue_on_error", "emitter")

    def __init__(
        self,
        after_process: Callable[[ProcessedRecord, ProcessingContext], Any] | None,
        emitter: EventEmitter,
        *,
        continue_on_error: bool,
    ) -> None:
        self.after_process = after_process
        self.emitter = emitter
        self.continue_on_error = continue_on_error

    def settle(
        self,
        batch: ReceivedBatch,
        columns: list[str],
        settled: list[tuple[ProcessingContext, Any]],
        troubled: dict[int, Ready],
        size: int,
        rejected: list[int] | None = None,
    ) -> Flow[BatchOutcome]:
        """Phase C for one batch, over its settled entries (``troubled``: the
        records whose processor call failed at least once; ``rejected``, when
        given: the positions, ascending, whose entries are failed records)."""
        after = self.after_process
        want_processed = self.emitter.wants(RecordProcessed.type)
        if rejected is not None and not troubled and after is None and not want_processed:
            return self._settle_quietly(batch, settled, rejected, size)
        processed = 0
        failed: list[ProcessedRecord] = []
        for position, (ctx, item) in enumerate(settled):
            result: ProcessedRecord | None
            if isinstance(item, ProcessedRecord):
                result = item
            else:
                record = troubled.get(position)
                if record is None and isinstance(item, Ready):
                    record = item
                result = None
                if record is not None and record.retried:
                    for event in record.retried:
                        self.emitter.emit(event)
                if record is not None and record.error is not None:
                    result = ProcessedRecord(
                        index=ctx.record_index,
                        raw=Row(batch, columns, position).raw(),
                        parsed=record.parsed,
                        status="failed",
                        errors=list(record.errors),
                        processing_error=record.error,
                        retry_count=max(0, record.attempts - 1),
                    )
                elif after is not None:
                    try:
                        result = yield from self._after_process(
                            after,
                            record or ready_of(position, (ctx, item)),
                            Row(batch, columns, position),
                        )
                    except Interrupted:  # this record and the rest go back
                        return BatchOutcome(processed, failed, "COMPLETED", None, position, size)
                if result is None:
                    processed += 1
                    if want_processed:
                        self._emit_processed(ctx)
                    continue
            message = self._fail(batch, position, result, ctx, failed)
            if not self.continue_on_error:
                return BatchOutcome(processed, failed, "FAILED", message, position + 1, size)
        return BatchOutcome(processed, failed, "COMPLETED", None, len(settled), size)

    def _settle_quietly(
        self,
        batch: ReceivedBatch,
        settled: list[tuple[ProcessingContext, Any]],
        rejected: list[int],
        size: int,
    ) -> BatchOutcome:
        """Phase C when no record needs a step of its own: no ``after_process``,
        no record:processed listener, no processor call that failed. The
        records not rejected are processed; only the rejected ones are looked
        at, in order."""
        done = len(settled)
        rejected = rejected[: bisect_left(rejected, done)]  # those still settled
        failed: list[ProcessedRecord] = []
        for earlier, position in enumerate(rejected):
            ctx, result = settled[position]
            message = self._fail(batch, position, result, ctx, failed)
            if not self.continue_on_error:
                return BatchOutcome(
                    position - earlier, failed, "FAILED", message, position + 1, size
                )
        return BatchOutcome(done - len(rejected), failed, "COMPLETED", None, done, size)

    def _fail(
        self,
        batch: ReceivedBatch,
        position: int,
        result: ProcessedRecord,
        ctx: ProcessingContext,
        failed: list[ProcessedRecord],
    ) -> str:
        """Adds a failed record (with its source line) and emits record:failed;
        returns its failure message."""
        if batch.lines:  # the source line, so that the user can find the row
            result = msgspec.structs.replace(result, line=batch.line_of(position))
        failed.append(result)
        return self._emit_failed(result, ctx)

    def _after_process(
        self, hook: Callable[..., Any], item: Ready, row: Row
    ) -> Flow[ProcessedRecord | None]:
        done = ProcessedRecord(
            index=item.ctx.record_index,
            raw=row.raw(),
            parsed=item.parsed,
            status="processed",
            errors=list(item.errors),
            processing_error=None,
            retry_count=max(0, item.attempts - 1),
        )
        try:
            yield Call(hook, (done, item.ctx))
        except Exception as exc:
            return hook_failed(
                done.index, done.raw, item.parsed, "after_process", exc, done.retry_count
            )
        return None

    def _emit_processed(self, ctx: ProcessingContext) -> None:
        self.emitter.emit(
            RecordProcessed(
                job_id=ctx.job_id,
                timestamp=time.time(),
                batch_id=ctx.batch_id,
                record_index=ctx.record_index,
            )
        )

    def _emit_failed(self, result: ProcessedRecord, ctx: ProcessingContext) -> str:
        """Emits record:failed; returns the record's failure message."""
        message = _failure_message(result)
        if self.emitter.wants(RecordFailed.type):
            self.emitter.emit(
                RecordFailed(
                    job_id=ctx.job_id,
                    timestamp=time.time(),
                    batch_id=ctx.batch_id,
                    record_index=result.index,
                    error=message,
                    record=result,
                )
            )
        return message


def _failure_message(record: ProcessedRecord) -> str:
    if record.processing_error is not None:
        return record.processing_error
    return "; ".join(e.message for e in record.errors if e.severity == "error") or "invalid"

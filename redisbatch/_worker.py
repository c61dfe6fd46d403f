"""The worker's flow for one batch: claim, process, commit, maybe finalize."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec

from ._codec import StoredBatch, encode_batch, encode_failed
from ._effects import Flow, Lease, StartHeartbeat, StopHeartbeat
from ._events import (
    BatchClaimed,
    BatchCompleted,
    BatchFailed,
    BatchStarted,
    EventEmitter,
    JobCompleted,
)
from ._pipeline import BatchProcessor, Processor, RecordPipeline, batch_id_of
from ._results import BatchResult, JobSummary, ProcessingContext
from ._store import Claim, Store, dead_letter_reason

__all__ = ["emit_job_completed", "process_batch"]


def _context(
    job_id: str, batch_id: str, batch_index: int, total: int, worker_id: str, index: int
) -> ProcessingContext:
    # Positional: this runs once per record.
    return ProcessingContext(
        job_id, batch_id, batch_index, index, total, worker_id, f"{job_id}:{index}"
    )


def _redriven_context(
    contexts: Callable[[int], ProcessingContext], indexes: tuple[int, ...], position: int
) -> ProcessingContext:
    return contexts(indexes[position])


def emit_job_completed(emitter: EventEmitter, job_id: str, summary: JobSummary) -> None:
    emitter.emit(JobCompleted(job_id=job_id, timestamp=time.time(), summary=summary))


def _not_claimed(job_id: str, claim: Claim) -> BatchResult:
    return BatchResult(
        claimed=False,
        job_id=job_id,
        batch_id=None,
        batch_index=None,
        processed_count=0,
        failed_count=0,
        job_complete=claim.finalized is not None,
        accepted=False,
        reason=str(claim.reason),
    )


def _remainder(claim: Claim, done: int) -> tuple[bytes, bytes]:
    """The part of a claimed batch from position ``done`` on, as a batch of its
    own, and its duplicates renumbered."""
    assert claim.batch is not None
    batch = claim.batch
    rest = StoredBatch(
        batch.first_index + done,
        [batch.row(p) for p in range(done, len(batch))],
        {p - done: failure for p, failure in batch.failures.items() if p >= done},
    )
    duplicates = [[p - done, field, first] for p, field, first in claim.duplicates if p >= done]
    return encode_batch(rest), msgspec.json.encode(duplicates) if duplicates else b""


def process_batch(
    store: Store,
    pipeline: RecordPipeline,
    emitter: EventEmitter,
    job_id: str,
    processor: Processor | BatchProcessor,
    worker_id: str,
    heartbeat_interval: float,
    deadline: float | None = None,
) -> Flow[tuple[BatchResult, Claim]]:
    """Claims one batch and runs it; returns the result and the claim reply.
    With a ``deadline`` (``time.monotonic()``), what is not done by then is
    handed back to the queue."""
    claim = yield from store.claim(job_id, worker_id)
    for dead_index, attempts in claim.dead_lettered:
        emitter.emit(
            BatchFailed(
                job_id=job_id,
                timestamp=time.time(),
                batch_id=batch_id_of(dead_index),
                batch_index=dead_index,
                error=dead_letter_reason(attempts),
            )
        )
    if claim.batch_index is None or claim.batch is None:
        if claim.finalized is not None:
            emit_job_completed(emitter, job_id, claim.finalized)
        return _not_claimed(job_id, claim), claim

    idx = claim.batch_index
    batch_id = batch_id_of(idx)
    now = time.time()
    emitter.emit(
        BatchClaimed(
            job_id=job_id, timestamp=now, batch_id=batch_id, batch_index=idx, worker_id=worker_id
        )
    )
    emitter.emit(
        BatchStarted(
            job_id=job_id,
            timestamp=now,
            batch_id=batch_id,
            batch_index=idx,
            record_count=len(claim.batch),
        )
    )
    lease = Lease(
        heartbeat=store.heartbeat_call(job_id, worker_id, idx, claim.token),
        interval=heartbeat_interval,
    )
    yield StartHeartbeat(lease)  # the driver also stops it if this flow raises
    contexts = partial(_context, job_id, batch_id, idx, claim.total_records, worker_id)
    if claim.indexes:  # a redriven batch: positions map to records anywhere in the source
        contexts = partial(_redriven_context, contexts, claim.indexes)
    duplicates: dict[int, list[tuple[str, int]]] = {}
    unique_fields = () if pipeline.schema is None else pipeline.schema.unique_fields
    for position, field_number, first in claim.duplicates:
        duplicates.setdefault(position, []).append((unique_fields[field_number], first))
    outcome = yield from pipeline.run(
        claim.batch, list(claim.columns), contexts, processor, lease, duplicates, deadline
    )
    yield StopHeartbeat(lease)
    handing_back = outcome.state == "COMPLETED" and outcome.done < outcome.size
    remainder, remainder_duplicates = (
        _remainder(claim, outcome.done) if handing_back else (b"", b"")
    )
    commit = yield from store.commit(
        job_id,
        idx,
        claim.token,
        processed=outcome.processed,
        failed=len(outcome.failed),
        batch_state=outcome.state,
        failed_payload=encode_failed(outcome.failed) if outcome.failed else b"",
        remainder=remainder,
        remainder_count=outcome.size - outcome.done if handing_back else 0,
        remainder_duplicates=remainder_duplicates,
    )
    result = BatchResult(
        claimed=True,
        job_id=job_id,
        batch_id=batch_id,
        batch_index=idx,
        processed_count=outcome.processed if commit.accepted else 0,
        failed_count=len(outcome.failed) if commit.accepted else 0,
        job_complete=commit.finalized is not None,
        accepted=commit.accepted,
        reason=None if commit.accepted else str(commit.reason),
    )
    if commit.accepted and not handing_back:
        event: Any
        if outcome.state == "FAILED":
            event = BatchFailed(
                job_id=job_id,
                timestamp=time.time(),
                batch_id=batch_id,
                batch_index=idx,
                error=outcome.error or "batch failed",
            )
        else:
            event = BatchCompleted(
                job_id=job_id,
                timestamp=time.time(),
                batch_id=batch_id,
                batch_index=idx,
                processed_count=outcome.processed,
                failed_count=len(outcome.failed),
                total_count=len(claim.batch),
            )
        emitter.emit(event)
        if commit.finalized is not None:
            emit_job_completed(emitter, job_id, commit.finalized)
    elif commit.finalized is not None:  # a hand-back that crossed a failure threshold
        emit_job_completed(emitter, job_id, commit.finalized)
    return result, claim

"""The worker's flow for one batch: claim, process, commit, maybe finalize.

A worker being stopped (the driver throws ``Interrupted`` in, or marks the
lease) commits what it finished, hands the rest back as a time budget does,
and raises ``Interrupted`` again for the driver to raise the original.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import redis.exceptions

from ._codec import encode_batch, encode_failed
from ._effects import Flow, Interrupted, Lease, Sleep, StartHeartbeat, StopHeartbeat
from ._events import (
    BatchClaimed,
    BatchCompleted,
    BatchFailed,
    BatchStarted,
    EventEmitter,
    JobCompleted,
)
from ._hooks import BatchProcessor, Processor
from ._inflight import Contexts
from ._pipeline import RecordPipeline, batch_id_of
from ._results import BatchResult, JobSummary
from ._store import Claim, CommitReply, NextClaim, Store, dead_letter_reason

__all__ = [
    "TRANSIENT_ERRORS",
    "Chain",
    "emit_job_completed",
    "give_back_unknown",
    "process_batch",
    "riding_out",
]

T = TypeVar("T")
log = logging.getLogger("redisbatch")

#: What a Redis restart or a cluster failover raises for a while: worth
#: retrying with the same arguments (every script answers a repeat as the first).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # BusyLoadingError among them
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,  # ClusterDownError, MasterDownError
    redis.exceptions.TryAgainError,
    redis.exceptions.ReadOnlyError,  # a former master turned replica
    redis.exceptions.RedisClusterException,  # SlotNotCoveredError among them
)


def riding_out(make: Callable[[], Flow[T]], limit: float, what: str) -> Flow[T]:
    """Runs the flow ``make()`` again after a transient error, with backoff,
    until it has been failing for ``limit`` seconds (0: no retry)."""
    failing_since: float | None = None
    delay = 0.05
    while True:
        try:
            return (yield from make())
        except TRANSIENT_ERRORS as exc:
            now = time.monotonic()
            if failing_since is None:
                failing_since = now
            left = limit - (now - failing_since)
            if left <= 0:
                raise
            level = logging.WARNING if delay == 0.05 else logging.DEBUG
            log.log(level, "%s failed (%s: %s); retrying for up to %.1f s",
                    what, type(exc).__name__, exc, left)  # fmt: skip
            yield Sleep(min(delay, left))
            delay = min(delay * 2, 1.0)


def emit_job_completed(emitter: EventEmitter, job_id: str, summary: JobSummary) -> None:
    emitter.emit(JobCompleted(job_id=job_id, timestamp=time.time(), summary=summary))


class Chain:
    """Claims riding on commits, for a worker running batch after batch: a full
    commit claims the worker's next batch in the same call (one round trip
    between two batches instead of two), and the next ``process_batch`` takes
    that claim instead of claiming on its own. Under a time budget, a commit
    claims while the budget is not spent, as the worker would claim after it;
    a claimed batch that finds the budget spent by the time it runs (an event
    handler overran it) is handed back whole, as any batch the budget cuts (not
    counted as an attempt), and a claim that found no batch is taken all the
    same, for what it reports (dead-lettered batches, the job's finalization).

    A batch claimed so comes with its lease, started as soon as the commit's
    reply is read: from then on the driver knows the batch is held, so that a
    worker stopped before the batch runs (Ctrl-C in an event handler, a
    cancellation while the committed batch's heartbeat ends) gives it back at
    once instead of leaving it for the stale timeout."""

    __slots__ = ("lease", "next")

    def __init__(self) -> None:
        self.next: Claim | None = None
        self.lease: Lease | None = None

    def take(self) -> tuple[Claim | None, Lease | None]:
        claim, lease, self.next, self.lease = self.next, self.lease, None, None
        return claim, lease

    @property
    def holds_claim(self) -> bool:
        """Whether a commit's claim waits for a ``process_batch`` to take it: a
        batch, or a reply with none that may still have batches it dead-lettered
        or the job's finalization to report."""
        return self.next is not None


def _lease(
    store: Store, job_id: str, worker_id: str, idx: int, token: str, interval: float
) -> Lease:
    return Lease(
        heartbeat=store.heartbeat_call(job_id, worker_id, idx, token),
        interval=interval,
        release=store.release_call(job_id, idx, worker_id),
    )


def give_back_unknown(
    store: Store, job_id: str, worker_id: str, why: str, holding: set[int] | None = None
) -> Flow[None]:
    """Releases the batches ``worker_id`` holds without knowing it (a claim, or
    a commit's claim of the next batch, whose reply was lost or never read), so
    that they wait for no stale timeout; not those in ``holding`` (held
    knowingly, by a batch running alongside)."""
    for idx in (yield from store.held_by(job_id, worker_id)):
        if holding and idx in holding:
            continue
        log.info("job %s: worker %s gives back batch %d%s", job_id, worker_id, idx, why)
        yield from store.release(job_id, idx, worker_id)


def _hold_next(
    store: Store,
    job_id: str,
    worker_id: str,
    interval: float,
    chain: Chain,
    commit: CommitReply,
) -> Flow[None]:
    """Keeps the claim a commit made for the next ``process_batch``, its batch
    held from here on: the driver gives it back if the worker stops first. A
    worker stopped while the claim's records were read gives the batch back."""
    if commit.next_unread:
        yield from _give_back_on_stop(store, job_id, worker_id)
    chain.next = after = commit.next_claim
    if after is not None and after.batch_index is not None and after.batch is not None:
        chain.lease = _lease(store, job_id, worker_id, after.batch_index, after.token, interval)
        yield StartHeartbeat(chain.lease)


def _stop_lease(lease: Lease) -> Flow[None]:
    """Stops a batch's lease before or after its commit. Stopped meanwhile (the
    lease is then marked ``interrupted``), the flow goes on to commit and report
    the commit (its batch's event, the job's completion) and raises
    ``Interrupted`` after."""
    try:
        yield StopHeartbeat(lease)
    except Interrupted:
        yield StopHeartbeat(lease)


def _give_back_on_stop(store: Store, job_id: str, worker_id: str) -> Flow[None]:
    """``give_back_unknown`` for a worker being stopped: a failure leaves the
    batches to go stale and lets the stop go on."""
    try:
        yield from give_back_unknown(store, job_id, worker_id, " (stopped during a commit)")
    except redis.exceptions.RedisError as exc:
        log.warning("job %s: could not give back a batch (it goes stale): %s", job_id, exc)


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
    rest = claim.batch.rest(done)  # with the failures and source lines of what is left
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
    ride_out: float = 0.0,
    holding: set[int] | None = None,
    chain: Chain | None = None,
) -> Flow[tuple[BatchResult, Claim]]:
    """Claims one batch and runs it; returns the result and the claim reply.
    With a ``deadline`` (``time.monotonic()``), what is not done by then is
    handed back to the queue. A commit failing with a connection error is
    sent again (same token) for up to ``ride_out`` seconds. ``holding`` has
    the batch's index from its claim to its commit (a batch running alongside
    must not take it for one held unknowingly). With a ``chain``, the claim
    is the one the previous commit made, if it made one, and the commit
    claims the next batch (see ``Chain``)."""
    claim, lease = (None, None) if chain is None else chain.take()
    if claim is None:
        claim = yield from store.claim(job_id, worker_id)
    for dead_index, attempts in claim.dead_lettered:
        log.warning("job %s: batch %d %s", job_id, dead_index, dead_letter_reason(attempts).lower())
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
    if lease is None:
        lease = _lease(store, job_id, worker_id, idx, claim.token, heartbeat_interval)
        yield StartHeartbeat(lease)  # the driver also stops it if this flow raises
    holding = set() if holding is None else holding
    holding.add(idx)
    try:
        return (
            yield from _run_claimed(
                store, pipeline, emitter, job_id, processor, worker_id,
                heartbeat_interval, deadline, ride_out, claim, idx, chain, lease,
            )
        )  # fmt: skip
    finally:
        holding.discard(idx)


def _run_claimed(
    store: Store,
    pipeline: RecordPipeline,
    emitter: EventEmitter,
    job_id: str,
    processor: Processor | BatchProcessor,
    worker_id: str,
    heartbeat_interval: float,
    deadline: float | None,
    ride_out: float,
    claim: Claim,
    idx: int,
    chain: Chain | None,
    lease: Lease,
) -> Flow[tuple[BatchResult, Claim]]:
    """``process_batch`` once a batch is claimed and its ``lease`` started:
    events, pipeline, commit."""
    assert claim.batch is not None
    batch_id = batch_id_of(idx)
    if claim.attempt > 1:
        log.info(
            "job %s: worker %s took over batch %d (delivery %d of %d): its previous "
            "holder stopped heartbeating or released it",
            job_id, worker_id, idx, claim.attempt, store.max_batch_attempts,
        )  # fmt: skip
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
    # A redriven batch (claim.indexes): positions map to records anywhere in the source.
    contexts = Contexts(job_id, batch_id, idx, claim.total_records, worker_id, claim.indexes)
    duplicates: dict[int, list[tuple[str, int]]] = {}
    unique_fields = () if pipeline.schema is None else pipeline.schema.unique_fields
    for position, field_number, first in claim.duplicates:
        duplicates.setdefault(position, []).append((unique_fields[field_number], first))
    outcome = yield from pipeline.run(
        claim.batch, list(claim.columns), contexts, processor, lease, duplicates, deadline
    )
    handing_back = outcome.state == "COMPLETED" and outcome.done < outcome.size
    # Named once: a commit sent again repeats its claim instead of taking another batch.
    claim_next = (
        NextClaim(worker_id)
        if chain is not None
        and not handing_back
        and not lease.interrupted
        and (deadline is None or time.monotonic() < deadline)
        else None
    )
    if claim_next is None:
        yield from _stop_lease(lease)
    remainder, remainder_duplicates = (
        _remainder(claim, outcome.done) if handing_back else (b"", b"")
    )
    failed_payload = encode_failed(outcome.failed) if outcome.failed else b""
    try:
        commit = yield from riding_out(
            lambda: store.commit(
                job_id,
                idx,
                claim.token,
                processed=outcome.processed,
                failed=len(outcome.failed),
                batch_state=outcome.state,
                failed_payload=failed_payload,
                remainder=remainder,
                remainder_count=outcome.size - outcome.done if handing_back else 0,
                remainder_duplicates=remainder_duplicates,
                claim_next=claim_next,
            ),
            ride_out,
            f"job {job_id}: commit of batch {idx}",
        )
    except Interrupted:
        # Stopped during a commit that claims the next batch (its lease kept the
        # batch held for this): whether the call landed is unknown, so the batch,
        # if not committed, and the next one, if claimed, go back at once.
        yield StopHeartbeat(lease)
        yield from _give_back_on_stop(store, job_id, worker_id)
        raise
    except Exception:
        # Failing past the ride-out: the caller gives back what this worker
        # holds unknowingly; the lease kept for the call ends here all the same.
        if claim_next is not None:
            yield StopHeartbeat(lease)
        raise
    if chain is not None:
        yield from _hold_next(store, job_id, worker_id, heartbeat_interval, chain, commit)
    if claim_next is not None:
        yield from _stop_lease(lease)

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
    if lease.interrupted:
        log.info(
            "job %s: worker %s stopped; batch %d: %d records committed, %d handed back",
            job_id, worker_id, idx, outcome.processed + len(outcome.failed),
            outcome.size - outcome.done if handing_back else 0,
        )  # fmt: skip
        raise Interrupted
    return result, claim

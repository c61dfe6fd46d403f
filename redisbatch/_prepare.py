"""The orchestrator's flow: stream a source into stored batches, then seal."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, Final

import redis.exceptions

from ._batcher import Batcher, EncodedBatch
from ._effects import Background, Flow, ItemReader, ReadItems, Sleep, Wait
from ._events import DistributedPrepared, EventEmitter
from ._exceptions import ConfigurationError, JobExistsError, RedisBatchError, SourceError
from ._parsers import RowBlock
from ._results import PrepareResult
from ._store import Store
from ._worker import emit_job_completed

__all__ = ["prepare"]

#: Batches are sent to Redis in pipelines of this many, or fewer when they
#: reach _FLUSH_BYTES: one round trip per several batches, and workers can
#: start on the first batches while the rest of the file is read.
_FLUSH_BATCHES: Final = 16
_FLUSH_BYTES: Final = 1 << 20
#: Records read from the source per step. Small, so that rows (Python lists)
#: die young and the cyclic garbage collector stays idle.
_READ_RECORDS: Final = 256
#: The first wait for room under ``max_pending_batches`` (seconds; then doubling
#: up to the poll interval's longest): a window of a few batches drains in
#: milliseconds.
_FIRST_ROOM_POLL: Final = 0.002


def prepare(
    store: Store,
    emitter: EventEmitter,
    job_id: str,
    items: Iterator[Any],
    batcher: Batcher,
    origin: str,
    *,
    max_pending: int | None = None,
    poll: tuple[float, float] = (0.02, 1.0),
    resume: bool = False,
) -> Flow[PrepareResult]:
    """Creates the job (or, with ``resume``, continues a job whose prepare was
    interrupted), stores every batch, seals it. ``items`` is the opened source.

    With ``max_pending``, batches are stored only while fewer than that many
    stored batches are unclaimed: a source read faster than workers consume it
    waits here instead of filling Redis."""
    already_stored = 0
    # Names this prepare: its create and seal are answered, not refused, when
    # redis-py repeats them after a lost reply; a resume has its own.
    nonce = uuid.uuid4().hex
    try:
        yield from store.create(
            job_id, batcher.batch_size, nonce=nonce, max_batch_bytes=batcher.max_batch_bytes
        )
    except JobExistsError:
        if not resume:
            raise
        already_stored = yield from _resume_point(store, job_id, batcher)
    out = _Outbox(store, job_id, max_pending, poll, already_stored)
    reader = ItemReader(items)
    try:
        while True:
            chunk = yield ReadItems(reader, min(batcher.batch_size, _READ_RECORDS))
            if not chunk:
                break
            for item in chunk:
                if type(item) is RowBlock:
                    for batch in batcher.add_block(item.rows, item.lines):
                        out.keep(batch)
                else:
                    out.keep(batcher.add(item))
            if out.full() and (yield from out.flush()) is not None:
                return (yield from _stopped(store, job_id, nonce))
        out.keep(batcher.finish())
        if (yield from out.flush(last=True)) is not None:
            return (yield from _stopped(store, job_id, nonce))
    except Exception as exc:
        if isinstance(exc, RedisBatchError) and not isinstance(exc, SourceError):
            raise
        if _is_redis_error(exc):
            raise
        # The source broke mid-stream: keep what was read, fail the job, say where.
        message = str(exc) if isinstance(exc, SourceError) else f"{origin}: {exc!r}"
        try:
            last = batcher.finish()
        except SourceError:  # the records that could not be encoded are the failure
            last = None
        if last is not None:
            out.keep(last)
        out.max_pending = None  # no worker will claim from a failed job: do not wait for room
        yield from out.flush(last=True)
        yield from store.end(job_id, "FAILED", message)
        raise SourceError(message) from exc

    sealed = yield from store.seal(job_id, nonce=nonce)
    if sealed.sealed_elsewhere:
        raise JobExistsError(job_id, _SEALED_ELSEWHERE)
    if sealed.state in ("ABORTED", "FAILED") and sealed.finalized is None:
        return (yield from _stopped(store, job_id, nonce))
    result = PrepareResult(
        job_id=job_id, total_records=sealed.total_records, total_batches=sealed.total_batches
    )
    emitter.emit(
        DistributedPrepared(
            job_id=job_id,
            timestamp=time.time(),
            total_records=result.total_records,
            total_batches=result.total_batches,
        )
    )
    if sealed.finalized is not None:
        emit_job_completed(emitter, job_id, sealed.finalized)
    return result


class _Outbox:
    """Batches cut but not stored yet, and the rules for storing them."""

    def __init__(
        self,
        store: Store,
        job_id: str,
        max_pending: int | None,
        poll: tuple[float, float],
        already_stored: int,
    ) -> None:
        self.store, self.job_id = store, job_id
        self.max_pending, self.poll = max_pending, poll
        self.already_stored = already_stored  # batches a resumed prepare skips
        self.pending: list[EncodedBatch] = []
        self.in_flight: Any = None  # a Background store whose replies are not read yet
        self.pending_bytes = 0
        self.unclaimed = 0
        self.flush_at = _FLUSH_BATCHES if max_pending is None else min(_FLUSH_BATCHES, max_pending)

    def keep(self, batch: EncodedBatch | None) -> None:
        if batch is not None and batch.index >= self.already_stored:
            self.pending.append(batch)
            self.pending_bytes += len(batch.payload)

    def full(self) -> bool:
        return len(self.pending) >= self.flush_at or self.pending_bytes >= _FLUSH_BYTES

    def flush(self, *, last: bool = False) -> Flow[str | None]:
        """Stores the pending batches; returns the job's state if it was stopped.

        Without ``max_pending`` the pipeline is sent and its replies read at the
        next flush (one pipeline in flight), so Redis stores while the next
        batches are read; ``last`` waits for it."""
        self.pending_bytes = 0
        if self.max_pending is None:
            stopped = yield from self._settle_in_flight()
            if stopped is None and self.pending:
                self.in_flight = yield Background(
                    self.store.store_pipeline(self.job_id, self.pending)
                )
                self.pending = []
            if last and stopped is None:
                stopped = yield from self._settle_in_flight()
            return stopped
        while self.pending:
            room = yield from self._room()
            if isinstance(room, str):
                return room
            part, self.pending = self.pending[:room], self.pending[room:]
            reply = yield from self.store.store_batches(self.job_id, part)
            if reply.stopped_state is not None:
                return reply.stopped_state
            self.unclaimed = reply.unclaimed
        return None

    def _settle_in_flight(self) -> Flow[str | None]:
        if self.in_flight is None:
            return None
        ticket, self.in_flight = self.in_flight, None
        reply = self.store.store_reply((yield Wait(ticket)))
        self.unclaimed = reply.unclaimed
        return reply.stopped_state

    def _room(self) -> Flow[int | str]:
        """How many batches may be stored now (waiting for room under
        ``max_pending``), or the job's state when it was stopped meanwhile."""
        if self.max_pending is None:
            return len(self.pending)
        if self.unclaimed >= self.max_pending:
            # A full window is refilled once half of it is claimed, in one
            # store: workers keep the other half to work on meanwhile.
            low_water = self.max_pending - max(1, self.max_pending // 2)
            delay = min(self.poll[0], _FIRST_ROOM_POLL)
            while self.unclaimed > low_water:
                yield Sleep(delay)
                delay = min(delay * 2, self.poll[1])
                status = yield from self.store.status(self.job_id)
                if status is None or status.state in ("ABORTED", "FAILED"):
                    return "DELETED" if status is None else status.state
                self.unclaimed = status.pending_batches
        return self.max_pending - self.unclaimed


_SEALED_ELSEWHERE: Final = (
    "another prepare of it (a concurrent prepare(..., resume=True)) completed it first"
)
_WHAT_TO_DO: Final = (
    "delete it (delete(job_id)) to prepare it again under this id, or prepare under a new job_id"
)


def _resume_point(store: Store, job_id: str, batcher: Batcher) -> Flow[int]:
    """How many batches an interrupted prepare stored; refuses, saying why, a
    job that is not an interrupted prepare cutting the same batches (same
    ``batch_size`` and ``max_batch_bytes``)."""
    point = yield from store.resume_point(job_id)
    if point is None:  # created and deleted again in between
        raise JobExistsError(job_id, "it changed while resuming; try again")
    if point.sealed or point.state not in ("PREPARING", "PAUSED"):
        why = f"it cannot be resumed: it is {point.state}"
        if point.sealed and point.state not in ("COMPLETED", "FAILED", "ABORTED"):
            why += " (its prepare already completed)"
        if point.error:
            why += f" (error: {point.error})"
        raise JobExistsError(job_id, f"{why}; {_WHAT_TO_DO}")
    if point.batch_size != batcher.batch_size:
        raise ConfigurationError(
            f"resume: job {job_id!r} was prepared with batch_size={point.batch_size}, "
            f"not {batcher.batch_size}"
        )
    if point.max_batch_bytes is not None and point.max_batch_bytes != batcher.max_batch_bytes:
        raise ConfigurationError(
            f"resume: job {job_id!r} was prepared with max_batch_bytes={point.max_batch_bytes}, "
            f"not {batcher.max_batch_bytes}"
        )
    return point.total_batches


def _stopped(store: Store, job_id: str, nonce: str) -> Flow[PrepareResult]:
    """The job was aborted while preparing: the counts stored so far. A job
    that vanished (deleted, or a server that lost its data) is an error; so is
    one that another prepare of it sealed (two concurrent resumes)."""
    point = yield from store.resume_point(job_id)
    if point is not None and point.sealed and point.sealed_by != nonce:
        raise JobExistsError(job_id, _SEALED_ELSEWHERE)
    status = yield from store.status(job_id)
    if status is None:
        raise RedisBatchError(
            f"job {job_id!r} disappeared while it was being prepared "
            "(deleted, or the server lost its data)"
        )
    return PrepareResult(
        job_id=job_id, total_records=status.total_records, total_batches=status.total_batches
    )


def _is_redis_error(exc: BaseException) -> bool:
    return isinstance(exc, redis.exceptions.RedisError)

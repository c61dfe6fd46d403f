"""The orchestrator's flow: stream a source into stored batches, then seal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Final

import redis.exceptions

from ._batcher import Batcher, EncodedBatch
from ._effects import Flow, ItemReader, ReadItems
from ._events import DistributedPrepared, EventEmitter
from ._exceptions import RedisBatchError, SourceError
from ._results import PrepareResult
from ._store import Store
from ._worker import emit_job_completed

__all__ = ["prepare"]

#: Batches are sent to Redis in pipelines of this many, or fewer when they
#: reach _FLUSH_BYTES: one round trip per several batches, and workers can
#: start on the first batches while the rest of the file is read.
_FLUSH_BATCHES: Final = 16
_FLUSH_BYTES: Final = 1 << 20


def prepare(
    store: Store,
    emitter: EventEmitter,
    job_id: str,
    items: Iterator[Any],
    batcher: Batcher,
    origin: str,
) -> Flow[PrepareResult]:
    """Creates the job, stores every batch, seals it. ``items`` is the opened source."""
    yield from store.create(job_id, batcher.batch_size)
    pending: list[EncodedBatch] = []
    pending_bytes = 0
    reader = ItemReader(items)

    def flush() -> Flow[str | None]:
        nonlocal pending, pending_bytes
        if not pending:
            return None
        reply = yield from store.store_batches(job_id, pending)
        pending, pending_bytes = [], 0
        return reply.stopped_state

    try:
        while True:
            chunk = yield ReadItems(reader, batcher.batch_size)
            if not chunk:
                break
            for item in chunk:
                batch = batcher.add(item)
                if batch is not None:
                    pending.append(batch)
                    pending_bytes += len(batch.payload)
            if len(pending) >= _FLUSH_BATCHES or pending_bytes >= _FLUSH_BYTES:
                stopped = yield from flush()
                if stopped is not None:
                    return (yield from _stopped(store, job_id))
        last = batcher.finish()
        if last is not None:
            pending.append(last)
        stopped = yield from flush()
        if stopped is not None:
            return (yield from _stopped(store, job_id))
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
            pending.append(last)
        yield from flush()
        yield from store.end(job_id, "FAILED", message)
        raise SourceError(message) from exc

    sealed = yield from store.seal(job_id)
    if sealed.state in ("ABORTED", "FAILED") and sealed.finalized is None:
        return (yield from _stopped(store, job_id))
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


def _stopped(store: Store, job_id: str) -> Flow[PrepareResult]:
    """The job was aborted while preparing: the counts stored so far."""
    status = yield from store.status(job_id)
    return PrepareResult(
        job_id=job_id,
        total_records=status.total_records if status else 0,
        total_batches=status.total_batches if status else 0,
    )


def _is_redis_error(exc: BaseException) -> bool:
    return isinstance(exc, redis.exceptions.RedisError)

"""Local events: their types and the emitter.

Subscribe with ``on(event.type, handler)`` or ``on_any(handler)`` on a facade;
each handler receives one event object.

Events are local to the instance that emits them; the cross-worker feed is
the job's events stream in Redis. A handler that raises is logged and
ignored: it never breaks processing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from ._results import JobSummary

__all__ = [
    "BatchClaimed",
    "BatchCompleted",
    "BatchFailed",
    "BatchStarted",
    "DistributedPrepared",
    "Event",
    "EventEmitter",
    "JobCompleted",
    "RecordFailed",
    "RecordProcessed",
    "RecordRetried",
]

log = logging.getLogger("redisbatch")


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event: ``type`` (the string ``on`` subscribes to), ``job_id``
    and ``timestamp`` (float epoch seconds, when it was emitted).

    Events are local: only the facade instance whose call did the work emits
    them, to the handlers registered on it. A handler that raises is logged
    and ignored; it never breaks processing.
    """

    type: ClassVar[str]
    job_id: str
    timestamp: float


class DistributedPrepared(Event, frozen=True, kw_only=True):
    """``distributed:prepared``: emitted by ``prepare`` once the job is sealed;
    ``total_records``/``total_batches`` are what it stored (``job_id``,
    ``timestamp`` as on every event)."""

    type: ClassVar[str] = "distributed:prepared"
    total_records: int
    total_batches: int


class BatchClaimed(Event, frozen=True, kw_only=True):
    """``batch:claimed``: emitted when this instance's worker ``worker_id`` claims
    batch ``batch_id`` (0-based ``batch_index``) of ``job_id``, at
    ``timestamp``."""

    type: ClassVar[str] = "batch:claimed"
    batch_id: str
    batch_index: int
    worker_id: str


class BatchStarted(Event, frozen=True, kw_only=True):
    """``batch:started``: emitted right after ``batch:claimed``, before the first
    record; ``record_count`` is how many records the batch ``batch_id``
    (``batch_index``) of ``job_id`` holds; ``timestamp`` as on every event."""

    type: ClassVar[str] = "batch:started"
    batch_id: str
    batch_index: int
    record_count: int


class BatchCompleted(Event, frozen=True, kw_only=True):
    """``batch:completed``: emitted when a batch's commit is accepted and the batch
    did not fail; ``processed_count``/``failed_count`` of its ``total_count``
    records succeeded/failed (``batch_id``, ``batch_index``, ``job_id``,
    ``timestamp`` as usual). Not emitted for a commit that hands part of the
    batch back (time budget, stopped worker)."""

    type: ClassVar[str] = "batch:completed"
    batch_id: str
    batch_index: int
    processed_count: int
    failed_count: int
    total_count: int


class BatchFailed(Event, frozen=True, kw_only=True):
    """``batch:failed``: emitted instead of ``batch:completed`` when batch
    ``batch_id`` (``batch_index``) of ``job_id`` is committed FAILED (a record
    failed with ``continue_on_error=False``) or dead-lettered after
    ``max_batch_attempts``; ``error`` says why; ``timestamp`` as usual."""

    type: ClassVar[str] = "batch:failed"
    batch_id: str
    batch_index: int
    error: str


class RecordProcessed(Event, frozen=True, kw_only=True):
    """``record:processed``: the record at source index ``record_index`` of batch
    ``batch_id`` of ``job_id`` went through the processor (and the
    ``after_process`` hook) without error; ``timestamp`` as usual."""

    type: ClassVar[str] = "record:processed"
    batch_id: str
    record_index: int


class RecordFailed(Event, frozen=True, kw_only=True):
    """``record:failed``: the record at source index ``record_index`` of batch
    ``batch_id`` of ``job_id`` is invalid or failed in processing; ``error`` is
    the message, ``record`` its ``ProcessedRecord``; ``timestamp`` as usual."""

    type: ClassVar[str] = "record:failed"
    batch_id: str
    record_index: int
    error: str
    record: Any


class RecordRetried(Event, frozen=True, kw_only=True):
    """``record:retried``: the processor raised ``error`` on the record at source
    index ``record_index`` (batch ``batch_id`` of ``job_id``) and retry number
    ``attempt`` (1-based) of ``max_retries`` follows after its backoff;
    ``timestamp`` as usual."""

    type: ClassVar[str] = "record:retried"
    batch_id: str
    record_index: int
    attempt: int
    max_retries: int
    error: str


class JobCompleted(Event, frozen=True, kw_only=True):
    """``job:completed``: emitted once per job across all workers, by the instance
    whose call finalized ``job_id`` (COMPLETED or FAILED; ``abort`` emits
    none); ``summary`` is its ``JobSummary``; ``timestamp`` as usual."""

    type: ClassVar[str] = "job:completed"
    summary: JobSummary


EVENT_TYPES: frozenset[str] = frozenset(
    cls.type
    for cls in (
        DistributedPrepared,
        BatchClaimed,
        BatchStarted,
        BatchCompleted,
        BatchFailed,
        RecordProcessed,
        RecordFailed,
        RecordRetried,
        JobCompleted,
    )
)

Handler = Callable[[Any], object]


class EventEmitter:
    """Per-instance subscriptions. ``wants`` lets hot paths skip building events."""

    __slots__ = ("_any", "_by_type")

    def __init__(self) -> None:
        self._by_type: dict[str, list[Handler]] = {}
        self._any: list[Handler] = []

    def on(self, event_type: str, handler: Handler) -> None:
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}")
        self._by_type.setdefault(event_type, []).append(handler)

    def on_any(self, handler: Handler) -> None:
        self._any.append(handler)

    def off_any(self, handler: Handler) -> None:
        if handler in self._any:
            self._any.remove(handler)

    def wants(self, event_type: str) -> bool:
        return bool(self._any) or event_type in self._by_type

    def emit(self, event: Event) -> None:
        for handler in (*self._by_type.get(event.type, ()), *self._any):
            try:
                handler(event)
            except Exception:
                log.exception("event handler for %s raised; ignored", event.type)

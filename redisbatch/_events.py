"""Local events (API contract, section 4): types and the emitter.

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
    """Base of every event: ``type``, ``job_id`` and ``timestamp`` (epoch seconds)."""

    type: ClassVar[str]
    job_id: str
    timestamp: float


class DistributedPrepared(Event, frozen=True, kw_only=True):
    type: ClassVar[str] = "distributed:prepared"
    total_records: int
    total_batches: int


class BatchClaimed(Event, frozen=True, kw_only=True):
    type: ClassVar[str] = "batch:claimed"
    batch_id: str
    batch_index: int
    worker_id: str


class BatchStarted(Event, frozen=True, kw_only=True):
    type: ClassVar[str] = "batch:started"
    batch_id: str
    batch_index: int
    record_count: int


class BatchCompleted(Event, frozen=True, kw_only=True):
    type: ClassVar[str] = "batch:completed"
    batch_id: str
    batch_index: int
    processed_count: int
    failed_count: int
    total_count: int


class BatchFailed(Event, frozen=True, kw_only=True):
    type: ClassVar[str] = "batch:failed"
    batch_id: str
    batch_index: int
    error: str


class RecordProcessed(Event, frozen=True, kw_only=True):
    type: ClassVar[str] = "record:processed"
    batch_id: str
    record_index: int


class RecordFailed(Event, frozen=True, kw_only=True):
    type: ClassVar[str] = "record:failed"
    batch_id: str
    record_index: int
    error: str
    record: Any


class RecordRetried(Event, frozen=True, kw_only=True):
    type: ClassVar[str] = "record:retried"
    batch_id: str
    record_index: int
    attempt: int
    max_retries: int
    error: str


class JobCompleted(Event, frozen=True, kw_only=True):
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

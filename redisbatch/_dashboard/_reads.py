"""What the dashboard reads from Redis, as flows (no web framework here).

Costs, per refresh: a page of the jobs list is one ``ZCARD`` + one
``ZREVRANGE`` of the page + one pipelined status script per job on the page
(O(1) each); a job page is its status script + one ``XREVRANGE ... COUNT n``
of its events stream. The first failed records are read only when the page
opens and when the job's failed count changes: batches are read in windows
of ``_WINDOW`` from the first until ``limit`` records are found, at most
``max_batches`` batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .._effects import Command, Flow
from .._jobs import gather
from .._results import JobStatus, ProcessedRecord
from .._store import Store

__all__ = ["Event", "FailedPage", "JobsPage", "events_flow", "failed_flow", "page_flow"]

_WINDOW: Final = 64


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class JobsPage:
    jobs: list[JobStatus]
    page: int  # 1-based
    pages: int
    total: int  # jobs in the namespace's index (some may have expired meanwhile)


def page_flow(store: Store, page: int, size: int) -> Flow[JobsPage]:
    """One page of the namespace's jobs, newest first."""
    total = int((yield Command(("ZCARD", store.index_key))))
    pages = max(1, -(-total // size))
    page = min(max(1, page), pages)
    start = (page - 1) * size
    raw = yield Command(("ZREVRANGE", store.index_key, start, start + size - 1))
    ids = [_text(i) for i in raw]
    statuses = yield from gather([store.status(job_id) for job_id in ids])
    return JobsPage([s for s in statuses if s is not None], page, pages, total)


@dataclass(frozen=True, slots=True)
class Event:
    id: str  # the stream entry id: "<milliseconds>-<sequence>"
    at: float  # epoch seconds, from the entry id (the server's clock)
    fields: dict[str, str]


def _entries(reply: Any) -> list[tuple[Any, Any]]:
    """XREVRANGE's reply as (id, fields) pairs: redis-py gives fields as a dict,
    a raw reply as a flat list."""
    return [(entry[0], entry[1]) for entry in reply or ()]


def _fields(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {_text(k): _text(v) for k, v in raw.items()}
    items = list(raw or ())
    return {_text(items[i]): _text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def events_flow(store: Store, job_id: str, count: int) -> Flow[list[Event]]:
    """The job's ``count`` most recent events, newest first."""
    reply = yield Command(("XREVRANGE", store.keys(job_id).events, "+", "-", "COUNT", count))
    events = []
    for entry_id, fields in _entries(reply):
        text = _text(entry_id)
        millis = text.split("-", 1)[0]
        at = int(millis) / 1000.0 if millis.isdigit() else 0.0
        events.append(Event(text, at, _fields(fields)))
    return events


@dataclass(frozen=True, slots=True)
class FailedPage:
    records: list[ProcessedRecord]
    complete: bool  # every batch was looked at (no more failed records before limit)


def failed_flow(store: Store, job_id: str, limit: int, max_batches: int = 4096) -> Flow[FailedPage]:
    """The first ``limit`` failed or invalid records of the job, in source order."""
    total = yield from store.total_batches(job_id)
    end = min(total, max_batches)
    found: list[ProcessedRecord] = []
    first = 0
    while first < end and len(found) < limit:
        last = min(end, first + _WINDOW)
        found.extend((yield from store.failed_chunk(job_id, first, last)))
        first = last
    return FailedPage(found[:limit], complete=first >= total)

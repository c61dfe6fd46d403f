"""``watch``: a job's snapshots as it changes, fed by its cross-worker event stream.

Each refresh costs O(1) Redis work whatever the job's size: one ``XREAD
BLOCK`` of at most one entry past the last one seen (returning as soon as a
worker commits, or after ``interval``), one ``XREVRANGE ... COUNT 1`` to skip
to the newest entry when there was one, and one status script. Snapshots come
at most ten times a second however fast the workers commit.

A watch yields the current snapshot first, then one per change (of state,
counts, attempt or workers: rate and ETA alone move with the clock), and ends
with exactly one final snapshot. A job that does not exist, or is deleted
while watched, raises ``JobNotFoundError``.
"""

from __future__ import annotations

import time
from typing import Any, Final

import msgspec

from ._effects import Command, Flow, Sleep
from ._exceptions import ConfigurationError, JobNotFoundError
from ._keys import check_job_id
from ._results import JobStatus
from ._store import Store

__all__ = ["Watch", "socket_timeout"]

#: Shortest time between two refreshes (seconds).
MIN_GAP: Final = 0.1


def socket_timeout(client: Any) -> float | None:
    """The client's read timeout (seconds), if it has one: a blocking read must
    return before it."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        kwargs = getattr(client, "connection_kwargs", None)
    value = kwargs.get("socket_timeout") if isinstance(kwargs, dict) else None
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _changed(before: JobStatus | None, now: JobStatus) -> bool:
    if before is None:
        return True
    clock = {"rate": None, "eta": None}
    return msgspec.structs.replace(before, **clock) != msgspec.structs.replace(now, **clock)


def _last_id(reply: Any) -> Any:
    """The id of the last entry of an XREAD or XREVRANGE reply, or None (RESP2
    lists of ``[key, entries]``, RESP3 maps, or a bare list of entries)."""
    if not reply:
        return None
    if isinstance(reply, dict):
        reply = list(reply.items())
    first = reply[0]
    if isinstance(first, list | tuple) and len(first) == 2 and isinstance(first[1], list):
        entries = first[1]  # [key, entries]
    else:
        entries = reply
    return entries[-1][0] if entries else None


class Watch:
    """The state of one watch; ``step()`` is the flow of one refresh."""

    def __init__(
        self, store: Store, job_id: str, interval: float, read_timeout: float | None = None
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
            raise ConfigurationError("interval must be a non-negative number of seconds")
        self.store = store
        self.job_id = check_job_id(job_id)
        self.interval = float(interval)
        # A blocking read returns well before the client's own read timeout.
        self.block = self.interval if read_timeout is None else min(self.interval, read_timeout / 2)
        self.done = False
        self._seen: Any = None  # the id of the last event read
        self._previous: JobStatus | None = None
        self._refreshed = -float("inf")

    def step(self) -> Flow[JobStatus | None]:
        """One refresh: the new snapshot if it changed, else None."""
        events = self.store.keys(self.job_id).events
        if self._seen is None:
            self._seen = _last_id((yield Command(("XREVRANGE", events, "+", "-", "COUNT", 1))))
            self._seen = self._seen or b"0-0"
        else:
            wait = MIN_GAP - (time.monotonic() - self._refreshed)
            if wait > 0:
                yield Sleep(wait)
            block = max(1, round(self.block * 1000))
            arrived = yield Command(
                ("XREAD", "BLOCK", block, "COUNT", 1, "STREAMS", events, self._seen)
            )
            if _last_id(arrived) is not None:
                newest = yield Command(("XREVRANGE", events, "+", "-", "COUNT", 1))
                self._seen = _last_id(newest) or _last_id(arrived)
        status = yield from self.store.status(self.job_id)
        self._refreshed = time.monotonic()
        if status is None:
            self.done = True
            raise JobNotFoundError(self.job_id)
        if status.is_complete:
            self.done = True
        if not _changed(self._previous, status) and not self.done:
            return None
        self._previous = status
        return status

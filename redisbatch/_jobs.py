"""Reading many jobs at once: ``jobs()``, and running several flows in step.

``gather`` advances several flows together: when every one of them waits on
a script call, the calls go to Redis as one pipeline (one round trip for a
page of jobs); any other effect is passed to the driver one at a time. It
relies only on flows being generators, so it keeps working whatever a flow
such as ``Store.status`` comes to yield.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeVar

from ._effects import Command, Flow, Pipeline
from ._results import JobStatus
from ._scripts import ScriptCall
from ._store import Store

__all__ = ["gather", "jobs_flow"]

T = TypeVar("T")

#: Jobs whose status is read per round trip.
_PAGE: Final = 100


def gather(flows: Sequence[Flow[T]]) -> Flow[list[T]]:
    """Runs ``flows`` to their ends, in step; their results in order."""
    results: list[Any] = [None] * len(flows)
    waiting: dict[int, Any] = {}  # flow position -> the effect it yielded
    for position, flow in enumerate(flows):
        try:
            waiting[position] = next(flow)
        except StopIteration as stop:
            results[position] = stop.value
    while waiting:
        positions = list(waiting)
        effects = [waiting[p] for p in positions]
        replies: list[Any]
        if all(isinstance(e, ScriptCall) for e in effects) and len(effects) > 1:
            replies = yield Pipeline(tuple(effects))
        else:
            replies = []
            for effect in effects:
                try:
                    replies.append((yield effect))
                except Exception as exc:  # goes into its own flow, as a pipeline's would
                    replies.append(exc)
        for position, reply in zip(positions, replies, strict=True):
            flow = flows[position]
            try:
                if isinstance(reply, Exception):  # a pipeline hands errors back as values
                    waiting[position] = flow.throw(reply)
                else:
                    waiting[position] = flow.send(reply)
            except StopIteration as stop:
                results[position] = stop.value
                del waiting[position]
    return results


def jobs_flow(store: Store) -> Flow[list[JobStatus]]:
    """Every job of the namespace's index, newest first; ids whose job no
    longer exists (expired or deleted) are left out."""
    raw_ids = yield Command(("ZREVRANGE", store.index_key, 0, -1))
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in raw_ids]
    found: list[JobStatus] = []
    for start in range(0, len(ids), _PAGE):
        page = ids[start : start + _PAGE]
        statuses = yield from gather([store.status(job_id) for job_id in page])
        found.extend(s for s in statuses if s is not None)
    return found

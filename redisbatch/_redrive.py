"""``retry_failed``: a redrive of a finished job within the same job id.

What runs again in the new attempt:

- every record that failed in processing (its latest outcome is ``failed``:
  the processor, a hook or the duplicate checker raised);
- with ``include_invalid=True``, the invalid records too, except those whose
  errors include ``DUPLICATE_VALUE`` (the record that came first still holds
  the value: it would be a duplicate again) or ``PARSE_ERROR`` (the source row
  could not be read; reading it again gives the same row). They stay listed
  as failed, as they were;
- the records of dead-lettered batches (with fresh delivery attempts), and the
  records of batches that never ran: still queued, still claimed by a worker
  of the ended attempt (revoked: its commit is refused), or handed back into
  the job after it failed.

Successes are kept. Records chosen from the failed hash travel as new batches
of the job, each with the map from its positions to the records' source
indexes; a record keeps its index, its source line, its ``idempotency_key``
and its place in ``failed_records()``. Records skipped by ``continue_on_error=False`` (after the
failing record of their batch) were never kept and are not run again.

The flow reads the failed hash and the batches' states (O(batches + failed
records): a redrive is rare; claims and commits keep their one round trip),
chooses, then applies everything in one script, which refuses (STALE) if a
commit came in meanwhile: the flow reads again and retries.
"""

from __future__ import annotations

import collections
import itertools
import uuid
from collections.abc import Iterator
from typing import Any, Final

import msgspec

from ._codec import ABSENT, StoredBatch, decode_columns, decode_failed, encode_batch, encode_failed
from ._effects import Command, Flow
from ._exceptions import ConfigurationError, RedisBatchError
from ._export import job_not_found
from ._keys import check_job_id
from ._results import ProcessedRecord
from ._scripts import Reply
from ._store import Store

__all__ = ["failed_flows", "redrive_flow", "retried"]

#: Batches whose states and failed records are read per round trip.
_CHUNK: Final = 200
#: Times the flow reads again after a commit came in between.
_ATTEMPTS: Final = 20
#: Invalid records that a redrive never runs again (see the module docstring).
KEPT_CODES: Final = frozenset(("DUPLICATE_VALUE", "PARSE_ERROR"))
_json: Final = msgspec.json.Encoder()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    return int(value) if value not in (None, b"", "") else 0


def retried(record: ProcessedRecord, include_invalid: bool) -> bool:
    """Whether a redrive runs this failed or invalid record again."""
    if record.status == "failed":
        return True
    return (
        include_invalid
        and record.status == "invalid"
        and not any(e.code in KEPT_CODES for e in record.errors)
    )


class _Plan(msgspec.Struct):
    """What one reading of the job chose."""

    settle_seq: str
    queued_records: int = 0  # records of batches never claimed
    in_place: list[int] = msgspec.field(default_factory=list)  # DEAD / ENDED batches
    rewritten: list[tuple[int, bytes, int]] = msgspec.field(default_factory=list)
    chosen: list[ProcessedRecord] = msgspec.field(default_factory=list)


def _read(store: Store, job_id: str, include_invalid: bool) -> Flow[tuple[_Plan, int, list[str]]]:
    """Reads the job and chooses what runs again; returns the plan, the job's
    batch size and its columns. Raises for an unknown or unfinished job."""
    keys = store.keys(job_id)
    head = yield Command(
        (
            "HMGET",
            keys.job,
            "state",
            "settle_seq",
            "total_batches",
            "batch_size",
            "columns",
            "sealed",
        )
    )
    if head[0] is None:
        raise job_not_found(job_id)
    state = _text(head[0])
    if state not in ("COMPLETED", "FAILED") or _text(head[5] or b"") != "1":
        why = "its prepare did not complete" if state == "FAILED" else f"it is {state}"
        raise ConfigurationError(
            f"job {job_id!r} cannot be redriven: {why} (only a finished job, "
            "COMPLETED or FAILED, can be)"
        )
    plan = _Plan(settle_seq=_text(head[1] or b"0"))
    total = _int(head[2])
    for first in range(0, total, _CHUNK):
        indexes = list(range(first, min(total, first + _CHUNK)))
        states = yield Command(
            ("HMGET", keys.batches, *(f"{kind}:{i}" for i in indexes for kind in ("s", "n")))
        )
        failed = yield Command(("HMGET", keys.failed, *indexes))
        for offset, idx in enumerate(indexes):
            batch_state = _text(states[2 * offset] or b"")
            if batch_state == "PENDING":
                plan.queued_records += _int(states[2 * offset + 1])
            elif batch_state in ("DEAD", "ENDED"):
                plan.in_place.append(idx)
            if failed[offset]:
                kept: list[ProcessedRecord] = []
                taken = 0
                for record in decode_failed(failed[offset]):
                    if retried(record, include_invalid):
                        plan.chosen.append(record)
                        taken += 1
                    else:
                        kept.append(record)
                if taken:
                    plan.rewritten.append((idx, encode_failed(kept) if kept else b"", taken))
    return plan, max(1, _int(head[3])), decode_columns(head[4] or b"")


def _line_table(lines: list[int | None]) -> list[int]:
    """The records' source lines as a batch's line table (see ``_parsers.line_at``);
    empty when any record has no line."""
    known = [line for line in lines if line is not None]
    if not known or len(known) < len(lines):
        return []
    table = [0, known[0]]
    for position in range(1, len(known)):
        if known[position] != known[position - 1] + 1:
            table += (position, known[position])
    return table


def _new_batches(
    chosen: list[ProcessedRecord], batch_size: int, columns: list[str]
) -> Iterator[tuple[bytes, int, bytes]]:
    """The chosen records as batches: (payload, count, source indexes as JSON)."""
    chosen = sorted(chosen, key=lambda r: r.index)
    for start in range(0, len(chosen), batch_size):
        part = chosen[start : start + batch_size]
        rows = [[r.raw.get(c, ABSENT) for c in columns] for r in part]
        lines = _line_table([r.line for r in part])
        yield (
            encode_batch(StoredBatch(0, rows, {}, lines)),
            len(part),
            _json.encode([r.index for r in part]),
        )


def redrive_flow(store: Store, job_id: str, include_invalid: bool = False) -> Flow[int]:
    """Redrives a finished job; returns how many records run in the new attempt
    (0, and nothing changed, when there is nothing to run)."""
    check_job_id(job_id)
    if not isinstance(include_invalid, bool):
        raise TypeError("include_invalid must be a bool")
    request = uuid.uuid4().hex
    for _ in range(_ATTEMPTS):
        plan, batch_size, columns = yield from _read(store, job_id, include_invalid)
        batches = list(_new_batches(plan.chosen, batch_size, columns))
        args: list[Any] = [
            plan.settle_seq,
            plan.queued_records,
            len(plan.chosen),
            ",".join(map(str, plan.in_place)),
            len(plan.rewritten),
            len(batches),
        ]
        for idx, kept, taken in plan.rewritten:
            args += [idx, kept, taken]
        for payload, count, indexes in batches:
            args += [payload, count, indexes]
        reply = yield store.redrive_call(job_id, request, *args)
        code = Reply(_text(reply[0]))
        if code == Reply.OK:
            return int(reply[1])
        if code == Reply.JOB_NOT_FOUND:
            raise job_not_found(job_id)
        if code == Reply.JOB_NOT_PROCESSING:
            raise ConfigurationError(
                f"job {job_id!r} cannot be redriven: it is {_text(reply[1])} (only a finished "
                "job, COMPLETED or FAILED, can be)"
            )
        # STALE: a late commit came in between; read again.
    raise RedisBatchError(f"job {job_id!r}: commits kept coming in; redrive not applied")


# ---------------------------------------------------------------- failed_records in order


class _Range:
    """The failed records of one run of batches (the prepare's, or one redrive's
    new batches), each run in source order, read a chunk at a time."""

    def __init__(self, first: int, last: int) -> None:
        self.next, self.last = first, last
        self.buffer: collections.deque[ProcessedRecord] = collections.deque()

    @property
    def unread(self) -> bool:
        return self.next < self.last


def _ranges(store: Store, job_id: str, total: int, out: list[_Range]) -> Flow[list[Any]]:
    """Finds the job's runs of batches (attempt_batches: where each redrive's
    new batches start) into ``out``; yields no record."""
    starts = yield Command(("HGET", store.keys(job_id).job, "attempt_batches"))
    bounds = [0, *(int(s) for s in _text(starts or b"").split(",") if s), total]
    out.extend(_Range(a, b) for a, b in itertools.pairwise(bounds) if a < b)
    return []


def _merged(store: Store, job_id: str, ranges: list[_Range]) -> Flow[list[ProcessedRecord]]:
    """Fills the empty buffers, then hands out records in source order until a
    buffer that has more to read runs empty."""
    for r in ranges:
        while not r.buffer and r.unread:
            last = min(r.last, r.next + _CHUNK)
            r.buffer.extend((yield from store.failed_chunk(job_id, r.next, last)))
            r.next = last
    out: list[ProcessedRecord] = []
    while True:
        filled = [r for r in ranges if r.buffer]
        if not filled:
            return out
        lowest = min(filled, key=lambda r: r.buffer[0].index)
        out.append(lowest.buffer.popleft())
        if not lowest.buffer and lowest.unread:
            return out


def failed_flows(
    store: Store, job_id: str, total_batches: int
) -> Iterator[Flow[list[ProcessedRecord]]]:
    """Flows whose results, one after the other, are the job's failed records in
    source order: the latest outcome of each record. Without a redrive, one
    chunk of batches per flow; after one, the runs of batches merged."""
    ranges: list[_Range] = []
    yield _ranges(store, job_id, total_batches, ranges)
    if len(ranges) == 1:
        only = ranges[0]
        for first in range(only.next, only.last, _CHUNK):
            yield store.failed_chunk(job_id, first, min(only.last, first + _CHUNK))
        return
    while any(r.buffer or r.unread for r in ranges):
        yield _merged(store, job_id, ranges)

"""The job store: every state change of a job as a script call, and every
script reply turned into a typed result in one place.

Methods return flows (generators yielding effects, see ``_effects``), so the
sync and async facades share them: only the driver differs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import msgspec

from ._batcher import EncodedBatch
from ._codec import (
    ReceivedBatch,
    decode_batch,
    decode_columns,
    decode_failed,
    iter_raw_records,
)
from ._effects import Command, Flow, Interrupted, Pipeline, Reads
from ._exceptions import JobExistsError
from ._keys import CONSUMER_GROUP, JobKeys, check_namespace, check_worker_id, jobs_index_key
from ._results import JobStatus, JobSummary, ProcessedRecord
from ._scripts import Reply, ScriptCall, scripts

__all__ = [
    "FINAL_STATES",
    "Claim",
    "CommitReply",
    "Store",
    "StoreReply",
    "dead_letter_reason",
]

FINAL_STATES: Final = frozenset(("COMPLETED", "FAILED", "ABORTED"))
#: Entries of the namespace's job index checked per create (the oldest ones and
#: as many at random), to drop jobs whose keys expired: bounded work per job.
PRUNE_CHUNK: Final = 8
#: A claimed batch's records longer than this (bytes) are read with a plain
#: HGET right after the claim instead of coming back in its reply. A value
#: that redis.call hands a script costs the server ~1.3 us per KB (4 MB, the
#: largest batch, would hold it ~5 ms); a plain read costs it a few us, and
#: the worker one more round trip (~25-30 us of its CPU on loopback). From
#: here on the server, which every worker shares and whose one core caps a
#: job's rate, saves ~20 us or more per batch for about as much worker CPU;
#: from ~32 KB on the read also costs less in all. A 500-row batch of the
#: benchmarks' users CSV is ~30 KB (docs/benchmarks.md: server 0.85x, workers
#: 1.05x).
INLINE_RECORDS: Final = 16 * 1024
_json: Final = msgspec.json.Decoder(list[tuple[int, int, int]])
_indexes: Final = msgspec.json.Decoder(list[int])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    return int(value) if value not in (None, b"", "") else 0


def _request_id() -> str:
    """A fresh id naming one state-changing call: a repeat of the call (redis-py
    re-sending it after a lost reply) carries the same id, and the script
    answers it as it answered the first."""
    return uuid.uuid4().hex


def _float(value: Any) -> float | None:
    return float(value) if value not in (None, b"", "") else None


def _summary(fields: Sequence[Any]) -> JobSummary:
    """A JobSummary from the jobSummary include's reply."""
    state, total, processed, failed, created, completed = fields
    total_i, processed_i, failed_i = _int(total), _int(processed), _int(failed)
    started = _float(created) or 0.0
    ended = _float(completed) or started
    return JobSummary(
        total=total_i,
        processed=processed_i,
        failed=failed_i,
        skipped=max(0, total_i - processed_i - failed_i),
        elapsed_ms=max(0.0, (ended - started) * 1000.0),
        state=_text(state),
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim's reply. ``batch`` is set when a batch was claimed."""

    reason: Reply
    state: str | None = None
    batch_index: int | None = None
    token: str = ""
    attempt: int = 0
    batch: ReceivedBatch | None = None
    columns: tuple[str, ...] = ()
    total_records: int = 0
    dead_lettered: tuple[tuple[int, int], ...] = ()  # (batch index, attempts)
    finalized: JobSummary | None = None
    duplicates: tuple[tuple[int, int, int], ...] = ()  # (position, unique field no., first)
    indexes: tuple[int, ...] = ()  # a redriven batch: source index of each position


@dataclass(frozen=True, slots=True)
class CommitReply:
    accepted: bool
    reason: Reply
    finalized: JobSummary | None = None
    next_claim: Claim | None = None  # the worker's next claim, when the commit made one
    # The worker was stopped while the next claim's records were read (the
    # commit landed): the batch claimed is held, unknown to the caller.
    next_unread: bool = False


@dataclass(frozen=True, slots=True)
class NextClaim:
    """A commit's request to claim its worker's next batch in the same call.
    ``request`` names that claim: created once, so that a commit sent again
    repeats the claim instead of taking a second batch."""

    worker_id: str
    request: str = field(default_factory=_request_id)


@dataclass(frozen=True, slots=True)
class StoreReply:
    """The outcome of storing batches: the job's state and unclaimed batches after."""

    stopped_state: str | None  # set when the job was aborted/failed meanwhile
    unclaimed: int


@dataclass(frozen=True, slots=True)
class ResumePoint:
    state: str
    sealed: bool
    batch_size: int
    total_batches: int
    error: str | None = None
    sealed_by: str | None = None
    max_batch_bytes: int | None = None  # None: not kept (a job created without it)


@dataclass(frozen=True, slots=True)
class Sealed:
    total_records: int
    total_batches: int
    state: str | None
    finalized: JobSummary | None
    sealed_elsewhere: bool = False  # another prepare of the job sealed it


class Store:
    """The job store of one namespace, with the worker settings scripts need."""

    def __init__(
        self,
        namespace: str,
        *,
        stale_timeout: float,
        max_batch_attempts: int,
        retention: float | None,
        tolerated_failure_count: int | None = None,
        tolerated_failure_percentage: float | None = None,
        inline_records: int | None = INLINE_RECORDS,
    ) -> None:
        self.namespace = check_namespace(namespace)
        #: The longest records a claim returns in its reply ("" for no limit).
        self.inline_records = "" if inline_records is None else str(inline_records)
        self.index_key = jobs_index_key(namespace)
        self.stale_ms = max(1, round(stale_timeout * 1000))
        self.max_batch_attempts = max_batch_attempts
        self.retention_ms = "" if retention is None else str(round(retention * 1000))
        count, percentage = tolerated_failure_count, tolerated_failure_percentage
        #: The failure thresholds, as the scripts take them ("" for none).
        self.tolerated = (
            "" if count is None else str(count),
            "" if percentage is None else repr(float(percentage)),
        )
        self._scripts = scripts()

    def keys(self, job_id: str) -> JobKeys:
        return JobKeys.of(self.namespace, job_id)

    def _call(
        self, name: str, keys: Sequence[str], *args: Any, before: tuple[Any, ...] = ()
    ) -> ScriptCall:
        script = self._scripts[name]
        return ScriptCall(script, tuple(keys[: script.numkeys]), args, before)

    # ------------------------------------------------------------ prepare

    def create(
        self,
        job_id: str,
        batch_size: int,
        *,
        nonce: str | None = None,
        max_batch_bytes: int | None = None,
    ) -> Flow[float]:
        """Creates the job; ``nonce`` (a fresh one by default) names this creation:
        a repeat of it is answered, not refused, and the job's fencing tokens
        start with it. ``batch_size`` and ``max_batch_bytes`` are kept for a
        resume's check. Prunes a few expired jobs from the namespace's index."""
        keys = self.keys(job_id)
        reply = yield self._call(
            "createJob",
            (keys.job, keys.queue),
            CONSUMER_GROUP,
            batch_size,
            nonce or _request_id(),
            *self.tolerated,
            "" if max_batch_bytes is None else max_batch_bytes,
        )
        if _text(reply[0]) == Reply.JOB_EXISTS:
            raise JobExistsError(job_id)
        created_at = float(reply[1])
        yield Command(("ZADD", self.index_key, created_at, job_id))
        yield from self.prune_index(exclude=job_id)
        return created_at

    def prune_index(self, *, exclude: str | None = None) -> Flow[int]:
        """Drops from the namespace's job index the jobs whose keys are gone
        (expired after their retention): checks the PRUNE_CHUNK oldest entries
        and PRUNE_CHUNK random ones, in one pipeline. Returns how many it dropped.

        Plain commands on the index (it sits outside every job's hash tag);
        one script call per checked job, each on its own tag."""
        oldest = yield Command(("ZRANGE", self.index_key, 0, PRUNE_CHUNK - 1))
        sampled = yield Command(("ZRANDMEMBER", self.index_key, PRUNE_CHUNK))
        candidates = sorted({_text(j) for j in (*oldest, *(sampled or ()))} - {exclude})
        if not candidates:
            return 0
        exists = yield Pipeline(
            tuple(self._call("jobExists", (self.keys(job).job,)) for job in candidates)
        )
        gone = [job for job, found in zip(candidates, exists, strict=True) if not int(found)]
        if gone:
            yield Command(("ZREM", self.index_key, *gone))
        return len(gone)

    def store_batches(self, job_id: str, batches: Iterable[EncodedBatch]) -> Flow[StoreReply]:
        replies = yield self.store_pipeline(job_id, batches)
        return self.store_reply(replies)

    def store_pipeline(self, job_id: str, batches: Iterable[EncodedBatch]) -> Pipeline:
        """The storeBatch calls for these batches, in one pipeline; each batch's
        payload goes ahead of its call as a plain HSETNX (see storeBatch.lua)."""
        keys = self.keys(job_id)
        return Pipeline(
            tuple(
                self._call(
                    "storeBatch",
                    (keys.job, keys.queue, keys.records, keys.batches, keys.unique),
                    CONSUMER_GROUP,
                    b.index,
                    b.count,
                    b.columns,
                    b.unique_entries,
                    b.first_index,
                    before=("HSETNX", keys.records, b.index, b.payload),
                )
                for b in batches
            )
        )

    @staticmethod
    def store_reply(replies: Sequence[Any]) -> StoreReply:
        unclaimed = 0
        for reply in replies:
            code = _text(reply[0])
            if code != Reply.OK:
                return StoreReply(
                    stopped_state=_text(reply[1]) if len(reply) > 1 else "DELETED", unclaimed=0
                )
            unclaimed = int(reply[2])
        return StoreReply(stopped_state=None, unclaimed=unclaimed)

    def seal(self, job_id: str, *, nonce: str | None = None) -> Flow[Sealed]:
        """Seals the job; ``nonce`` names the prepare that seals it (a job
        sealed by another prepare answers ``sealed_elsewhere``)."""
        reply = yield self._call(
            "sealJob", self.keys(job_id).all, self.retention_ms, nonce or _request_id()
        )
        code = _text(reply[0])
        if code == Reply.JOB_EXISTS:
            return Sealed(0, 0, None, None, sealed_elsewhere=True)
        if code != Reply.OK:
            return Sealed(0, 0, _text(reply[1]) if len(reply) > 1 else None, None)
        return Sealed(
            total_records=int(reply[3]),
            total_batches=int(reply[4]),
            state=_text(reply[2]),
            finalized=_summary(reply[5]) if int(reply[1]) else None,
        )

    def end(self, job_id: str, state: str, error: str = "") -> Flow[bool]:
        reply = yield self._call(
            "endJob", self.keys(job_id).all, state, error, self.retention_ms, _request_id()
        )
        return bool(int(reply))

    # ------------------------------------------------------------ workers

    def claim(self, job_id: str, worker_id: str) -> Flow[Claim]:
        check_worker_id(worker_id)
        keys = self.keys(job_id)
        dead: tuple[tuple[int, int], ...] = ()
        while True:
            reply = yield self._call(
                "claimBatch",
                keys.all,
                CONSUMER_GROUP,
                worker_id,
                self.stale_ms,
                self.max_batch_attempts,
                self.retention_ms,
                _request_id(),
                *self.tolerated,
                self.inline_records,
            )
            claim = yield from self._received(keys, reply)
            if dead:  # reported by the claim that lost its batch, and by no other
                claim = replace(claim, dead_lettered=dead + claim.dead_lettered)
            if claim.reason != Reply.OK or claim.batch is not None:
                return claim
            dead = claim.dead_lettered

    def _received(self, keys: JobKeys, reply: Sequence[Any]) -> Flow[Claim]:
        """``parse_claim``, after reading the records of a claimed batch that the
        reply left out (their length in their place) with a plain HGET. When they
        are gone, or the batch has a token other than the claim's (it was taken
        from the caller before it read them: only after the stale timeout), an
        OK claim with no batch: it still carries the batches the claim
        dead-lettered before it took that one, which no other reply reports."""
        if _text(reply[0]) == Reply.OK and type(reply[4]) is int:
            idx, token = reply[1], reply[2]
            records, held = yield Reads(
                (("HGET", keys.records, idx), ("HGET", keys.batches, f"t:{idx}"))
            )
            if records is None or held != token:
                return Claim(reason=Reply.OK, dead_lettered=_pairs(reply[7]))
            reply = (*reply[:4], records, *reply[5:])
        return self.parse_claim(reply)

    @staticmethod
    def parse_claim(reply: Sequence[Any]) -> Claim:
        code = Reply(_text(reply[0]))
        if code == Reply.OK:
            _, idx, token, attempt, payload, columns, total, dead, duplicates, indexes = reply
            return Claim(
                reason=code,
                batch_index=int(idx),
                token=_text(token),
                attempt=int(attempt),
                batch=decode_batch(payload),
                columns=tuple(decode_columns(columns)),
                total_records=int(total),
                dead_lettered=_pairs(dead),
                duplicates=tuple(_json.decode(duplicates)) if duplicates else (),
                indexes=tuple(_indexes.decode(indexes)) if indexes else (),
            )
        if code == Reply.NO_PENDING_BATCHES:
            _, state, finalized, dead, summary = reply
            return Claim(
                reason=code,
                state=_text(state),
                dead_lettered=_pairs(dead),
                finalized=_summary(summary) if int(finalized) else None,
            )
        if code == Reply.JOB_NOT_PROCESSING:
            return Claim(reason=code, state=_text(reply[1]))
        return Claim(reason=code)

    def heartbeat_call(self, job_id: str, worker_id: str, idx: int, token: str) -> ScriptCall:
        keys = self.keys(job_id)
        return self._call(
            "heartbeatBatch",
            (keys.queue, keys.batches, keys.leases, keys.workers),
            CONSUMER_GROUP,
            check_worker_id(worker_id),
            idx,
            token,
        )

    def commit(
        self,
        job_id: str,
        idx: int,
        token: str,
        *,
        processed: int,
        failed: int,
        batch_state: str,
        failed_payload: bytes,
        remainder: bytes = b"",
        remainder_count: int = 0,
        remainder_duplicates: bytes = b"",
        claim_next: NextClaim | None = None,
    ) -> Flow[CommitReply]:
        """Commits a batch; with ``remainder``, settles part of it and hands the
        rest back to the queue (see commitBatch.lua). With ``claim_next`` (a
        full commit), the same call claims the worker's next batch: the reply's
        ``next_claim``, unless the commit was refused."""
        claiming = () if claim_next is None else (
            check_worker_id(claim_next.worker_id),
            claim_next.request,
            self.stale_ms,
            self.max_batch_attempts,
            self.inline_records,
        )  # fmt: skip
        keys = self.keys(job_id)
        reply = yield self._call(
            "commitBatch",
            keys.all,
            CONSUMER_GROUP,
            idx,
            token,
            processed,
            failed,
            batch_state,
            failed_payload,
            self.retention_ms,
            remainder,
            remainder_count,
            remainder_duplicates,
            *self.tolerated,
            *claiming,
        )
        code = Reply(_text(reply[0]))
        if code != Reply.OK:
            return CommitReply(accepted=False, reason=code)
        # A next batch taken from the worker before it read its records is no
        # claim of its own: the worker claims anew (after reporting the batches
        # that claim dead-lettered, if any: a claim with no batch).
        next_claim, unread = None, False
        if len(reply) > 4:
            try:
                next_claim = yield from self._received(keys, reply[4])
            except Interrupted:
                # Stopped during the read: the commit landed all the same; the
                # batch claimed is the caller's to give back.
                unread = True
        if (
            next_claim is not None
            and next_claim.reason == Reply.OK
            and next_claim.batch is None
            and not next_claim.dead_lettered
        ):
            next_claim = None
        return CommitReply(
            accepted=True,
            reason=code,
            finalized=_summary(reply[3]) if int(reply[1]) else None,
            next_claim=next_claim,
            next_unread=unread,
        )

    def release(self, job_id: str, idx: int, worker_id: str) -> Flow[bool]:
        reply = yield self.release_call(job_id, idx, worker_id)
        return bool(int(reply))

    def reclaim_stale(self, job_id: str, timeout: float) -> Flow[int]:
        keys = self.keys(job_id)
        reply = yield self._call(
            "reclaimStale",
            (keys.job, keys.queue, keys.batches, keys.leases),
            CONSUMER_GROUP,
            max(0, round(timeout * 1000)),
            _request_id(),
        )
        return int(reply)

    # ------------------------------------------------------------ control

    def pause(self, job_id: str) -> Flow[bool]:
        reply = yield self._call("pauseJob", (self.keys(job_id).job,), _request_id())
        return bool(int(reply))

    def resume(self, job_id: str) -> Flow[tuple[bool, JobSummary | None]]:
        reply = yield self._call(
            "resumeJob", self.keys(job_id).all, self.retention_ms, _request_id()
        )
        resumed = bool(int(reply[0]))
        finalized = _summary(reply[2]) if resumed and int(reply[1]) else None
        return resumed, finalized

    def delete(self, job_id: str) -> Flow[bool]:
        keys = self.keys(job_id)
        # UNLINK: a job of millions of records is freed in the background
        # instead of blocking the server.
        removed = yield Command(("UNLINK", *keys.all))
        yield Command(("ZREM", self.index_key, job_id))
        return bool(int(removed))

    # ------------------------------------------------------------ reading

    def status(self, job_id: str) -> Flow[JobStatus | None]:
        keys = self.keys(job_id)
        reply = yield self._call(
            "jobStatus", (keys.job, keys.queue, keys.workers), CONSUMER_GROUP, self.stale_ms
        )
        if not reply:
            return None
        claimed, now_ms, workers = int(reply[0]), int(reply[1]), int(reply[2])
        fields = {_text(reply[i]): reply[i + 1] for i in range(3, len(reply), 2)}
        return job_status(job_id, claimed, now_ms / 1000.0, workers, fields)

    def redrive_call(self, job_id: str, request: str, *args: Any) -> ScriptCall:
        """The redriveJob call (see ``_redrive``)."""
        return self._call("redriveJob", self.keys(job_id).all, CONSUMER_GROUP, request, *args)

    def failed_chunk(self, job_id: str, first: int, last: int) -> Flow[list[ProcessedRecord]]:
        """Failed records of batches ``first``..``last - 1``, in source order."""
        keys = self.keys(job_id)
        indexes = list(range(first, last))
        failed = yield Command(("HMGET", keys.failed, *indexes))
        states = yield Command(
            ("HMGET", keys.batches, *(f"{kind}:{i}" for i in indexes for kind in ("s", "a")))
        )
        records: list[ProcessedRecord] = []
        columns: list[str] | None = None
        for offset, idx in enumerate(indexes):
            state, attempts = states[2 * offset], states[2 * offset + 1]
            if failed[offset]:
                records.extend(decode_failed(failed[offset]))
            if state is not None and _text(state) == "DEAD":
                if columns is None:
                    columns = decode_columns((yield Command(("HGET", keys.job, "columns"))) or b"")
                payload = yield Command(("HGET", keys.records, idx))
                if payload:
                    mapped = yield Command(("HGET", keys.batches, f"x:{idx}"))
                    records.extend(
                        _dead_lettered(
                            decode_batch(payload),
                            columns,
                            _int(attempts),
                            _indexes.decode(mapped) if mapped else None,
                        )
                    )
        if any(records[i].index > records[i + 1].index for i in range(len(records) - 1)):
            records.sort(key=lambda r: r.index)  # a dead batch's parts, or a redriven batch
        return records

    def resume_point(self, job_id: str) -> Flow[ResumePoint | None]:
        """What an interrupted prepare left: state, seal, batch size, batches stored."""
        fields = yield Command(
            (
                "HMGET",
                self.keys(job_id).job,
                "state",
                "sealed",
                "batch_size",
                "total_batches",
                "error",
                "sealed_by",
                "max_batch_bytes",
            )
        )
        if fields[0] is None:
            return None
        return ResumePoint(
            state=_text(fields[0]),
            sealed=_text(fields[1] or b"0") == "1",
            batch_size=_int(fields[2]),
            total_batches=_int(fields[3]),
            error=None if fields[4] is None else _text(fields[4]),
            sealed_by=None if fields[5] is None else _text(fields[5]),
            max_batch_bytes=None if fields[6] is None else _int(fields[6]),
        )

    def reclaimable_in(self, job_id: str) -> Flow[float | None]:
        """Seconds until the stalest claimed batch of the job may be reclaimed
        under this store's stale timeout (0.0 when it already may), or None when
        no batch is claimed. For a worker that waits on batches held by others."""
        head = yield Command(("ZRANGE", self.keys(job_id).leases, 0, 0, "WITHSCORES"))
        if not head:
            return None
        seconds, micros = yield Command(("TIME",))
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        heard_ms = float(head[0][1]) if isinstance(head[0], list | tuple) else float(head[1])
        return max(0.0, (heard_ms + self.stale_ms - now_ms) / 1000.0)

    def total_batches(self, job_id: str) -> Flow[int]:
        value = yield Command(("HGET", self.keys(job_id).job, "total_batches"))
        return _int(value)

    # ------------------------------------------------------------ worker reads

    def release_call(self, job_id: str, idx: int, worker_id: str) -> ScriptCall:
        """The release of a batch, for a driver whose flow died holding it."""
        keys = self.keys(job_id)
        return self._call(
            "releaseBatch",
            (keys.job, keys.queue, keys.batches, keys.leases),
            CONSUMER_GROUP,
            idx,
            check_worker_id(worker_id),
            _request_id(),
        )

    def job_state(self, job_id: str) -> Flow[str | None]:
        """The job's state, or None for a job that does not exist."""
        value = yield Command(("HGET", self.keys(job_id).job, "state"))
        return None if value is None else _text(value)

    def held_batches(self, job_id: str, limit: int = 100) -> Flow[list[tuple[str, int]]]:
        """(holder, idle ms) of up to ``limit`` claimed batches: what a waiting
        worker logs."""
        reply = yield Command(
            ("XPENDING", self.keys(job_id).queue, CONSUMER_GROUP, "-", "+", limit),
            {"parse_detail": True},  # redis-py's parser for the range form
        )
        return [(_text(e["consumer"]), int(e["time_since_delivered"])) for e in reply or ()]

    def held_by(self, job_id: str, worker_id: str, limit: int = 10) -> Flow[list[int]]:
        """The batches claimed under ``worker_id`` (a claim whose reply was lost
        in a connection error is among them)."""
        queue = self.keys(job_id).queue
        pending = yield Command(
            ("XPENDING", queue, CONSUMER_GROUP, "-", "+", limit, worker_id), {"parse_detail": True}
        )
        indexes: list[int] = []
        for entry in pending or ():
            found = yield Command(("XRANGE", queue, entry["message_id"], entry["message_id"]))
            if found:
                fields = {_text(k): v for k, v in found[0][1].items()}
                indexes.append(int(fields["b"]))
        return indexes


def _pairs(flat: Any) -> tuple[tuple[int, int], ...]:
    if not flat:
        return ()
    values = [int(v) for v in flat]
    return tuple(zip(values[::2], values[1::2], strict=True))


def dead_letter_reason(attempts: int) -> str:
    """Why a batch was dead-lettered: after ``attempts`` deliveries, or, with
    0, because its records were gone from Redis."""
    if attempts == 0:
        return "batch lost: its records are gone from Redis (evicted, or deleted)"
    return f"batch dead-lettered after {attempts} attempts"


def _dead_lettered(
    batch: ReceivedBatch, columns: list[str], attempts: int, indexes: list[int] | None = None
) -> list[ProcessedRecord]:
    message = dead_letter_reason(max(1, attempts - 1))
    return [
        ProcessedRecord(
            index=index if indexes is None else indexes[index],
            raw=raw,
            parsed=raw,
            status="failed",
            errors=[],
            processing_error=message,
            retry_count=0,
            line=batch.line_of(index - batch.first_index),
        )
        for index, raw, _ in iter_raw_records(batch, columns)
    ]


#: Seconds of commits the status's rate looks back on.
RATE_WINDOW: Final = 60.0


def _rate(fields: dict[str, Any], now: float, final: bool) -> float | None:
    """Records settled per second over the last minute of commits (the job's
    per-second counts, see countSettled.lua); None before the first commit. For
    a job that ended, the minute before its end."""
    counts: list[tuple[int, int]] = []
    for name, value in fields.items():
        if name.startswith("r:"):
            second, _, count = _text(value).partition(":")
            counts.append((int(second), int(count)))
    if not counts:
        return None
    end = now
    if final:
        end = _float(fields.get("completed_at")) or max(s for s, _ in counts) + 1.0
    began = (
        _float(fields.get("attempt_started_at"))
        or _float(fields.get("started_at"))
        or min(s for s, _ in counts)
    )
    start = max(end - RATE_WINDOW, began)
    span = max(1.0, end - start)
    settled = sum(c for s, c in counts if start - 1 < s <= end)
    return settled / span


def job_status(
    job_id: str, claimed: int, now: float, workers: int, fields: dict[str, Any]
) -> JobStatus:
    """A JobStatus from the jobStatus script's reply."""
    state = _text(fields["state"])
    total_batches = _int(fields.get("total_batches"))
    completed = _int(fields.get("completed_batches"))
    failed = _int(fields.get("failed_batches"))
    total = _int(fields.get("total_records"))
    processed_records = _int(fields.get("processed_records"))
    failed_records = _int(fields.get("failed_records"))
    error = fields.get("error")
    final = state in FINAL_STATES
    rate = _rate(fields, now, final)
    eta: float | None = None
    if final:
        eta = 0.0
    elif state == "PROCESSING" and rate:
        eta = max(0, total - processed_records - failed_records) / rate
    return JobStatus(
        job_id=job_id,
        state=state,
        total_records=total,
        total_batches=total_batches,
        pending_batches=max(0, total_batches - completed - failed - claimed),
        processing_batches=claimed,
        completed_batches=completed,
        failed_batches=failed,
        processed_records=processed_records,
        failed_records=failed_records,
        is_complete=final,
        created_at=_float(fields.get("created_at")) or 0.0,
        started_at=_float(fields.get("started_at")),
        completed_at=_float(fields.get("completed_at")),
        error=None if error is None else _text(error),
        attempt=_int(fields.get("attempt")) or 1,
        rate=rate,
        eta=eta,
        workers=0 if final else workers,
    )

"""Model-based test of the job store: every script a job's life goes through
(create, store, seal, claim, heartbeat, commit in full or in part, a commit
claiming its worker's next batch, a re-sent commit, a late commit, release,
reclaim, a lease gone stale, pause, resume, abort, delete and create again
under the same id), driven in random order by hypothesis against a plain
Python model of what each call must answer and what the job must hold
afterwards.

The flows of ``Store`` are run by the sync driver, as the facades run them.
The model does not guess which batch a claim picks (the server decides); it
checks that the batch was claimable and then follows the server's choice.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from redisbatch._batcher import EncodedBatch
from redisbatch._codec import StoredBatch, encode_batch, encode_columns
from redisbatch._keys import CONSUMER_GROUP
from redisbatch._scripts import Reply
from redisbatch._store import Claim, NextClaim, Store
from redisbatch._sync import SyncDriver

JOB = "model-job"
WORKERS = ("w0", "w1", "w2")
MAX_ATTEMPTS = 3
RETENTION = 3600.0  # long enough never to expire during a run, so TTLs can be checked
FINAL = ("COMPLETED", "FAILED", "ABORTED")
SETTLED = ("COMPLETED", "FAILED", "DEAD", "ENDED")
#: Which of the claims made so far a rule acts on: drawn as a number (the list
#: grows with the server's choices, which hypothesis cannot sample from).
PICK = st.integers(min_value=0, max_value=10**6)
#: Whether a call is made by a holder that may have lost its batch (1 in 4).
LATE = st.integers(min_value=0, max_value=3).map(lambda n: n == 0)
#: Job-wide controls (pause, resume, abort, delete) happen 1 time in 3 they are drawn.
RARE = st.integers(min_value=0, max_value=2).map(lambda n: n == 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Batch:
    """The model of one batch: where its unsettled records start, how many."""

    first: int
    size: int
    status: str = "PENDING"  # PENDING, HELD, COMPLETED, FAILED, DEAD, ENDED
    token: str | None = None  # the holder's token while HELD
    worker: str | None = None  # the holder while HELD
    attempts: int = 0
    processed: int = 0
    failed: int = 0
    stale: bool = False  # its lease was made stale (score 0) while HELD
    handed_back_by: str | None = None  # the token of its last hand-back


@dataclass
class ClaimSeen:
    """A claim handed out by the server, kept for late and repeated calls."""

    incarnation: int
    worker: str
    idx: int
    token: str


@dataclass
class Applied:
    """A commit the server applied: its arguments and what it answered."""

    incarnation: int
    idx: int
    token: str
    processed: int
    failed: int
    batch_state: str
    remainder: bytes
    remainder_count: int
    finalized: bool
    claim_next: NextClaim | None = None  # the commit also claimed its worker's next batch
    claimed: ClaimSeen | None = None  # ... and got this one
    claims_before: int = 0  # its worker's claim calls up to and including that one


@dataclass
class Job:
    """The model of one incarnation of the job id."""

    incarnation: int
    state: str = "PREPARING"
    sealed: bool = False
    batches: list[Batch] = field(default_factory=list)
    finalizations: int = 0  # calls that answered "finalized" (first answers only)
    next_record: int = 0


def machine_for(client: redis.Redis) -> type[RuleBasedStateMachine]:
    class StoreModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.namespace = f"m{uuid.uuid4().hex[:10]}"
            self.store = Store(
                self.namespace,
                stale_timeout=60.0,
                max_batch_attempts=MAX_ATTEMPTS,
                retention=RETENTION,
            )
            self.run = SyncDriver(client).run
            self.keys = self.store.keys(JOB)
            self.claims: list[ClaimSeen] = []
            self.claim_calls: dict[str, int] = dict.fromkeys(WORKERS, 0)
            self.applied: list[Applied] = []
            self.incarnations = 0
            self.job: Job | None = None

        # ------------------------------------------------------------ helpers

        def _create(self, batch_size: int) -> None:
            self.run(self.store.create(JOB, batch_size))
            self.incarnations += 1
            self.job = Job(self.incarnations)

        def _finalizes(self, job: Job) -> bool:
            """Whether the job is due to finalize now (as finalizeIfDone decides)."""
            done = all(b.status in ("COMPLETED", "FAILED", "DEAD") for b in job.batches)
            return job.state == "PROCESSING" and job.sealed and done

        def _finalize(self, job: Job) -> None:
            failed = any(b.status in ("FAILED", "DEAD") for b in job.batches)
            job.state = "FAILED" if failed else "COMPLETED"
            job.finalizations += 1

        def _pick(self, pick: int, late: bool) -> ClaimSeen | None:
            """A claim still held (or, when ``late``, any claim made so far)."""
            job = self.job
            live = [
                c
                for c in self.claims
                if job is not None
                and c.incarnation == job.incarnation
                and job.batches[c.idx].token == c.token
            ]
            choices = self.claims if late or not live else live
            return choices[pick % len(choices)] if choices else None

        def _current(self, seen: ClaimSeen) -> Batch | None:
            """The model batch a claim names, if it is of the current incarnation."""
            job = self.job
            if job is None or seen.incarnation != job.incarnation:
                return None
            return job.batches[seen.idx]

        # ------------------------------------------------------------ rules

        @initialize(
            batch_size=st.integers(min_value=1, max_value=4),
            sizes=st.lists(st.integers(min_value=1, max_value=4), max_size=6),
            seal=st.booleans(),
            inline=st.sampled_from(["", "0", "16"]),
        )
        def create(self, batch_size: int, sizes: list[int], seal: bool, inline: str) -> None:
            # Claims return the records, or leave all or the longer ones for a read.
            self.store.inline_records = inline
            self._create(batch_size)
            for size in sizes:
                self.store_batch(size)
            if seal:
                self.seal()

        @rule(size=st.integers(min_value=1, max_value=4))
        def store_batch(self, size: int) -> None:
            job = self.job
            if job is None or job.sealed or job.state not in ("PREPARING", "PAUSED"):
                return
            idx = len(job.batches)
            rows = [[job.next_record + i] for i in range(size)]
            encoded = EncodedBatch(
                index=idx,
                first_index=job.next_record,
                count=size,
                payload=encode_batch(StoredBatch(job.next_record, rows)),
                columns=encode_columns(["n"]) if idx == 0 else b"",
                unique_entries=b"",
            )
            reply = self.run(self.store.store_batches(JOB, [encoded]))
            assert reply.stopped_state is None
            job.batches.append(Batch(first=job.next_record, size=size))
            job.next_record += size

        @rule()
        def seal(self) -> None:
            job = self.job
            if job is None or job.sealed:
                return
            sealed = self.run(self.store.seal(JOB))
            if job.state in ("PREPARING", "PAUSED"):
                assert sealed.state is not None and not sealed.sealed_elsewhere
                job.sealed = True
                if job.state == "PREPARING":
                    job.state = "PROCESSING"
                assert sealed.total_batches == len(job.batches)
                due = self._finalizes(job)
                assert (sealed.finalized is not None) == due, "seal finalized wrongly"
                if due:
                    self._finalize(job)
                    event("seal finalized")
            else:
                assert sealed.state == job.state and sealed.finalized is None

        @rule(workers=st.lists(st.sampled_from(WORKERS), min_size=1, max_size=3))
        def claim(self, workers: list[str]) -> None:
            for worker in workers:
                self._claim(worker)

        def _claim(self, worker: str) -> ClaimSeen | None:
            return self._take_claim(worker, self.run(self.store.claim(JOB, worker)))

        def _take_claim(self, worker: str, claim: Claim) -> ClaimSeen | None:
            """Checks a claim's reply against the model and follows the server's choice."""
            self.claim_calls[worker] += 1
            job = self.job
            if job is None:
                assert claim.reason == Reply.JOB_NOT_FOUND
                return None
            if job.state not in ("PREPARING", "PROCESSING"):
                assert claim.reason == Reply.JOB_NOT_PROCESSING and claim.state == job.state
                return None
            claimable = {
                i
                for i, b in enumerate(job.batches)
                if b.status == "PENDING" or (b.status == "HELD" and b.stale)
            }
            for idx, attempts in claim.dead_lettered:
                batch = job.batches[idx]
                assert idx in claimable, "a batch that was not claimable was dead-lettered"
                assert batch.attempts == MAX_ATTEMPTS == attempts
                claimable.discard(idx)
                batch.status, batch.token, batch.worker = "DEAD", None, None
                batch.failed += batch.size
                event("dead-lettered a batch")
            if claim.reason == Reply.OK:
                assert claim.batch_index is not None and claim.batch is not None
                idx = claim.batch_index
                batch = job.batches[idx]
                assert idx in claimable, f"batch {idx} ({batch.status}) was handed out"
                assert claim.batch.first_index == batch.first
                assert len(claim.batch) == batch.size, "the remainder was not what was handed back"
                assert claim.attempt == batch.attempts + 1 <= MAX_ATTEMPTS
                if batch.status == "HELD":
                    event("claimed a stale lease")
                batch.attempts += 1
                batch.status, batch.token, batch.worker, batch.stale = (
                    "HELD",
                    claim.token,
                    worker,
                    False,
                )
                self.claims.append(ClaimSeen(job.incarnation, worker, idx, claim.token))
                return self.claims[-1]
            assert claim.reason == Reply.NO_PENDING_BATCHES
            assert not claimable, f"batches {claimable} were claimable"
            due = self._finalizes(job)
            assert (claim.finalized is not None) == due, "a claim finalized wrongly"
            if due:
                self._finalize(job)
            return None

        @rule(
            worker=st.sampled_from(WORKERS),
            share=st.floats(0, 1),
            fail_batch=st.booleans(),
            budget_share=st.one_of(st.none(), st.none(), st.floats(0, 0.99)),
            rounds=st.integers(min_value=1, max_value=3),
        )
        def work(
            self,
            worker: str,
            share: float,
            fail_batch: bool,
            budget_share: float | None,
            rounds: int,
        ) -> None:
            """A worker's rounds: claim a batch and commit it (or hand part back);
            with more rounds, each full commit claims the next batch, as
            ``run_worker`` does."""
            seen = self._claim(worker)
            for round_ in range(rounds):
                if seen is None:
                    return
                seen = self._commit(seen, share, fail_batch, budget_share, round_ + 1 < rounds)

        @rule(
            pick=PICK,
            late=LATE,
            share=st.floats(0, 1),
            fail_batch=st.booleans(),
            budget_share=st.one_of(st.none(), st.floats(0, 0.99)),
            chain=st.booleans(),
        )
        def commit(
            self,
            pick: int,
            late: bool,
            share: float,
            fail_batch: bool,
            budget_share: float | None,
            chain: bool,
        ) -> None:
            """A full commit, or (with a budget share) a time-budget hand-back:
            the part done is settled, the rest goes back to the queue. A late
            commit is one by a holder whose batch was taken away since. With
            ``chain``, a full commit also claims its worker's next batch."""
            seen = self._pick(pick, late)
            if seen is not None:
                self._commit(seen, share, fail_batch, budget_share, chain)

        def _commit(
            self,
            seen: ClaimSeen,
            share: float,
            fail_batch: bool,
            budget_share: float | None,
            chain: bool = False,
        ) -> ClaimSeen | None:
            """Commits ``seen``; returns the next batch's claim when ``chain``
            made one (a full commit only)."""
            batch = self._current(seen)
            held = batch is not None and batch.status == "HELD" and batch.token == seen.token
            size = batch.size if held and batch is not None else 1
            done = size if budget_share is None else int(size * budget_share)
            failed = int(done * share)
            state = "FAILED" if fail_batch and failed and budget_share is None else "COMPLETED"
            remainder, remainder_count = b"", 0
            if done < size and batch is not None:
                rest = [[batch.first + i] for i in range(done, size)]
                remainder = encode_batch(StoredBatch(batch.first + done, rest))
                remainder_count = size - done
            if self._applied(seen.token) is not None:
                return None  # a commit of this token was applied: see resend_commit
            claim_next = NextClaim(seen.worker) if chain and not remainder else None
            reply = self.run(
                self.store.commit(
                    JOB,
                    seen.idx,
                    seen.token,
                    processed=done - failed,
                    failed=failed,
                    batch_state=state,
                    failed_payload=b"",
                    remainder=remainder,
                    remainder_count=remainder_count,
                    claim_next=claim_next,
                )
            )
            job = self.job
            if not held or job is None or batch is None:
                assert not reply.accepted, "a stale holder's commit was accepted"
                assert reply.reason in (Reply.STALE, Reply.JOB_NOT_FOUND)
                assert reply.next_claim is None, "a refused commit claimed a batch"
                event("late commit refused")
                return None
            assert reply.accepted, f"the holder's commit was refused: {reply.reason}"
            batch.processed += done - failed
            batch.failed += failed
            if remainder:
                assert reply.finalized is None
                if job.state in FINAL:
                    batch.status = "ENDED"
                    event("hand-back into an ended job")
                else:
                    batch.status, batch.first, batch.size = (
                        "PENDING",
                        batch.first + done,
                        size - done,
                    )
                    batch.attempts -= 1
                    event("handed back")
                batch.token, batch.worker, batch.stale = None, None, False
                batch.handed_back_by = seen.token
            else:
                batch.status, batch.token, batch.worker, batch.stale = state, None, None, False
                due = self._finalizes(job)
                assert (reply.finalized is not None) == due, "a commit finalized wrongly"
                if due:
                    self._finalize(job)
                    event("commit finalized")
            claimed = None
            if claim_next is None:
                assert reply.next_claim is None, "a commit claimed unasked"
            else:
                assert reply.next_claim is not None, "a chained commit claimed nothing"
                claimed = self._take_claim(seen.worker, reply.next_claim)
                event("commit claimed the next batch" if claimed else "commit found none to claim")
            self.applied.append(
                Applied(
                    job.incarnation,
                    seen.idx,
                    seen.token,
                    done - failed,
                    failed,
                    state,
                    remainder,
                    remainder_count,
                    reply.finalized is not None,
                    claim_next,
                    claimed,
                    self.claim_calls[seen.worker],
                )
            )
            return claimed

        def _applied(self, token: str) -> Applied | None:
            return next((a for a in self.applied if a.token == token), None)

        @rule(pick=PICK)
        def resend_commit(self, pick: int) -> None:
            """A commit sent again with the same token (its reply was lost): it
            answers as the first did and changes nothing."""
            if not self.applied:
                return
            first = self.applied[pick % len(self.applied)]
            # A chained commit is re-sent with its claim while the worker still
            # holds what that claim took and has claimed nothing since (the lost
            # reply's case: the worker sends again at once); its claim must then
            # answer the same batch.
            claimed = first.claimed
            job = self.job
            repeat_claim = (
                claimed is not None
                and self.claim_calls[claimed.worker] == first.claims_before
                and job is not None
                and claimed.incarnation == job.incarnation
                and job.batches[claimed.idx].status == "HELD"
                and job.batches[claimed.idx].token == claimed.token
            )
            reply = self.run(
                self.store.commit(
                    JOB,
                    first.idx,
                    first.token,
                    processed=first.processed,
                    failed=first.failed,
                    batch_state=first.batch_state,
                    failed_payload=b"",
                    remainder=first.remainder,
                    remainder_count=first.remainder_count,
                    claim_next=first.claim_next if repeat_claim else None,
                )
            )
            if job is None or first.incarnation != job.incarnation:
                assert not reply.accepted, "a commit of a deleted incarnation was accepted"
                return
            batch = job.batches[first.idx]
            if first.remainder and batch.handed_back_by != first.token:
                # The batch was handed back again since: only the last hand-back is
                # recognised, and a repeat of an older one is refused (never counted).
                assert not reply.accepted
                event("old hand-back repeated")
                return
            assert reply.accepted, "a repeated commit was refused"
            assert (reply.finalized is not None) == first.finalized
            if repeat_claim:
                assert claimed is not None and reply.next_claim is not None
                assert (reply.next_claim.batch_index, reply.next_claim.token) == (
                    claimed.idx,
                    claimed.token,
                ), "a repeated commit's claim took another batch"
                event("repeated commit's claim answered as the first")
            else:
                assert reply.next_claim is None
            event("repeated commit answered as the first")

        @rule(pick=PICK, late=LATE)
        def heartbeat(self, pick: int, late: bool) -> None:
            seen = self._pick(pick, late)
            if seen is None:
                return
            call = self.store.heartbeat_call(JOB, seen.worker, seen.idx, seen.token)

            def flow() -> Any:
                return (yield call)

            reply = self.run(flow())
            batch = self._current(seen)
            live = batch is not None and batch.status == "HELD" and batch.token == seen.token
            assert _text(reply[0]) == ("OK" if live else "STALE"), "heartbeat answered wrongly"
            if live and batch is not None:
                batch.stale = False

        @rule(pick=PICK)
        def make_lease_stale(self, pick: int) -> None:
            """The holder went silent: its lease's score drops to the epoch."""
            job = self.job
            if job is None:
                return
            held = [i for i, b in enumerate(job.batches) if b.status == "HELD"]
            if not held:
                return
            idx = held[pick % len(held)]
            client.zadd(self.keys.leases, {str(idx): 0}, xx=True)
            job.batches[idx].stale = True

        @rule(now=RARE)
        def reclaim_all(self, now: bool) -> None:
            """reclaim_stale_batches with timeout 0: every held batch goes back."""
            if not now:
                return
            count = self.run(self.store.reclaim_stale(JOB, 0))
            job = self.job
            if job is None:
                assert count == 0
                return
            held = [b for b in job.batches if b.status == "HELD"]
            assert count == len(held)
            for batch in held:
                batch.status, batch.token, batch.worker, batch.stale = "PENDING", None, None, False

        @rule(pick=PICK, late=LATE)
        def release(self, pick: int, late: bool) -> None:
            seen = self._pick(pick, late)
            if seen is None:
                return
            released = self.run(self.store.release(JOB, seen.idx, seen.worker))
            # Release goes by worker id, not token: a worker that holds the batch
            # now (in whatever incarnation of the job id) may release it.
            job = self.job
            batch = job.batches[seen.idx] if job and seen.idx < len(job.batches) else None
            ok = batch is not None and batch.status == "HELD" and batch.worker == seen.worker
            assert released == ok
            if ok and batch is not None:
                batch.status, batch.token, batch.worker, batch.stale = "PENDING", None, None, False

        @rule(now=RARE)
        def pause(self, now: bool) -> None:
            if not now:
                return
            paused = self.run(self.store.pause(JOB))
            job = self.job
            ok = job is not None and job.state in ("PREPARING", "PROCESSING")
            assert paused == ok
            if ok and job is not None:
                job.state = "PAUSED"

        @rule(now=RARE)
        def resume(self, now: bool) -> None:
            if not now:
                return
            resumed, finalized = self.run(self.store.resume(JOB))
            job = self.job
            ok = job is not None and job.state == "PAUSED"
            assert resumed == ok
            if not ok or job is None:
                return
            job.state = "PROCESSING" if job.sealed else "PREPARING"
            due = self._finalizes(job)
            assert (finalized is not None) == due, "resume finalized wrongly"
            if due:
                self._finalize(job)
                event("resume finalized")

        @rule(now=RARE)
        def abort(self, now: bool) -> None:
            if not now:
                return
            ended = self.run(self.store.end(JOB, "ABORTED"))
            job = self.job
            ok = job is not None and job.state in ("PREPARING", "PROCESSING", "PAUSED")
            assert ended == ok
            if ok and job is not None:
                job.state = "ABORTED"

        @rule(batch_size=st.integers(min_value=1, max_value=4), recreate=st.booleans(), now=RARE)
        def delete(self, batch_size: int, recreate: bool, now: bool) -> None:
            """Delete the job; maybe prepare a new one under the same id."""
            if not now:
                return
            removed = self.run(self.store.delete(JOB))
            assert removed == (self.job is not None)
            self.job = None
            if recreate:
                self._create(batch_size)
                event("job id reused")

        # ------------------------------------------------------------ invariants

        @invariant()
        def counts_and_state_match(self) -> None:
            job = self.job
            status = self.run(self.store.status(JOB))
            if job is None:
                assert status is None
                return
            assert status is not None
            assert status.state == job.state
            assert status.total_batches == len(job.batches)
            assert status.processed_records == sum(b.processed for b in job.batches)
            assert status.failed_records == sum(b.failed for b in job.batches)
            assert status.completed_batches == sum(b.status == "COMPLETED" for b in job.batches)
            assert status.failed_batches == sum(b.status in ("FAILED", "DEAD") for b in job.batches)
            assert status.processing_batches == sum(b.status == "HELD" for b in job.batches)

        @invariant()
        def no_batch_both_pending_and_held(self) -> None:
            """The queue holds each unsettled batch once: held ones in the pending
            entries list with a lease, the others waiting to be read."""
            job = self.job
            if job is None:
                return
            entries = client.xrange(self.keys.queue)
            listed = [int(fields[b"b"]) for _, fields in entries]
            assert sorted(listed) == sorted(
                i for i, b in enumerate(job.batches) if b.status in ("PENDING", "HELD")
            ), "the queue does not hold each unsettled batch exactly once"
            held = {i for i, b in enumerate(job.batches) if b.status == "HELD"}
            leases = {int(m) for m in client.zrange(self.keys.leases, 0, -1)}
            assert leases == held, "leases and held batches differ"
            pending = client.xpending_range(self.keys.queue, CONSUMER_GROUP, "-", "+", 1000)
            ids = {_text(p["message_id"]) for p in pending}
            in_pel = {int(fields[b"b"]) for entry_id, fields in entries if _text(entry_id) in ids}
            assert in_pel == held, "a batch is pending and held, or held and not pending"

        @invariant()
        def consumers_hold_something(self) -> None:
            """No worker id stays a consumer of the group once it holds nothing."""
            if self.job is None or not client.exists(self.keys.queue):
                return
            for consumer in client.xinfo_consumers(self.keys.queue, CONSUMER_GROUP):
                assert int(consumer["pending"]) > 0, f"idle consumer {consumer['name']!r} kept"

        @invariant()
        def finalized_at_most_once(self) -> None:
            job = self.job
            if job is None:
                return
            done = job.state in ("COMPLETED", "FAILED")
            assert job.finalizations == (1 if done else 0), "finalized other than once"
            events = [
                fields
                for _, fields in client.xrange(self.keys.events)
                if fields.get(b"type") == b"job:completed"
            ]
            assert len(events) == (1 if job.state in FINAL else 0), "job:completed not once"

        @invariant()
        def final_keys_expire(self) -> None:
            job = self.job
            if job is None or job.state not in FINAL:
                return
            for key in self.keys.all:
                assert client.pttl(key) != -1, f"{key} has no TTL in a final job"

    return StoreModel


def test_the_store_follows_its_model(client: redis.Redis, is_real: bool) -> None:
    """Every store call answers as the model says and the job's counts, queue,
    leases, consumers, finalization and TTLs match the model after each step."""
    examples = int(os.environ.get("REDISBATCH_MODEL_EXAMPLES", "0")) or (50 if is_real else 40)
    run_state_machine_as_test(
        machine_for(client),
        settings=settings(
            max_examples=examples,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )

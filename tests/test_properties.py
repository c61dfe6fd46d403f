"""Property test: random interleavings of claim, commit, late commit,
heartbeat, reclaim and release keep the store's invariants after every step."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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

from redisbatch import DistributedImport, IterableSource
from redisbatch._scripts import Reply
from redisbatch._store import Claim

WORKERS = ("w0", "w1", "w2")
MAX_ATTEMPTS = 3
# Which held claim a rule acts on. Drawn as a number rather than sampled from
# the held claims: with tiny stale timeouts what is held depends on timing, and
# hypothesis needs the same draws on every replay.
PICK = st.integers(min_value=0, max_value=10**6)


@dataclass
class Held:
    worker: str
    claim: Claim


def machine_for(client: redis.Redis) -> type[RuleBasedStateMachine]:
    class StoreMachine(RuleBasedStateMachine):
        """The model: which batch is terminal with which counts, who holds what."""

        @initialize(
            total=st.integers(min_value=0, max_value=12),
            batch_size=st.integers(min_value=1, max_value=4),
            stale=st.sampled_from([0.001, 60.0]),
        )
        def prepare(self, total: int, batch_size: int, stale: float) -> None:
            self.di = DistributedImport(
                client,
                batch_size=batch_size,
                namespace=f"p{uuid.uuid4().hex[:10]}",
                stale_batch_timeout=stale,
                max_batch_attempts=MAX_ATTEMPTS,
            )
            self.store, self.run = self.di._core.store, self.di._driver.run
            self.job = self.di.prepare(IterableSource({"n": i} for i in range(total))).job_id
            self.sizes = [min(batch_size, total - i) for i in range(0, total, batch_size)]
            self.terminal: dict[int, tuple[int, int, str]] = {}  # idx -> processed, failed, state
            self.held: list[Held] = []  # every claim ever handed out, current or revoked
            self.finalized = 0 if total else 1  # an empty job finalizes at prepare
            self.committed: dict[str, bool] = {}  # token of an applied commit -> finalized

        def _claim(self, worker: str) -> Claim:
            claim = self.run(self.store.claim(self.job, worker))
            for idx, attempts in claim.dead_lettered:
                assert idx not in self.terminal, "a terminal batch was dead-lettered"
                assert attempts == MAX_ATTEMPTS
                self.terminal[idx] = (0, self.sizes[idx], "DEAD")
                event("dead-lettered a batch")
            if claim.finalized is not None:
                self.finalized += 1
            if claim.attempt > 1:
                event("reclaimed or redelivered a batch")
            return claim

        @rule(worker=st.sampled_from(WORKERS))
        def claim(self, worker: str) -> None:
            claim = self._claim(worker)
            if claim.reason == Reply.OK:
                assert claim.batch_index is not None
                assert claim.batch_index not in self.terminal, "a terminal batch was handed out"
                assert 1 <= claim.attempt <= MAX_ATTEMPTS
                self.held.append(Held(worker, claim))
            else:
                assert claim.reason in (Reply.NO_PENDING_BATCHES, Reply.JOB_NOT_PROCESSING)

        @rule(pick=PICK, failed_share=st.floats(0, 1), fail_batch=st.booleans())
        def commit(self, pick: int, failed_share: float, fail_batch: bool) -> None:
            if not self.held:
                return
            held = self.held[pick % len(self.held)]
            claim = held.claim
            assert claim.batch_index is not None
            size = self.sizes[claim.batch_index]
            failed = int(size * failed_share)
            state = "FAILED" if fail_batch and failed else "COMPLETED"
            reply = self.run(
                self.store.commit(
                    self.job,
                    claim.batch_index,
                    claim.token,
                    processed=size - failed,
                    failed=failed,
                    batch_state=state,
                    failed_payload=b"",
                )
            )
            event(f"commit accepted={reply.accepted}")
            if claim.token in self.committed:
                # A repeat of an applied commit (a lost reply): answered as the first,
                # counted once, and the finalization reported by it alone.
                assert reply.accepted, "a repeated commit was refused"
                assert (reply.finalized is not None) == self.committed[claim.token]
                event("repeated a commit")
                return
            if reply.accepted:
                assert claim.batch_index not in self.terminal, "a batch was counted twice"
                self.terminal[claim.batch_index] = (size - failed, failed, state)
                self.committed[claim.token] = reply.finalized is not None
            if reply.finalized is not None:
                self.finalized += 1

        @rule(pick=PICK)
        def heartbeat(self, pick: int) -> None:
            if not self.held:
                return
            held = self.held[pick % len(self.held)]
            assert held.claim.batch_index is not None
            call = self.store.heartbeat_call(
                self.job, held.worker, held.claim.batch_index, held.claim.token
            )

            def flow() -> Any:
                return (yield call)

            reply = self.run(flow())
            if held.claim.batch_index in self.terminal:
                assert reply[0] == b"STALE", "a heartbeat revived a finished batch"

        @rule()
        def reclaim_all(self) -> None:
            self.run(self.store.reclaim_stale(self.job, 0))

        @rule(pick=PICK)
        def release(self, pick: int) -> None:
            if not self.held:
                return
            held = self.held[pick % len(self.held)]
            assert held.claim.batch_index is not None
            released = self.di.release_batch(self.job, held.claim.batch_index, held.worker)
            if held.claim.batch_index in self.terminal:
                assert not released, "a finished batch was released"

        @invariant()
        def counts_match_the_model(self) -> None:
            if not hasattr(self, "job"):
                return
            status = self.di.status(self.job)
            assert status is not None
            done = self.terminal.values()
            assert status.processed_records == sum(p for p, _, _ in done)
            assert status.failed_records == sum(f for _, f, _ in done)
            assert status.completed_batches == sum(1 for *_, s in done if s == "COMPLETED")
            assert status.failed_batches == sum(1 for *_, s in done if s != "COMPLETED")
            assert (
                status.pending_batches
                + status.processing_batches
                + status.completed_batches
                + status.failed_batches
                == len(self.sizes)
            )
            all_done = len(self.terminal) == len(self.sizes)
            assert self.finalized == (1 if all_done else 0), "finalized other than exactly once"
            if all_done:
                failed_any = any(s != "COMPLETED" for *_, s in done)
                assert status.state == ("FAILED" if failed_any else "COMPLETED")
            else:
                assert status.state == "PROCESSING"

    return StoreMachine


def test_store_invariants_hold_under_random_interleavings(
    client: redis.Redis, is_real: bool
) -> None:
    """No batch is counted twice or lost, and the job finalizes exactly once."""
    run_state_machine_as_test(
        machine_for(client),
        settings=settings(
            max_examples=60 if is_real else 150,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

"""State-store scenarios, on fakeredis and on a real server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from redisbatch import DistributedImport, IterableSource
from redisbatch._scripts import Reply
from redisbatch._store import Claim, NextClaim


def records(n: int) -> IterableSource:
    return IterableSource({"n": i} for i in range(n))


class Raw:
    """Drives the store's flows directly: claim without committing, etc."""

    def __init__(self, di: DistributedImport) -> None:
        self.store = di._core.store
        self.run = di._driver.run

    def claim(self, job: str, worker: str) -> Claim:
        return self.run(self.store.claim(job, worker))

    def commit(
        self,
        job: str,
        claim: Claim,
        *,
        failed: int = 0,
        state: str = "COMPLETED",
        claim_next: NextClaim | None = None,
    ) -> Any:
        assert claim.batch_index is not None and claim.batch is not None
        size = len(claim.batch)
        return self.run(
            self.store.commit(
                job,
                claim.batch_index,
                claim.token,
                processed=size - failed,
                failed=failed,
                batch_state=state,
                failed_payload=b"",
                claim_next=claim_next,
            )
        )

    def heartbeat(self, job: str, worker: str, claim: Claim) -> Any:
        assert claim.batch_index is not None
        return self.run_call(self.store.heartbeat_call(job, worker, claim.batch_index, claim.token))

    def run_call(self, call: Any) -> Any:
        def flow() -> Any:
            return (yield call)

        return self.run(flow())


Make = Callable[..., DistributedImport]


def test_batches_are_claimed_in_index_order(make_import: Make) -> None:
    """Claims hand out batches in source order."""
    di = make_import(batch_size=2)
    job = di.prepare(records(7)).job_id
    raw = Raw(di)
    claims = [raw.claim(job, "w") for _ in range(4)]
    assert [c.batch_index for c in claims] == [0, 1, 2, 3]
    assert [len(c.batch) for c in claims if c.batch] == [2, 2, 2, 1]
    assert claims[0].batch is not None and claims[0].columns == ("n",)


def test_different_workers_get_different_batches(make_import: Make) -> None:
    """Two workers claiming at once never receive the same batch."""
    di = make_import(batch_size=1)
    job = di.prepare(records(2)).job_id
    raw = Raw(di)
    a, b = raw.claim(job, "a"), raw.claim(job, "b")
    assert {a.batch_index, b.batch_index} == {0, 1}
    assert a.token != b.token


def test_claim_reasons(make_import: Make) -> None:
    """NO_PENDING_BATCHES, JOB_NOT_FOUND and JOB_NOT_PROCESSING come back as reasons."""
    di = make_import(batch_size=5)
    job = di.prepare(records(3)).job_id
    assert di.process_worker_batch("nope", lambda r, c: None, "w").reason == "JOB_NOT_FOUND"
    first = di.process_worker_batch(job, lambda r, c: None, "w")
    assert first.claimed and first.accepted and first.job_complete
    again = di.process_worker_batch(job, lambda r, c: None, "w")
    assert (again.claimed, again.accepted, again.reason) == (False, False, "JOB_NOT_PROCESSING")

    other = di.prepare(records(5)).job_id
    raw = Raw(di)
    held = raw.claim(other, "w")
    assert raw.claim(other, "w2").reason == Reply.NO_PENDING_BATCHES
    assert di.pause(other)
    paused = di.process_worker_batch(other, lambda r, c: None, "w")
    assert paused.reason == "JOB_NOT_PROCESSING"
    assert raw.commit(other, held).accepted, "a paused job still takes in-flight commits"
    assert di.status(other).state == "PAUSED"  # type: ignore[union-attr]
    assert di.resume(other)
    assert di.status(other).state == "COMPLETED"  # type: ignore[union-attr]


def test_release_only_by_the_holder(make_import: Make) -> None:
    """release_batch needs the current holder; the released batch is claimable again."""
    di = make_import(batch_size=1)
    job = di.prepare(records(1)).job_id
    raw = Raw(di)
    held = raw.claim(job, "a")
    assert not di.release_batch(job, f"batch-{held.batch_index}", "b")
    assert di.release_batch(job, f"batch-{held.batch_index}", "a")
    assert not di.release_batch(job, f"batch-{held.batch_index}", "a"), "already released"
    assert not raw.commit(job, held).accepted, "the released holder's token is revoked"
    again = raw.claim(job, "b")
    assert again.batch_index == held.batch_index and again.attempt == 2
    assert raw.commit(job, again).accepted
    assert di.status(job).state == "COMPLETED"  # type: ignore[union-attr]


def test_reclaim_only_past_the_timeout(make_import: Make) -> None:
    """A claimed batch is reclaimed by another worker only once idle past the timeout."""
    di = make_import(batch_size=1, stale_batch_timeout=0.3)
    job = di.prepare(records(1)).job_id
    raw = Raw(di)
    first = raw.claim(job, "a")
    assert raw.claim(job, "b").reason == Reply.NO_PENDING_BATCHES
    assert di.reclaim_stale_batches(job) == 0
    time.sleep(0.4)
    second = raw.claim(job, "b")
    assert second.batch_index == first.batch_index
    assert second.attempt == 2 and second.token != first.token


def test_reclaim_stale_batches_makes_idle_batches_claimable(make_import: Make) -> None:
    """reclaim_stale_batches returns idle batches to the queue and counts them."""
    di = make_import(batch_size=1)
    job = di.prepare(records(3)).job_id
    raw = Raw(di)
    held = [raw.claim(job, "a"), raw.claim(job, "a")]
    assert di.reclaim_stale_batches(job, timeout=60) == 0
    time.sleep(0.05)
    assert di.reclaim_stale_batches(job, timeout=0.01) == 2
    status = di.status(job)
    assert status is not None
    assert (status.pending_batches, status.processing_batches) == (3, 0)
    assert not raw.commit(job, held[0]).accepted


def test_heartbeat_keeps_a_live_batch(make_import: Make) -> None:
    """Heartbeats keep a batch from being reclaimed; a reclaimed holder's heartbeat is refused."""
    di = make_import(batch_size=1, stale_batch_timeout=0.4)
    job = di.prepare(records(1)).job_id
    raw = Raw(di)
    held = raw.claim(job, "a")
    for _ in range(4):
        time.sleep(0.15)
        assert raw.heartbeat(job, "a", held)[0] == b"OK"
    assert raw.claim(job, "b").reason == Reply.NO_PENDING_BATCHES
    time.sleep(0.5)
    taken = raw.claim(job, "b")
    assert taken.batch_index == held.batch_index
    assert raw.heartbeat(job, "a", held)[0] == b"STALE"


def test_fencing_refuses_a_reclaimed_workers_commit(make_import: Make) -> None:
    """A worker whose batch was reclaimed gets accepted=False and nothing is counted twice."""
    di = make_import(batch_size=2, stale_batch_timeout=0.2)
    job = di.prepare(records(2)).job_id
    raw = Raw(di)
    slow = raw.claim(job, "slow")
    time.sleep(0.3)
    fast = raw.claim(job, "fast")
    assert fast.batch_index == slow.batch_index
    assert raw.commit(job, fast).finalized is not None
    late = raw.commit(job, slow)
    assert not late.accepted and late.reason == Reply.STALE
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.completed_batches) == (2, 1)
    assert status.state == "COMPLETED"


def test_a_duplicate_commit_counts_once(make_import: Make) -> None:
    """Committing the same claim twice counts it once; the repeat answers as the first."""
    di = make_import(batch_size=3)
    job = di.prepare(records(6)).job_id
    raw = Raw(di)
    held = raw.claim(job, "w")
    first = raw.commit(job, held)
    assert first.accepted
    assert raw.commit(job, held) == first
    assert di.status(job).processed_records == 3  # type: ignore[union-attr]


def test_status_aggregates_batches_and_records(make_import: Make) -> None:
    """status counts pending, processing, completed and failed batches and records."""
    di = make_import(batch_size=2)
    job = di.prepare(records(9)).job_id
    raw = Raw(di)
    status = di.status(job)
    assert status is not None
    assert (status.state, status.total_records, status.total_batches) == ("PROCESSING", 9, 5)
    assert (status.pending_batches, status.started_at, status.is_complete) == (5, None, False)
    a, b, c = raw.claim(job, "w"), raw.claim(job, "w"), raw.claim(job, "w")
    raw.commit(job, a)
    raw.commit(job, b, failed=1, state="FAILED")
    status = di.status(job)
    assert status is not None
    assert status.pending_batches == 2
    assert status.processing_batches == 1
    assert (status.completed_batches, status.failed_batches) == (1, 1)
    assert (status.processed_records, status.failed_records) == (3, 1)
    assert status.started_at is not None and status.started_at >= status.created_at
    del c
    assert di.status("unknown") is None


def test_finalization_to_completed_and_failed(make_import: Make) -> None:
    """A job ends COMPLETED when no batch failed, FAILED when one did."""
    ok = make_import(batch_size=2)
    job = ok.prepare(records(4)).job_id
    summary = ok.run_worker(job, lambda r, c: None)
    assert summary.finalized and summary.processed == 4
    status = ok.status(job)
    assert status is not None and status.state == "COMPLETED" and status.completed_at

    strict = make_import(batch_size=2, continue_on_error=False)
    job = strict.prepare(records(4)).job_id

    def fail_on_one(record: dict[str, Any], ctx: Any) -> None:
        if record["n"] == 1:
            raise RuntimeError("boom")

    summary = strict.run_worker(job, fail_on_one)
    status = strict.status(job)
    assert status is not None
    assert status.state == "FAILED"
    assert (status.failed_batches, status.completed_batches) == (1, 1)
    assert (status.processed_records, status.failed_records) == (3, 1)
    assert summary.finalized


def test_finalization_waits_for_the_seal(make_import: Make) -> None:
    """Batches finished while preparing do not finalize the job before it is sealed."""
    di = make_import(batch_size=1)
    store, run = di._core.store, di._driver.run
    run(store.create("j", 1))
    from redisbatch._batcher import Batcher

    batcher = Batcher(1, skip_empty_rows=False, origin="test")
    batch = batcher.add({"n": 1})
    assert batch is not None
    run(store.store_batches("j", [batch]))
    result = di.process_worker_batch("j", lambda r, c: None, "w")
    assert result.accepted and not result.job_complete
    assert di.status("j").state == "PREPARING"  # type: ignore[union-attr]
    sealed = run(store.seal("j"))
    assert sealed.finalized is not None
    assert di.status("j").state == "COMPLETED"  # type: ignore[union-attr]


def test_retention_applies_at_finalization(make_import: Make, client: Any) -> None:
    """Every key of a finalized job carries the retention TTL; raw records are gone."""
    di = make_import(batch_size=2, retention=100)
    job = di.prepare(records(3)).job_id
    keys = di._core.store.keys(job)
    assert client.ttl(keys.job) == -1
    di.run_worker(job, lambda r, c: None)
    for key in (keys.job, keys.queue, keys.batches, keys.events):
        assert 0 < client.ttl(key) <= 100, key
    assert client.hlen(keys.records) == 0
    kept = make_import(batch_size=2, retention=None)
    job = kept.prepare(records(3)).job_id
    kept.run_worker(job, lambda r, c: None)
    assert client.ttl(kept._core.store.keys(job).job) == -1


@pytest.mark.parametrize("control", ["pause", "abort"])
def test_control_return_values(make_import: Make, control: str) -> None:
    """pause/resume/abort/delete say whether they changed something."""
    di = make_import(batch_size=2)
    job = di.prepare(records(4)).job_id
    assert not di.resume(job)
    if control == "pause":
        assert di.pause(job) and not di.pause(job)
        assert di.resume(job) and not di.resume(job)
    assert di.abort(job) and not di.abort(job)
    assert not di.resume(job) and not di.pause(job)
    status = di.status(job)
    assert status is not None and status.state == "ABORTED" and status.is_complete
    assert di.process_worker_batch(job, lambda r, c: None, "w").reason == "JOB_NOT_PROCESSING"
    assert di.delete(job) and not di.delete(job)
    assert di.status(job) is None
    assert not di.pause("unknown") and not di.abort("unknown")


def test_scripts_flushed_mid_job_are_loaded_again(make_import: Make, client: Any) -> None:
    """After SCRIPT FLUSH (a restarted server, a failover) every call reloads its script:
    pipelined stores, claims, commits and heartbeats carry on."""
    di = make_import(batch_size=5)
    flushed = 0

    def rows() -> Any:
        nonlocal flushed
        for i in range(200):
            if i % 50 == 0:
                client.script_flush()
                flushed += 1
            yield {"n": i}

    job = di.prepare(IterableSource(rows())).job_id

    def processor(record: dict[str, Any], ctx: Any) -> None:
        if record["n"] % 45 == 0:
            client.script_flush()

    summary = di.run_worker(job, processor)
    assert flushed == 4 and summary.processed == 200 and summary.finalized
    assert di.status(job).state == "COMPLETED"  # type: ignore[union-attr]


def test_a_batch_whose_records_are_gone_is_lost_at_once(make_import: Make, client: Any) -> None:
    """A batch whose records vanished (eviction) fails at its first claim; the job ends."""
    di = make_import(batch_size=2)
    failures: list[Any] = []
    di.on("batch:failed", failures.append)
    job = di.prepare(records(6)).job_id
    client.hdel(di._core.store.keys(job).records, "1")
    seen: list[int] = []
    summary = di.run_worker(job, lambda r, c: seen.append(c.record_index))
    status = di.status(job)
    assert status is not None and status.state == "FAILED"
    assert (status.processed_records, status.failed_records, status.failed_batches) == (4, 2, 1)
    assert sorted(seen) == [0, 1, 4, 5] and summary.finalized
    assert [(f.batch_index, f.error) for f in failures] == [
        (1, "batch lost: its records are gone from Redis (evicted, or deleted)")
    ]


def test_the_release_of_a_dead_flow_gives_the_batch_back(make_import: Make) -> None:
    """The release sent for a flow that died holding a batch makes it claimable at once."""
    di = make_import(batch_size=5)
    raw = Raw(di)
    job = di.prepare(records(10)).job_id
    held = raw.claim(job, "w")
    assert held.batch_index is not None
    assert int(raw.run_call(raw.store.release_call(job, held.batch_index, "w"))) == 1
    status = di.status(job)
    assert status is not None and (status.pending_batches, status.processing_batches) == (2, 0)
    again = raw.claim(job, "other")
    assert again.batch_index == 1  # batch 0 went to the back of the queue
    assert raw.claim(job, "other2").batch_index == held.batch_index
    assert not raw.commit(job, held).accepted  # the dead flow's token was revoked

"""Review of chained claims under a time budget: what a commit claimed before
the budget ran out is never dropped unseen, however late the deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from redisbatch import DistributedImport, IterableSource

from .test_failover import failing_scripts
from .test_store import Raw

Make = Callable[..., DistributedImport]


def records(n: int) -> IterableSource:
    return IterableSource({"n": i} for i in range(n))


def test_a_finalizing_chained_claim_is_reported_when_the_budget_runs_out(
    make_import: Make,
) -> None:
    """The commit of the last live batch, made with budget left, claims on: the
    claim dead-letters a stale batch (its holder died; one attempt allowed) and
    so finalizes the job. The budget then runs out in a ``batch:completed``
    handler. The claim's reply still counts: ``batch:failed`` for the dead
    batch, ``job:completed`` once, the worker's summary says it finalized."""
    di = make_import(batch_size=2, max_batch_attempts=1, stale_batch_timeout=0.6)
    job = di.prepare(records(4)).job_id
    dead = Raw(di).claim(job, "dead")  # batch 0, never heartbeated
    assert dead.batch_index == 0
    seen: list[Any] = []
    di.on_any(seen.append)

    def slow(record: dict[str, Any], ctx: Any) -> None:
        time.sleep(0.45)  # batch 1 ends after batch 0's lease ran out

    overrunning = [True]

    def overrun(event: Any) -> None:
        if overrunning[0]:
            time.sleep(0.8)  # the budget runs out here

    di.on("batch:completed", overrun)
    summary = di.run_worker(job, slow, "w", time_budget=1.3)
    overrunning[0] = False
    # Whatever the first worker left, a second one finishes.
    after = di.run_worker(job, lambda r, c: None, "w2", wait=False)
    status = di.status(job)
    assert status is not None and status.state in ("COMPLETED", "FAILED")
    kinds = [getattr(event, "type", type(event).__name__) for event in seen]
    completed = [e for e in seen if type(e).__name__ == "JobCompleted"]
    failed = [e for e in seen if type(e).__name__ == "BatchFailed"]
    assert len(completed) == 1, kinds
    assert [e.batch_index for e in failed] == [0], kinds
    assert [summary.finalized, after.finalized].count(True) == 1, (summary, after)
    assert status.processing_batches == 0


def test_serverless_invocations_lose_nothing_and_end_holding_nothing(make_import: Make) -> None:
    """Many short invocations, each its own facade and worker id, one delivery
    allowed per batch: commits chain claims while budget is left, event handlers
    overrun the budget every other invocation (a chained batch then goes back
    whole). Each invocation returns holding nothing; nothing is dead-lettered,
    every record counted once, ``job:completed`` fired once."""
    job = make_import(batch_size=3, max_batch_attempts=1).prepare(records(30)).job_id
    seen: list[Any] = []
    done: list[int] = []
    finalized = 0
    for invocation in range(200):
        di = make_import(batch_size=3, max_batch_attempts=1)
        di.on_any(seen.append)
        if invocation % 2:
            di.on("batch:completed", lambda event: time.sleep(0.05))
            di.on("batch:claimed", lambda event: time.sleep(0.01))

        def work(record: dict[str, Any], ctx: Any) -> None:
            time.sleep(0.008)
            done.append(record["n"])

        summary = di.run_worker(job, work, f"fn-{invocation}", time_budget=0.04)
        finalized += summary.finalized
        status = di.status(job)
        assert status is not None
        assert status.processing_batches == 0, (invocation, status)
        if status.is_complete:
            break
    else:
        raise AssertionError("the job never completed")
    assert status.state == "COMPLETED"
    assert (status.processed_records, status.failed_records) == (30, 0)
    assert [type(e).__name__ for e in seen].count("JobCompleted") == 1
    assert not [e for e in seen if type(e).__name__ == "BatchFailed"]
    assert finalized == 1
    assert sorted(set(done)) == list(range(30))
    started = [e.batch_index for e in seen if type(e).__name__ == "BatchStarted"]
    assert len(started) > 10, "some batch was handed back and delivered again"


def test_a_single_batch_call_with_a_budget_claims_nothing_more(make_import: Make) -> None:
    """process_worker_batch with a time budget to spare: one claim, one commit
    that claims nothing; the worker holds nothing afterwards."""
    di = make_import(batch_size=4)
    job = di.prepare(records(12)).job_id
    called = failing_scripts(di, "none", [])
    result = di.process_worker_batch(job, lambda r, c: None, "w", time_budget=60)
    assert result.accepted and result.processed_count == 4
    assert called == ["claimBatch", "commitBatch"]
    status = di.status(job)
    assert status is not None
    assert (status.processing_batches, status.pending_batches) == (0, 2)


def test_a_chained_claim_into_a_paused_job_ends_the_budgeted_worker(make_import: Make) -> None:
    """The job is paused during the last record of batch 0; the commit's claim
    finds it paused and the budget runs out in a handler: the worker returns
    PAUSED, holding nothing, having committed batch 0 once."""
    di = make_import(batch_size=2)
    job = di.prepare(records(6)).job_id
    other = make_import(batch_size=2)

    def work(record: dict[str, Any], ctx: Any) -> None:
        if record["n"] == 1:
            other.pause(job)

    di.on("batch:completed", lambda event: time.sleep(0.3))
    summary = di.run_worker(job, work, "w", time_budget=0.2)
    assert (summary.batches, summary.processed, summary.state) == (1, 2, "PAUSED")
    status = di.status(job)
    assert status is not None
    assert (status.processing_batches, status.processed_records) == (0, 2)

"""Review of chained claims under a time budget: what a commit claimed before
the budget ran out is never dropped unseen, however late the deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from redisbatch import DistributedImport, IterableSource

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

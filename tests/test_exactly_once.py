"""Exactly-once finalization under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from redisbatch import DistributedImport, IterableSource, JobCompleted, WorkerSummary


def test_eight_concurrent_workers_finalize_once(
    make_import: Callable[..., DistributedImport],
) -> None:
    """8 workers on 200 one-record batches: one job_complete, one job:completed, exact counts."""
    job = make_import(batch_size=1).prepare(IterableSource({"n": i} for i in range(200))).job_id
    completed: list[JobCompleted] = []
    job_complete_results: list[Any] = []
    summaries: list[WorkerSummary] = []
    seen: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        di = make_import(batch_size=1)
        di.on("job:completed", completed.append)
        di.on("batch:completed", lambda e: None)

        def processor(record: dict[str, Any], ctx: Any) -> None:
            with lock:
                seen.append(record["n"])

        start.wait()
        while True:
            result = di.process_worker_batch(job, processor, f"w{n}")
            if result.job_complete:
                with lock:
                    job_complete_results.append(result)
            if not result.claimed:
                break
        summaries.append(di.run_worker(job, processor, f"w{n}"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(job_complete_results) == 1
    assert len(completed) == 1
    assert completed[0].summary.processed == 200 and completed[0].summary.state == "COMPLETED"
    assert sorted(seen) == list(range(200))
    status = make_import().status(job)
    assert status is not None
    assert (status.processed_records, status.completed_batches, status.state) == (
        200,
        200,
        "COMPLETED",
    )
    assert all(s.batches == 0 and not s.finalized for s in summaries)

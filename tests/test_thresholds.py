"""Failure thresholds (tolerated_failure_count / tolerated_failure_percentage):
checked inside the commit script, on both facades, fakeredis and a real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from redisbatch import ConfigurationError, DistributedImport, IterableSource
from redisbatch._scripts import Reply
from tests.test_store import Raw

Make = Callable[..., DistributedImport]


def numbered(n: int) -> IterableSource:
    return IterableSource({"n": i} for i in range(n))


def failing(indexes: set[int]) -> Callable[[Any, Any], None]:
    def processor(record: Any, ctx: Any) -> None:
        if ctx.record_index in indexes:
            raise RuntimeError(f"record {ctx.record_index} refused")

    return processor


def completions(di: Any) -> list[Any]:
    seen: list[Any] = []
    di.on("job:completed", seen.append)
    return seen


def test_crossing_the_count_fails_the_job_at_that_commit(make_import: Make) -> None:
    """The commit making failed records exceed the count fails the job; no more claims."""
    di = make_import(batch_size=10, tolerated_failure_count=5)
    done = completions(di)
    job = di.prepare(numbered(100)).job_id
    processor = failing({1, 2, 3, 11, 12, 13})  # 3 failures in each of batches 0 and 1
    first = di.process_worker_batch(job, processor, "w")
    assert (first.failed_count, first.job_complete) == (3, False)
    second = di.process_worker_batch(job, processor, "w")
    assert (second.processed_count, second.failed_count, second.job_complete) == (7, 3, True)
    after = di.process_worker_batch(job, processor, "w")
    assert (after.claimed, after.reason) == (False, Reply.JOB_NOT_PROCESSING)
    status = di.status(job)
    assert status is not None
    assert (status.state, status.processed_records, status.failed_records) == ("FAILED", 14, 6)
    assert (status.completed_batches, status.failed_batches, status.pending_batches) == (2, 0, 8)
    assert status.error is not None and "failure threshold" in status.error
    assert status.eta == 0.0 and status.is_complete
    assert len(done) == 1 and done[0].summary.state == "FAILED"
    assert done[0].summary.failed == 6


def test_run_worker_stops_claiming_once_crossed(make_import: Make) -> None:
    """run_worker returns once the job failed over its threshold, with exact counts."""
    di = make_import(batch_size=10, tolerated_failure_count=0)
    done = completions(di)
    job = di.prepare(numbered(50)).job_id
    summary = di.run_worker(job, failing({25}), "w")
    assert summary.finalized and (summary.batches, summary.processed, summary.failed) == (3, 29, 1)
    status = di.status(job)
    assert status is not None and status.state == "FAILED"
    assert (status.processed_records, status.failed_records, status.pending_batches) == (29, 1, 2)
    assert len(done) == 1


def test_percentage_is_of_total_records_and_strict(make_import: Make) -> None:
    """10% of 100 records tolerates 10 failed records and fails the job at the 11th."""
    di = make_import(batch_size=10, tolerated_failure_percentage=10.0)
    job = di.prepare(numbered(100)).job_id
    processor = failing({*range(10), 10})  # batch 0: 10 failed (= 10%), batch 1: one more
    assert not di.process_worker_batch(job, processor, "w").job_complete
    status = di.status(job)
    assert status is not None and (status.state, status.failed_records) == ("PROCESSING", 10)
    assert di.process_worker_batch(job, processor, "w").job_complete
    status = di.status(job)
    assert status is not None and (status.state, status.failed_records) == ("FAILED", 11)


def test_commits_in_flight_are_still_counted(make_import: Make) -> None:
    """A batch claimed before the crossing still commits and counts; the job stays FAILED."""
    di = make_import(batch_size=10, tolerated_failure_count=2)
    raw = Raw(di)
    done = completions(di)
    job = di.prepare(numbered(40)).job_id
    held = raw.claim(job, "late")  # batch 0, held through the crossing
    crossing = di.process_worker_batch(job, failing({10, 11, 12}), "w")  # batch 1
    assert crossing.job_complete and crossing.failed_count == 3
    late = raw.commit(job, held)
    assert late.accepted and late.finalized is None
    status = di.status(job)
    assert status is not None
    assert (status.state, status.processed_records, status.failed_records) == ("FAILED", 17, 3)
    assert (status.completed_batches, status.pending_batches) == (2, 2)
    assert len(done) == 1


def test_a_resent_crossing_commit_answers_as_the_first(make_import: Make) -> None:
    """The crossing commit sent again (lost reply) reports the finalization, counts nothing."""
    di = make_import(batch_size=5, tolerated_failure_count=1)
    raw = Raw(di)
    job = di.prepare(numbered(20)).job_id
    held = raw.claim(job, "w")
    first = raw.commit(job, held, failed=2)
    again = raw.commit(job, held, failed=2)
    assert first.accepted and again.accepted
    assert first.finalized is not None and again.finalized == first.finalized
    status = di.status(job)
    assert status is not None and (status.processed_records, status.failed_records) == (3, 2)


def test_workers_enforce_the_thresholds_of_the_prepare(make_import: Make) -> None:
    """Thresholds given to the preparing facade hold for workers constructed without them."""
    orchestrator = make_import(batch_size=10, tolerated_failure_count=0)
    worker = make_import(batch_size=10)
    job = orchestrator.prepare(numbered(30)).job_id
    result = worker.process_worker_batch(job, failing({3}), "w")
    assert result.job_complete
    status = worker.status(job)
    assert status is not None and status.state == "FAILED"


def test_dead_lettered_records_count_toward_the_threshold(make_import: Make) -> None:
    """A claim that dead-letters a batch over the threshold fails the job and reports it once."""
    di = make_import(
        batch_size=5, tolerated_failure_count=3, max_batch_attempts=1, stale_batch_timeout=0.05
    )
    raw = Raw(di)
    job = di.prepare(numbered(20)).job_id
    raw.claim(job, "dies")
    time.sleep(0.1)  # its lease runs out: the next claim dead-letters it
    result = di.process_worker_batch(job, failing(set()), "w")
    assert (result.claimed, result.job_complete) == (False, True)
    status = di.status(job)
    assert status is not None and (status.state, status.failed_records) == ("FAILED", 5)


def test_threshold_options_are_checked() -> None:
    """Negative or out-of-range thresholds are refused at construction, naming the option."""
    import fakeredis

    client = fakeredis.FakeRedis()
    with pytest.raises(ConfigurationError, match="tolerated_failure_count"):
        DistributedImport(client, tolerated_failure_count=-1)
    with pytest.raises(ConfigurationError, match="tolerated_failure_percentage"):
        DistributedImport(client, tolerated_failure_percentage=101)
    with pytest.raises(TypeError, match="tolerated_failure_count"):
        DistributedImport(client, tolerated_failure_count=1.5)  # type: ignore[arg-type]


def _gated(count: int, gate: threading.Event, after: int) -> Iterator[dict[str, int]]:
    for i in range(count):
        if i == after:
            assert gate.wait(30)
        yield {"n": i}


def test_percentage_while_preparing_is_of_what_is_stored(make_import: Make) -> None:
    """While preparing, the percentage is of the records stored so far; the prepare then stops."""
    di = make_import(batch_size=5, max_pending_batches=2, tolerated_failure_percentage=40.0)
    gate = threading.Event()
    outcome: list[Any] = []
    thread = threading.Thread(
        target=lambda: outcome.append(
            di.prepare(IterableSource(_gated(50, gate, 10)), job_id="early")
        )
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while (status := di.status("early")) is None or status.total_records < 10:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        result = di.process_worker_batch("early", failing(set(range(5))), "w")
        assert result.job_complete  # 5 of 10 stored records failed: 50% > 40%
    finally:
        gate.set()
        thread.join(30)
    [prepared] = outcome
    assert prepared.total_records < 50  # the prepare stopped at its next batch
    status = di.status("early")
    assert status is not None and (status.state, status.failed_records) == ("FAILED", 5)
    with pytest.raises(ConfigurationError, match="prepare did not complete"):
        di.retry_failed("early")

"""Leases and resources (API contract, section 8): a worker that lost its batch stops
at the next retry; a facade leaves no thread behind once its calls have returned."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redisbatch import DistributedImport, IterableSource

Make = Callable[..., DistributedImport]


def test_a_lost_lease_stops_retries_and_their_backoff(make_import: Make) -> None:
    """A worker retrying a failing record with long backoffs (0.5 + 1 + 2 + 4 + 8 s) stops
    once its batch is reclaimed, within a heartbeat or so, and its commit is refused."""
    di = make_import(batch_size=5, max_retries=5, retry_delay=0.5, stale_batch_timeout=0.3)
    job = di.prepare(IterableSource({"n": i} for i in range(5))).job_id
    calls: list[int] = []
    results: list[Any] = []

    def failing(record: Any, ctx: Any) -> None:
        calls.append(ctx.record_index)
        raise ConnectionError("db away")

    thread = threading.Thread(
        target=lambda: results.append(di.process_worker_batch(job, failing, "loser"))
    )
    started = time.monotonic()
    thread.start()
    while not calls:
        time.sleep(0.01)
    assert di.reclaim_stale_batches(job, timeout=0) == 1
    thread.join(30)
    elapsed = time.monotonic() - started
    [lost] = results
    assert (lost.claimed, lost.accepted) == (True, False)
    assert elapsed < 5, f"kept retrying for {elapsed:.1f} s after losing its batch"
    assert len(calls) <= 6, calls  # one call per record, at most one retry
    summary = di.run_worker(job, lambda r, c: None)
    assert (summary.processed, summary.state) == (5, "COMPLETED")


def test_a_slow_retry_wait_keeps_the_batch(make_import: Make) -> None:
    """Backoff waits longer than the stale timeout do not lose the batch: the heartbeat
    runs during them, and an eager worker finds nothing to reclaim."""
    di = make_import(batch_size=2, max_retries=2, retry_delay=0.4, stale_batch_timeout=0.3)
    job = di.prepare(IterableSource({"n": i} for i in range(2))).job_id
    tries: dict[int, int] = {}
    results: list[Any] = []

    def flaky(record: Any, ctx: Any) -> None:
        tries[ctx.record_index] = tries.get(ctx.record_index, 0) + 1
        if tries[ctx.record_index] < 3:
            raise ConnectionError("db away")

    thread = threading.Thread(
        target=lambda: results.append(di.process_worker_batch(job, flaky, "patient"))
    )
    thread.start()
    time.sleep(0.5)
    eager = di.process_worker_batch(job, lambda r, c: None, "eager")
    thread.join(30)
    assert eager.reason == "NO_PENDING_BATCHES"
    [result] = results
    assert (result.accepted, result.processed_count, result.job_complete) == (True, 2, True)
    assert tries == {0: 3, 1: 3}


def test_no_thread_outlives_a_call(client: redis.Redis) -> None:
    """50 fresh facades (as a serverless handler builds one per invocation), each
    processing a batch: the thread count is back to where it was after each call."""
    namespace = f"r{uuid.uuid4().hex[:8]}"
    job = (
        DistributedImport(client, namespace=namespace, batch_size=1)
        .prepare(IterableSource({"n": i} for i in range(50)))
        .job_id
    )
    baseline = threading.active_count()
    for _ in range(50):
        di = DistributedImport(client, namespace=namespace)
        assert di.process_worker_batch(job, lambda r, c: None, "lambda").accepted
        assert threading.active_count() == baseline
    assert DistributedImport(client, namespace=namespace).run_worker(job, print).state == (
        "COMPLETED"
    )
    assert threading.active_count() == baseline


def test_a_waiting_worker_logs_who_holds_the_batches(
    make_import: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker waiting on a batch another worker holds says so at INFO, once per stale
    timeout, with the holder and how long until the batch is reclaimable."""
    di = make_import(batch_size=5, stale_batch_timeout=0.4)
    job = di.prepare(IterableSource({"n": i} for i in range(5))).job_id
    claimed = threading.Event()

    def slow(record: Any, ctx: Any) -> None:
        claimed.set()
        time.sleep(0.3)

    holder = threading.Thread(target=lambda: di.process_worker_batch(job, slow, "holder-1"))
    holder.start()
    claimed.wait(10)
    with caplog.at_level(logging.INFO, logger="redisbatch"):
        summary = di.run_worker(job, lambda r, c: None, "waiter")
    holder.join()
    assert summary.state == "COMPLETED" and summary.batches == 0
    waits = [r.getMessage() for r in caplog.records if "waiting on" in r.getMessage()]
    assert 1 <= len(waits) <= 5, waits  # 1.5 s of waiting, one line per 0.4 s at most
    assert "held by other workers (holder-1)" in waits[0] and "reclaimable in" in waits[0]


def test_stale_claims_and_dead_letters_are_logged(
    make_import: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """Taking over a batch another worker held logs at INFO; a dead-letter at WARNING."""
    di = make_import(batch_size=5, max_batch_attempts=2)
    job = di.prepare(IterableSource({"n": i} for i in range(5))).job_id

    def release(record: Any, ctx: Any) -> None:
        if ctx.record_index == 0:
            assert di.release_batch(job, ctx.batch_id, ctx.worker_id)

    with caplog.at_level(logging.INFO, logger="redisbatch"):
        assert not di.process_worker_batch(job, release, "first").accepted
        assert not di.process_worker_batch(job, release, "second").accepted
        summary = di.run_worker(job, lambda r, c: None, "third")
    assert summary.state == "FAILED"
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert any(
        level == "INFO" and "worker second took over batch 0 (delivery 2 of 2)" in text
        for level, text in messages
    ), messages
    assert any(
        level == "WARNING" and "batch 0 batch dead-lettered after 2 attempts" in text
        for level, text in messages
    ), messages

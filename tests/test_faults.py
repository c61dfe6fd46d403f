"""Fault tests with real processes: workers killed with SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid

import redis

from redisbatch import DistributedImport, IterableSource

from ._workers import poison_worker, slow_worker

SPAWN = multiprocessing.get_context("spawn")


def _wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_killed_worker_loses_nothing(real_url: str, real_client: redis.Redis) -> None:
    """SIGKILL one of three worker processes mid-job: the others finish with exact counts."""
    namespace = f"k{uuid.uuid4().hex[:8]}"
    di = DistributedImport(real_client, namespace=namespace, batch_size=50)
    job = di.prepare(IterableSource({"n": i} for i in range(1500))).job_id
    workers = [
        SPAWN.Process(target=slow_worker, args=(real_url, namespace, job, 1.0)) for _ in range(3)
    ]
    for w in workers:
        w.start()
    _wait_for(lambda: di.status(job).processed_records >= 300, 60)  # type: ignore[union-attr]
    victim = workers[0]
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    for w in workers:
        w.join(90)
        assert not w.is_alive()
    assert victim.exitcode == -signal.SIGKILL
    assert all(w.exitcode == 0 for w in workers[1:])
    status = di.status(job)
    assert status is not None
    assert status.state == "COMPLETED"
    assert (status.processed_records, status.failed_records) == (1500, 0)
    assert (status.completed_batches, status.failed_batches) == (30, 0)
    assert real_client.scard(f"{namespace}:seen") == 1500


def test_a_poison_batch_is_dead_lettered(real_url: str, real_client: redis.Redis) -> None:
    """A batch that kills every worker is dead-lettered after max_batch_attempts; the job ends."""
    namespace = f"p{uuid.uuid4().hex[:8]}"
    di = DistributedImport(real_client, namespace=namespace, batch_size=5, max_batch_attempts=2)
    job = di.prepare(IterableSource({"n": i} for i in range(30))).job_id
    exits = []
    for _ in range(8):
        process = SPAWN.Process(target=poison_worker, args=(real_url, namespace, job, 12))
        process.start()
        process.join(60)
        exits.append(process.exitcode)
        if di.status(job).is_complete:  # type: ignore[union-attr]
            break
    assert exits.count(-signal.SIGKILL) == 2, exits
    assert exits[-1] == 0
    status = di.status(job)
    assert status is not None
    assert status.state == "FAILED"
    assert (status.processed_records, status.failed_records) == (25, 5)
    assert (status.completed_batches, status.failed_batches) == (5, 1)
    failed = list(di.failed_records(job))
    assert [r.index for r in failed] == [10, 11, 12, 13, 14]
    assert {r.processing_error for r in failed} == {"batch dead-lettered after 2 attempts"}
    assert failed[0].raw == {"n": 10} and failed[0].status == "failed"

"""Stopping a worker (API contract, section 8): an interrupted worker commits what it
finished, hands the rest of its batch back at once (not counted as an attempt), and
lets the interruption go on."""

from __future__ import annotations

import _thread
import multiprocessing
import os
import signal
import threading
import time
import uuid
from typing import Any

import pytest
import redis

from redisbatch import DistributedImport, IterableSource

from ._workers import stoppable_worker

SPAWN = multiprocessing.get_context("spawn")


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_worker_commits_what_it_finished_and_hands_back_the_rest(
    client: redis.Redis, interruption: type[BaseException]
) -> None:
    """KeyboardInterrupt/SystemExit in the processor: the finished records are committed,
    the rest of the batch is claimable at once, the interruption propagates, and the
    hand-back is not an attempt (max_batch_attempts=1 does not dead-letter it). (On the
    async facade the same stop is a task cancellation: test_async.py.)"""
    di = DistributedImport(
        client,
        namespace=f"i{uuid.uuid4().hex[:8]}",
        batch_size=10,
        max_batch_attempts=1,
        stale_batch_timeout=60,
    )
    job = di.prepare(IterableSource({"n": i} for i in range(10))).job_id
    calls: list[int] = []

    def processor(record: Any, ctx: Any) -> None:
        calls.append(ctx.record_index)
        if ctx.record_index == 4 and calls.count(4) == 1:
            raise interruption()

    with pytest.raises(interruption):
        di.process_worker_batch(job, processor, "stopped")
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.processing_batches, status.pending_batches) == (
        4,
        0,
        1,
    )
    started = time.monotonic()
    summary = di.run_worker(job, processor, "other")
    assert time.monotonic() - started < 10, "the rest waited for the stale timeout"
    assert (summary.processed, summary.state, summary.finalized) == (6, "COMPLETED", True)
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.failed_records, status.failed_batches) == (10, 0, 0)
    assert calls == [0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9], "the interrupted record counts as not done"


def test_an_interruption_during_a_retry_wait_hands_the_batch_back(client: redis.Redis) -> None:
    """Ctrl-C during a retry's backoff sleep: the records before are committed, the
    retried record and the rest go back to the queue at once."""
    di = DistributedImport(
        client,
        namespace=f"s{uuid.uuid4().hex[:8]}",
        batch_size=5,
        max_retries=3,
        retry_delay=30.0,
        stale_batch_timeout=60,
    )
    job = di.prepare(IterableSource({"n": i} for i in range(5))).job_id

    def flaky(record: Any, ctx: Any) -> None:
        if ctx.record_index == 2:
            threading.Timer(0.2, _thread.interrupt_main).start()  # Ctrl-C, while backing off
            raise ConnectionError("db away")

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        di.process_worker_batch(job, flaky, "w")
    assert time.monotonic() - started < 10
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.processing_batches, status.pending_batches) == (
        2,
        0,
        1,
    )
    assert di.run_worker(job, lambda r, c: None).processed == 3


@pytest.mark.parametrize(
    ("how", "facade"),
    [("SIGTERM", "sync"), ("SIGINT", "sync"), ("SIGTERM", "async"), ("SIGINT", "async")],
)
def test_a_signalled_worker_process_hands_its_batch_back(
    real_url: str, real_client: redis.Redis, how: str, facade: str
) -> None:
    """SIGTERM (with handle_signals=True) or SIGINT to a worker process mid-batch: it exits,
    its finished records are committed, and another worker finishes the job well within
    the 60 s stale timeout, counts exact, the batch's attempt count unchanged."""
    namespace = f"g{uuid.uuid4().hex[:8]}"
    di = DistributedImport(real_client, namespace=namespace, batch_size=40, stale_batch_timeout=60)
    job = di.prepare(IterableSource({"n": i} for i in range(40))).job_id
    worker = SPAWN.Process(target=stoppable_worker, args=(real_url, namespace, job, facade))
    worker.start()
    deadline = time.monotonic() + 60
    while real_client.scard(f"{namespace}:seen") < 3:
        assert time.monotonic() < deadline and worker.is_alive(), "the worker did not start"
        time.sleep(0.02)
    assert worker.pid is not None
    os.kill(worker.pid, getattr(signal, how))
    worker.join(30)
    assert not worker.is_alive()
    assert worker.exitcode == (143 if how == "SIGTERM" else 130)
    status = di.status(job)
    assert status is not None
    committed = status.processed_records
    assert 2 <= committed < 40 and status.processing_batches == 0
    keys = di._core.store.keys(job)
    assert int(real_client.hget(keys.batches, "a:0") or 0) == 0, "the stop counted as an attempt"
    started = time.monotonic()
    rest = di.run_worker(job, lambda r, c: real_client.sadd(f"{namespace}:seen", r["n"]))
    assert time.monotonic() - started < 20
    assert (rest.processed, rest.state) == (40 - committed, "COMPLETED")
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.failed_records) == (40, 0)
    assert (status.completed_batches, status.failed_batches) == (1, 0)
    assert real_client.scard(f"{namespace}:seen") == 40


def test_handle_signals_restores_the_previous_handler(client: redis.Redis) -> None:
    """run_worker(handle_signals=True) puts back the SIGTERM handler it found."""

    def mine(signum: int, frame: Any) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        di = DistributedImport(client, namespace=f"h{uuid.uuid4().hex[:8]}")
        job = di.prepare(IterableSource({"n": i} for i in range(3))).job_id
        seen: list[Any] = []
        summary = di.run_worker(
            job, lambda r, c: seen.append(signal.getsignal(signal.SIGTERM)), handle_signals=True
        )
        assert summary.processed == 3 and all(h is not mine for h in seen)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_sigterm_outside_user_code_waits_for_a_safe_point(client: redis.Redis) -> None:
    """With handle_signals=True, a SIGTERM arriving in the library's own code (here: an
    event handler, right after the claim) stops the worker at the next safe point: the
    batch goes back whole, not as an attempt (max_batch_attempts=1: no dead-letter)."""
    namespace = f"t{uuid.uuid4().hex[:8]}"
    di = DistributedImport(
        client, namespace=namespace, batch_size=5, max_batch_attempts=1, stale_batch_timeout=60
    )
    job = di.prepare(IterableSource({"n": i} for i in range(5))).job_id
    di.on("batch:claimed", lambda event: os.kill(os.getpid(), signal.SIGTERM))
    calls: list[int] = []
    with pytest.raises(SystemExit) as stopped:
        di.run_worker(job, lambda r, c: calls.append(c.record_index), handle_signals=True)
    assert stopped.value.code == 143 and calls == []
    status = di.status(job)
    assert status is not None
    assert (status.processing_batches, status.pending_batches, status.processed_records) == (
        0,
        1,
        0,
    )
    other = DistributedImport(client, namespace=namespace, max_batch_attempts=1)
    summary = other.run_worker(job, lambda r, c: calls.append(c.record_index))
    assert (summary.processed, summary.state) == (5, "COMPLETED")
    assert calls == [0, 1, 2, 3, 4]


def test_an_async_sigterm_in_a_redis_call_waits_for_the_commit(client: redis.Redis) -> None:
    """Async facade, handle_signals=True: a SIGTERM arriving while the worker is between
    its last record and its commit lets the commit through, then stops the worker with
    SystemExit(143) before it claims again."""
    import asyncio

    import fakeredis
    import redis.asyncio

    from redisbatch import AsyncDistributedImport, Hooks

    namespace = f"u{uuid.uuid4().hex[:8]}"
    sync = DistributedImport(client, namespace=namespace, batch_size=5, stale_batch_timeout=60)
    job = sync.prepare(IterableSource({"n": i} for i in range(10))).job_id

    def after(result: Any, ctx: Any) -> None:
        if ctx.record_index == 4:  # the batch's last record: SIGTERM before the commit
            os.kill(os.getpid(), signal.SIGTERM)

    async def worker() -> None:
        if isinstance(client, fakeredis.FakeRedis):
            server = client.connection_pool.connection_kwargs["server"]
            async_client: Any = fakeredis.FakeAsyncRedis(server=server)
        else:
            kwargs = client.connection_pool.connection_kwargs
            async_client = redis.asyncio.Redis(host=kwargs["host"], port=kwargs["port"])
        di = AsyncDistributedImport(
            async_client, namespace=namespace, stale_batch_timeout=60,
            hooks=Hooks(after_process=after),
        )  # fmt: skip
        try:
            await di.run_worker(job, lambda r, c: None, handle_signals=True)
        finally:
            await async_client.aclose()

    with pytest.raises(SystemExit) as stopped:
        asyncio.run(worker())
    assert stopped.value.code == 143
    status = sync.status(job)
    assert status is not None
    assert (status.processed_records, status.processing_batches, status.completed_batches) == (
        5,
        0,
        1,
    )

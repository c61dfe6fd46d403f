"""A worker waiting for batches (the job not created yet, or being prepared with
nothing stored yet) starts as soon as a batch is stored: its wait between claims
blocks on the job's queue stream (XREAD BLOCK) instead of sleeping out its poll
interval. On a real server, through both facades; with the poll interval made
30 s, a worker that slept instead would not finish within the tests' bounds."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from redisbatch import AsyncDistributedImport, DistributedImport, IterableSource
from redisbatch._config import Settings
from redisbatch._effects import block_ms, block_outcome

from .test_failover import failing_scripts


@pytest.fixture
def long_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waits between claims of 30 s: only a wake-up ends them in time."""
    monkeypatch.setattr(Settings, "poll_interval", property(lambda self: (30.0, 30.0)))


def slow_records(n: int, delay: float) -> Iterator[dict[str, Any]]:
    """The source of a prepare that stores nothing for ``delay`` seconds."""
    time.sleep(delay)
    yield from ({"n": i} for i in range(n))


def test_a_sync_worker_started_before_its_job_starts_with_the_first_batch(
    real_url: str, long_polls: None
) -> None:
    """run_worker waiting for a job that does not exist yet, then for the
    first batch of a prepare that stores nothing for a while: it runs the job
    as soon as the batches come, both waits cut short."""
    namespace = f"w{uuid.uuid4().hex[:8]}"
    worker = DistributedImport(redis.Redis.from_url(real_url), namespace=namespace, batch_size=5)
    boss = DistributedImport(redis.Redis.from_url(real_url), namespace=namespace, batch_size=5)
    summaries: list[Any] = []
    thread = threading.Thread(
        target=lambda: summaries.append(
            worker.run_worker("late", lambda r, c: None, "w", wait_for_job=60)
        )
    )
    thread.start()
    time.sleep(0.3)  # the worker is in its first wait: no job yet
    boss.prepare(IterableSource(slow_records(20, 0.3)), job_id="late")
    thread.join(10)
    assert not thread.is_alive(), "the worker slept out its poll interval"
    assert (summaries[0].processed, summaries[0].state) == (20, "COMPLETED")


def test_an_async_worker_started_before_its_job_starts_with_the_first_batch(
    real_url: str, long_polls: None
) -> None:
    """The same through AsyncDistributedImport."""

    async def scenario() -> None:
        namespace = f"w{uuid.uuid4().hex[:8]}"
        client = redis.asyncio.Redis.from_url(real_url)
        worker = AsyncDistributedImport(client, namespace=namespace, batch_size=5)
        boss = DistributedImport(redis.Redis.from_url(real_url), namespace=namespace, batch_size=5)
        running = asyncio.create_task(
            worker.run_worker("late", lambda r, c: None, "w", wait_for_job=60)
        )
        await asyncio.sleep(0.3)
        await asyncio.to_thread(boss.prepare, IterableSource(slow_records(20, 0.3)), job_id="late")
        summary = await asyncio.wait_for(running, 10)
        assert (summary.processed, summary.state) == (20, "COMPLETED")
        await client.aclose()

    asyncio.run(scenario())


def test_a_blocking_read_stays_within_the_socket_timeout() -> None:
    """A wait stands in as blocking reads of whole ms, each ending well within
    the connection's socket timeout (redis-py's default is 5 s): a 30 s wait on
    such a connection is several reads; a wait under a ms is no read."""
    assert block_ms(30.0, None) == 30_000
    assert block_ms(30.0, 5) == 4_750
    assert block_ms(0.64, 5) == 640
    assert block_ms(0.0004, None) == 0
    assert block_ms(1.0, 0.1) == 0


def test_a_blocking_read_that_answers_at_once_cannot_block() -> None:
    """An entry ends the wait; an empty answer after the block timed out lets
    the wait block again; an empty answer long before it (fakeredis's raw
    connection does not block) means the wait sleeps instead."""
    assert block_outcome([[b"q", [(b"1-0", {})]]], 0.001, 640) is True
    assert block_outcome(None, 0.64, 640) is False
    assert block_outcome(None, 0.0, 640) is None


def test_a_worker_waiting_on_a_paused_job_sleeps_through_stored_batches(
    real_url: str, long_polls: None
) -> None:
    """Batches a prepare stores into a paused job are not claimable: they do
    not wake a worker waiting on it into one claim after another."""
    namespace = f"w{uuid.uuid4().hex[:8]}"
    boss = DistributedImport(redis.Redis.from_url(real_url), namespace=namespace, batch_size=5)
    worker = DistributedImport(redis.Redis.from_url(real_url), namespace=namespace)
    paused = threading.Event()

    def records() -> Iterator[dict[str, Any]]:
        yield from ({"n": i} for i in range(5))
        paused.wait(10)
        for i in range(5, 30):  # five more batches, stored while the job is paused
            time.sleep(0.01)
            yield {"n": i}

    preparing = threading.Thread(
        target=lambda: boss.prepare(IterableSource(records()), job_id="paused")
    )
    preparing.start()
    deadline = time.monotonic() + 10
    while boss.status("paused") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert boss.pause("paused")
    called = failing_scripts(worker, "none", [])
    summaries: list[Any] = []
    waiting = threading.Thread(
        target=lambda: summaries.append(
            worker.run_worker("paused", lambda r, c: None, "w", time_budget=1.5)
        )
    )
    waiting.start()
    time.sleep(0.3)  # the worker found the job paused and waits
    paused.set()
    preparing.join(10)
    waiting.join(10)
    status = boss.status("paused")
    assert status is not None and (status.state, status.total_batches) == ("PAUSED", 6)
    assert summaries and summaries[0].processed == 0
    assert called.count("claimBatch") == 1, called


def test_a_worker_waiting_for_its_job_stops_when_its_time_budget_is_spent(
    make_import: Any, long_polls: None
) -> None:
    """A job that never comes: the worker's wait for it ends with its time
    budget, not with its poll interval or wait_for_job."""
    worker = make_import()
    started = time.monotonic()
    summary = worker.run_worker("never", lambda r, c: None, "w", wait_for_job=20, time_budget=0.3)
    assert time.monotonic() - started < 5
    assert (summary.batches, summary.state) == (0, None)

"""Backpressure (max_pending_batches) and resumable prepare."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redisbatch import (
    DistributedImport,
    Field,
    IterableSource,
    JobExistsError,
    Schema,
)

from ._workers import resume_rows, slow_prepare

Make = Callable[..., DistributedImport]
SPAWN = multiprocessing.get_context("spawn")


def test_backpressure_holds_prepare_at_max_pending_batches(make_import: Make) -> None:
    """With max_pending_batches=5 and no worker prepare stores 5 batches and waits;
    a worker draining them lets it finish; never more than 5 unclaimed batches."""
    di = make_import(batch_size=10, max_pending_batches=5, stale_batch_timeout=1.0)
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(
            di.prepare(IterableSource({"n": i} for i in range(300)), job_id="bp")
        )
    )
    thread.start()
    deadline = time.monotonic() + 10
    while (di.status("bp") is None or di.status("bp").total_batches < 5) and (  # type: ignore[union-attr]
        time.monotonic() < deadline
    ):
        time.sleep(0.01)
    time.sleep(0.3)
    status = di.status("bp")
    assert status is not None and status.total_batches == 5 and status.pending_batches == 5
    assert thread.is_alive(), "prepare must wait for room"

    most_unclaimed = 0
    watching = True

    def watch() -> None:
        nonlocal most_unclaimed
        while watching:
            current = di.status("bp")
            if current is not None:
                most_unclaimed = max(most_unclaimed, current.pending_batches)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    summary = di.run_worker("bp", lambda r, c: time.sleep(0.001))
    watching = False
    watcher.join()
    thread.join(10)
    assert not thread.is_alive()
    assert result[0].total_records == 300 and summary.processed == 300
    assert most_unclaimed <= 5


def test_a_full_window_is_refilled_once_half_of_it_is_claimed(make_import: Make) -> None:
    """Under max_pending_batches=4, one claimed batch lets no new batch in; the
    second lets two in at once (the window is refilled from half, in one store)."""
    di = make_import(batch_size=10, max_pending_batches=4, stale_batch_timeout=1.0)
    prepared: list[Any] = []
    thread = threading.Thread(
        target=lambda: prepared.append(
            di.prepare(IterableSource({"n": i} for i in range(200)), job_id="half")
        ),
        daemon=True,
    )
    thread.start()
    try:
        _refill_in_halves(di, thread)
        assert len(prepared) == 1, "the prepare did not return"
        assert (prepared[0].total_records, prepared[0].total_batches) == (200, 20)
        status = di.status("half")
        assert status is not None
        assert (status.state, status.processed_records) == ("COMPLETED", 200)
    finally:
        if thread.is_alive():
            di.abort("half")  # a waiting prepare ends on an aborted job


def _refill_in_halves(di: DistributedImport, thread: threading.Thread) -> None:

    def stored_batches(expected: int) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = di.status("half")
            if status is not None and status.total_batches >= expected:
                break
            time.sleep(0.01)
        time.sleep(0.3)  # room for a prepare that would store more than expected
        status = di.status("half")
        assert status is not None
        return status.total_batches

    assert stored_batches(4) == 4
    assert di.process_worker_batch("half", lambda r, c: None, "w").claimed
    assert stored_batches(4) == 4
    assert di.process_worker_batch("half", lambda r, c: None, "w").claimed
    assert stored_batches(6) == 6
    di.run_worker("half", lambda r, c: None, "w")
    thread.join(10)
    assert not thread.is_alive()


def test_prepare_with_resume_on_a_new_or_finished_job(make_import: Make) -> None:
    """resume=True starts a missing job, and still refuses a job that finished preparing."""
    di = make_import(batch_size=10)
    first = di.prepare(IterableSource({"n": i} for i in range(25)), job_id="r1", resume=True)
    assert first.total_records == 25
    with pytest.raises(JobExistsError):
        di.prepare(IterableSource([]), job_id="r1", resume=True)
    with pytest.raises(ValueError, match="job_id"):
        di.prepare(IterableSource([]), resume=True)


def test_resume_after_a_killed_prepare_gives_the_same_job(
    real_url: str, real_client: redis.Redis
) -> None:
    """A prepare SIGKILLed halfway, resumed, equals an uninterrupted prepare: same stored
    batches byte for byte, same duplicates, same results after processing."""
    namespace = f"rs{uuid.uuid4().hex[:6]}"
    count = 3000
    child = SPAWN.Process(target=slow_prepare, args=(real_url, namespace, "resumed", count))
    child.start()
    schema = Schema([Field("email", "email"), Field("n", "integer")], unique_fields=["email"])
    di = DistributedImport(real_client, schema, batch_size=100, namespace=namespace)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = di.status("resumed")
        if status is not None and status.total_batches >= 8:
            break
        time.sleep(0.01)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    interrupted = di.status("resumed")
    assert interrupted is not None and interrupted.state == "PREPARING"
    assert 0 < interrupted.total_batches < count // 100

    resumed = di.prepare(IterableSource(resume_rows(count)), job_id="resumed", resume=True)
    reference = di.prepare(IterableSource(resume_rows(count)), job_id="reference")
    assert (resumed.total_records, resumed.total_batches) == (count, count // 100)
    assert (reference.total_records, reference.total_batches) == (count, count // 100)
    for job in ("resumed", "reference"):
        assert di.status(job).state == "PROCESSING"  # type: ignore[union-attr]
    keys = {job: di._core.store.keys(job) for job in ("resumed", "reference")}
    assert real_client.hgetall(keys["resumed"].records) == real_client.hgetall(
        keys["reference"].records
    )
    fields = [f"d:{i}" for i in range(count // 100)]
    assert real_client.hmget(keys["resumed"].batches, fields) == real_client.hmget(
        keys["reference"].batches, fields
    )
    outcome = {}
    for job in ("resumed", "reference"):
        summary = di.run_worker(job, lambda r, c: None)
        failed = [(r.index, [e.code for e in r.errors]) for r in di.failed_records(job)]
        outcome[job] = (summary.processed, summary.failed, failed)
    assert outcome["resumed"] == outcome["reference"]
    assert outcome["resumed"][1] > 0


class _Killed(BaseException):
    """Stands in for the orchestrator's process dying mid-prepare."""


def test_resume_needs_the_same_max_batch_bytes(make_import: Make) -> None:
    """A resume cutting batches by another byte cap would skip the wrong records: refused."""
    rows = [{"n": str(i), "pad": "x" * 500} for i in range(40)]

    def dies_halfway() -> Any:
        yield from rows[:20]
        raise _Killed

    first = make_import(batch_size=10, max_batch_bytes=4096)
    with pytest.raises(_Killed):
        first.prepare(IterableSource(dies_halfway()), job_id="cut")
    other = make_import(batch_size=10, max_batch_bytes=8192)
    with pytest.raises(ValueError, match="max_batch_bytes=4096"):
        other.prepare(IterableSource(rows), job_id="cut", resume=True)
    result = first.prepare(IterableSource(rows), job_id="cut", resume=True)
    assert result.total_records == 40


def test_resume_after_a_payload_stored_without_its_script(
    make_import: Make, client: redis.Redis
) -> None:
    """A prepare died between a batch's HSETNX and its storeBatch (the payload
    is there, the batch is not): the resumed prepare stores that batch once,
    and every record is processed exactly once."""
    di = make_import(batch_size=3)
    di.prepare(IterableSource({"n": i} for i in range(10)), job_id="whole")
    whole = client.hgetall(di._core.store.keys("whole").records)

    def dying() -> Any:
        for i in range(7):
            yield {"n": i}
        raise _Killed

    with pytest.raises(_Killed):
        di.prepare(IterableSource(dying()), job_id="cut")
    status = di.status("cut")
    assert status is not None and status.state == "PREPARING"
    stored = status.total_batches
    client.hsetnx(di._core.store.keys("cut").records, stored, whole[str(stored).encode()])
    result = di.prepare(IterableSource({"n": i} for i in range(10)), job_id="cut", resume=True)
    assert (result.total_records, result.total_batches) == (10, 4)
    seen: list[int] = []
    summary = di.run_worker("cut", lambda record, ctx: seen.append(ctx.record_index))
    assert sorted(seen) == list(range(10))
    assert (summary.processed, summary.state) == (10, "COMPLETED")

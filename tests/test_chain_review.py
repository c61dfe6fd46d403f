"""Review probes of claims riding on commits (bcea059): a worker stopped between
a commit that claimed its next batch and that batch's lease must give the batch
back at once, not leave it for the stale timeout."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redisbatch import AsyncDistributedImport, DistributedImport, IterableSource
from redisbatch._effects import Lease, StartHeartbeat, StopHeartbeat
from redisbatch._scripts import ScriptCall
from redisbatch._store import NextClaim

from .test_chained_claims import _applied_then_failing
from .test_store import Raw

Make = Callable[..., DistributedImport]


def _ns() -> str:
    return f"rv{uuid.uuid4().hex[:8]}"


def records(n: int) -> IterableSource:
    return IterableSource({"n": i} for i in range(n))


def _cancel_at_a_stop_heartbeat(driver: Any, after_commits: int) -> Callable[[], None]:
    """Makes the async driver cancel its task at the first StopHeartbeat met once
    ``after_commits`` commits were sent (the cancellation lands in the await of
    the heartbeat task's end); returns what undoes it."""
    perform = driver._perform
    commits: list[bool] = []
    cancelled: list[bool] = []

    async def cancelling_perform(effect: Any, held: Any) -> Any:
        if isinstance(effect, StopHeartbeat) and len(commits) == after_commits and not cancelled:
            cancelled.append(True)
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        reply = await perform(effect, held)
        if isinstance(effect, ScriptCall) and effect.script.name == "commitBatch":
            commits.append(True)
        return reply

    driver._perform = cancelling_perform

    def undo() -> None:
        driver._perform = perform

    return undo


def test_ctrl_c_in_a_batch_completed_handler_gives_back_the_chained_batch(
    client: Any,
) -> None:
    """Ctrl-C while a ``batch:completed`` handler runs (after the commit that also
    claimed the next batch): the worker stops holding nothing; the next batch is
    pending again, not processing until the (60 s) stale timeout."""
    di = DistributedImport(client, batch_size=2, stale_batch_timeout=60, namespace=_ns())
    job = di.prepare(records(6)).job_id

    def stop(event: Any) -> None:
        raise KeyboardInterrupt

    di.on("batch:completed", stop)
    with pytest.raises(KeyboardInterrupt):
        di.run_worker(job, lambda r, c: None, "w")
    status = di.status(job)
    assert status is not None
    assert (status.completed_batches, status.processing_batches, status.pending_batches) == (
        1,
        0,
        2,
    )


def test_a_cancellation_while_the_committed_batch_s_heartbeat_stops_gives_back_the_next(
    async_client_factory: Callable[[], Any],
) -> None:
    """The async driver: the task is cancelled while it waits for the committed
    batch's heartbeat task to end (the await right after a commit that claimed
    the next batch). The next batch is given back at once."""

    async def scenario() -> None:
        di = AsyncDistributedImport(
            async_client_factory(), batch_size=2, stale_batch_timeout=60, namespace=_ns()
        )
        job = (await di.prepare(records(6))).job_id
        _cancel_at_a_stop_heartbeat(di._driver, after_commits=1)
        with pytest.raises(asyncio.CancelledError):
            await di.run_worker(job, lambda r, c: None, "w")
        status = await di.status(job)
        assert status is not None
        assert (status.completed_batches, status.processing_batches, status.pending_batches) == (
            1,
            0,
            2,
        )
        await di.redis.aclose()

    asyncio.run(scenario())


def test_a_chained_commit_failing_past_the_ride_out_stops_its_heartbeat(
    make_import: Callable[..., Any],
) -> None:
    """A commit claiming the next batch keeps its batch's lease during the call;
    when the call fails past the ride-out, the flow stops that lease too (it
    does not stay among the run's held batches, heartbeating a batch given back)."""
    di = make_import(batch_size=2, stale_batch_timeout=1.0)
    job = di.prepare(records(6)).job_id
    lost = _applied_then_failing(di, "commitBatch", time.monotonic() + 1.5)
    driver = di._async._driver if hasattr(di, "_async") else di._driver
    perform = driver._perform
    started: list[Any] = []
    stopped: list[Any] = []

    def note(effect: Any) -> None:
        if isinstance(effect, StartHeartbeat):
            started.append(effect.lease)
        elif isinstance(effect, StopHeartbeat):
            stopped.append(effect.lease)

    if inspect.iscoroutinefunction(perform):

        async def async_perform(effect: Any, held: Any) -> Any:
            note(effect)
            return await perform(effect, held)

        driver._perform = async_perform
    else:

        def sync_perform(effect: Any, held: Any) -> Any:
            note(effect)
            return perform(effect, held)

        driver._perform = sync_perform
    summary = di.run_worker(job, lambda r, c: None, "w")
    assert len(lost) >= 2 and summary.state == "COMPLETED"
    assert [id(lease) for lease in started if lease not in stopped] == []


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_sigterm_during_a_chained_commit_stops_before_the_next_batch(
    client: Any, attempts: int
) -> None:
    """handle_signals=True, a SIGTERM while a commit that claims the next batch is
    on its way: the commit goes through, the worker exits 143 without running a
    record of the next batch, which is pending again and not counted as a
    delivery (max_batch_attempts=1: not dead-lettered)."""
    namespace = _ns()
    di = DistributedImport(
        client,
        namespace=namespace,
        batch_size=5,
        max_batch_attempts=attempts,
        stale_batch_timeout=60,
    )
    job = di.prepare(records(10)).job_id
    original = di._driver.script

    def script(call: Any) -> Any:
        if call.script.name == "commitBatch":
            os.kill(os.getpid(), signal.SIGTERM)
        return original(call)

    di._driver.script = script  # type: ignore[method-assign]
    seen: list[int] = []
    with pytest.raises(SystemExit) as stopped:
        di.run_worker(job, lambda r, c: seen.append(r["n"]), "w", handle_signals=True)
    assert stopped.value.code == 143
    assert seen == [0, 1, 2, 3, 4]
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.completed_batches) == (5, 1)
    assert (status.processing_batches, status.pending_batches, status.failed_batches) == (0, 1, 0)
    di._driver.script = original  # type: ignore[method-assign]
    summary = di.run_worker(job, lambda r, c: seen.append(r["n"]), "w2")
    assert (summary.processed, summary.state) == (5, "COMPLETED")
    assert seen == list(range(10))


@pytest.mark.parametrize("budget", [None, 60.0])
def test_a_chained_claim_that_dead_letters_the_last_batch_finalizes_once(
    make_import: Callable[..., Any], budget: float | None
) -> None:
    """The claim riding on a commit takes over a stale batch past
    max_batch_attempts: it dead-letters it and finalizes the job. The worker
    reports the dead letter and job:completed exactly once, and its summary says
    it finalized the job."""
    di = make_import(batch_size=2, max_batch_attempts=1, stale_batch_timeout=0.3)
    job = di.prepare(records(4)).job_id
    events: list[Any] = []
    di.on_any(events.append)
    abandoned = di._driver.run(di._core.store.claim(job, "gone"))
    assert abandoned.batch_index == 0
    started = time.monotonic()

    def slow(record: Any, ctx: Any) -> None:
        while time.monotonic() - started < 0.5:  # batch 0 goes stale meanwhile
            time.sleep(0.05)

    summary = di.run_worker(job, slow, "w", time_budget=budget)
    assert (summary.batches, summary.processed, summary.failed) == (1, 2, 0)
    assert summary.finalized and summary.state == "FAILED"
    kinds = [event.type for event in events]
    assert kinds.count("job:completed") == 1
    assert [e.batch_index for e in events if e.type == "batch:failed"] == [0]
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.failed_records, status.failed_batches) == (2, 2, 1)


def test_a_cancellation_right_after_the_finalizing_commit_still_reports_the_job_once(
    async_client_factory: Callable[[], Any],
) -> None:
    """The async driver: the task is cancelled while it waits for the heartbeat
    of the batch whose chained commit finalized the job. That worker finalized
    the job (nobody else will report it): it still emits job:completed, once,
    and the batch's batch:completed, before the cancellation ends it."""

    async def scenario() -> None:
        di = AsyncDistributedImport(
            async_client_factory(), batch_size=2, stale_batch_timeout=60, namespace=_ns()
        )
        job = (await di.prepare(records(4))).job_id
        events: list[Any] = []
        di.on_any(events.append)
        _cancel_at_a_stop_heartbeat(di._driver, after_commits=2)
        with pytest.raises(asyncio.CancelledError):
            await di.run_worker(job, lambda r, c: None, "w")
        status = await di.status(job)
        assert status is not None and status.state == "COMPLETED"
        kinds = [event.type for event in events]
        assert kinds.count("batch:completed") == 2
        assert kinds.count("job:completed") == 1
        await di.redis.aclose()

    asyncio.run(scenario())


def test_a_cancellation_while_the_heartbeat_stops_before_a_commit_still_commits(
    async_client_factory: Callable[[], Any],
) -> None:
    """The async driver, a single-batch call (its commit claims nothing and stops
    the lease before the call): cancelled while it waits for the heartbeat task
    to end, the worker still commits the batch it finished, then stops; the
    batch is neither lost for the stale timeout nor run again."""

    async def scenario() -> None:
        di = AsyncDistributedImport(
            async_client_factory(), batch_size=2, stale_batch_timeout=60, namespace=_ns()
        )
        job = (await di.prepare(records(4))).job_id
        undo = _cancel_at_a_stop_heartbeat(di._driver, after_commits=0)
        seen: list[int] = []
        with pytest.raises(asyncio.CancelledError):
            await di.process_worker_batch(
                job, lambda r, c: seen.append(r["n"]), "w", time_budget=60
            )
        status = await di.status(job)
        assert status is not None
        assert (status.completed_batches, status.processing_batches, status.pending_batches) == (
            1,
            0,
            1,
        )
        undo()
        summary = await di.run_worker(job, lambda r, c: seen.append(r["n"]), "w2")
        assert summary.state == "COMPLETED" and sorted(seen) == [0, 1, 2, 3]
        await di.redis.aclose()

    asyncio.run(scenario())


def _ctrl_c_after_a_commit(di: DistributedImport, when: str) -> list[str]:
    """Ctrl-C while the first chained commit is on its way: ``before`` the server
    gets it, or ``after`` it applied (its reply unread)."""
    original = di._driver.script
    calls: list[str] = []

    def script(call: Any) -> Any:
        calls.append(call.script.name)
        if call.script.name == "commitBatch" and calls.count("commitBatch") == 1:
            if when == "before":
                raise KeyboardInterrupt
            original(call)
            raise KeyboardInterrupt
        return original(call)

    di._driver.script = script  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("when", ["before", "after"])
def test_ctrl_c_during_a_chained_commit_gives_back_both_batches(client: Any, when: str) -> None:
    """Ctrl-C while a commit that claims the next batch is on its way: the batch,
    if the commit did not land, and the next one, if it was claimed, are pending
    again at once; counts exact, nothing run twice once another worker ends the job."""
    di = DistributedImport(client, batch_size=2, stale_batch_timeout=60, namespace=_ns())
    job = di.prepare(records(6)).job_id
    _ctrl_c_after_a_commit(di, when)
    seen: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        di.run_worker(job, lambda r, c: seen.append(r["n"]), "w")
    status = di.status(job)
    assert status is not None
    landed = 1 if when == "after" else 0
    assert (status.completed_batches, status.processing_batches, status.pending_batches) == (
        landed,
        0,
        3 - landed,
    )
    other = DistributedImport(client, batch_size=2, namespace=di._core.store.namespace)
    summary = other.run_worker(job, lambda r, c: seen.append(r["n"]), "w2")
    assert summary.state == "COMPLETED" and summary.processed == 6 - 2 * landed
    assert sorted(seen) == sorted([0, 1] * (1 - landed) + list(range(6)))


def test_ctrl_c_during_a_chained_commit_on_a_cluster(cluster_url: str) -> None:
    """The same give-back on a Redis Cluster (held_by's commands routed by key)."""
    client = redis.RedisCluster.from_url(cluster_url)
    di = DistributedImport(client, batch_size=2, stale_batch_timeout=60, namespace=_ns())
    job = di.prepare(records(6)).job_id
    _ctrl_c_after_a_commit(di, "after")
    with pytest.raises(KeyboardInterrupt):
        di.run_worker(job, lambda r, c: None, "w")
    status = di.status(job)
    assert status is not None
    assert (status.completed_batches, status.processing_batches, status.pending_batches) == (
        1,
        0,
        2,
    )
    client.close()


def _chained_commit(raw: Any, job: str, claim: Any, request: Any) -> Any:
    assert claim.batch_index is not None and claim.batch is not None
    return raw.run(
        raw.store.commit(
            job,
            claim.batch_index,
            claim.token,
            processed=len(claim.batch),
            failed=0,
            batch_state="COMPLETED",
            failed_payload=b"",
            claim_next=request,
        )
    )


def test_a_repeated_chained_commit_after_its_batch_went_elsewhere_claims_anew(
    make_import: Callable[..., Any],
) -> None:
    """A chained commit's reply is lost; before it is sent again, the batch its
    claim took goes stale and another worker takes it over and commits it. The
    repeat answers the commit as applied (counted once) and claims a batch the
    worker can run, not the one now settled by the other."""
    di = make_import(batch_size=2, stale_batch_timeout=0.1)
    job = di.prepare(records(8)).job_id
    raw = Raw(di)
    first = raw.claim(job, "w")
    request = NextClaim("w")
    once = _chained_commit(raw, job, first, request)
    assert once.next_claim is not None and once.next_claim.batch_index == 1
    time.sleep(0.15)
    taken = raw.claim(job, "w2")
    assert taken.batch_index == 1 and taken.attempt == 2
    assert raw.commit(job, taken).accepted
    again = _chained_commit(raw, job, first, request)
    assert again.accepted and again.next_claim is not None
    assert again.next_claim.batch_index == 2
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.completed_batches) == (4, 2)
    assert (status.processing_batches, status.pending_batches) == (1, 1)


def test_a_repeated_chained_commit_into_a_re_created_job_is_stale(
    make_import: Callable[..., Any],
) -> None:
    """The job is deleted and prepared again under the same id between a chained
    commit and its repeat: the repeat is refused and claims nothing."""
    di = make_import(batch_size=2)
    job = di.prepare(records(4)).job_id
    raw = Raw(di)
    first = raw.claim(job, "w")
    request = NextClaim("w")
    assert _chained_commit(raw, job, first, request).accepted
    assert di.delete(job)
    assert di.prepare(records(4), job_id=job).job_id == job
    again = _chained_commit(raw, job, first, request)
    assert not again.accepted and again.next_claim is None
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.processing_batches, status.pending_batches) == (
        0,
        0,
        2,
    )


def test_a_sync_lease_stopped_twice_is_left_as_it_is(client: Any) -> None:
    """A flow interrupted while its lease stops stops it again (_stop_lease): the
    sync driver's second stop is a no-op, not a ValueError replacing the
    interruption."""
    di = DistributedImport(client, batch_size=2, namespace=_ns())
    job = di.prepare(records(2)).job_id
    store = di._core.store
    claim = di._driver.run(store.claim(job, "w"))
    assert claim.batch_index is not None
    lease = Lease(
        heartbeat=store.heartbeat_call(job, "w", claim.batch_index, claim.token), interval=60
    )

    def flow() -> Any:
        yield StartHeartbeat(lease)
        yield StopHeartbeat(lease)
        yield StopHeartbeat(lease)
        return "done"

    assert di._driver.run(flow()) == "done"

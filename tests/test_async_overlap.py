"""An async worker with several lanes starts its next batch while the last
records of its current batch run: two batches held, one budget of lanes."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redisbatch import AsyncDistributedImport, DistributedImport
from redisbatch._worker import give_back_unknown
from tests._numbered import numbered

STUCK = 30.0  # how long a record waits for something that should come at once


def test_the_next_batch_starts_while_the_last_records_run(make_async: Any) -> None:
    """The last record of batch 0 waits for a record of batch 1 to start: it only
    finishes because the worker claimed batch 1 into the idle lanes. Never more
    records in flight than lanes; counts and events exact."""

    async def scenario() -> None:
        di = make_async(batch_size=4, concurrency=3)
        job = (await di.prepare(numbered(12))).job_id
        events: list[Any] = []
        di.on_any(events.append)
        second_started = asyncio.Event()
        order: list[str] = []
        in_flight = peak = 0

        async def processor(record: dict[str, Any], ctx: Any) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            order.append(f"start {ctx.record_index}")
            if ctx.batch_index == 1:
                second_started.set()
            if ctx.record_index == 3:  # the last record of batch 0
                await asyncio.wait_for(second_started.wait(), STUCK)
            await asyncio.sleep(0)
            order.append(f"end {ctx.record_index}")
            in_flight -= 1

        summary = await di.run_worker(job, processor, "w")
        assert (summary.batches, summary.processed, summary.failed) == (3, 12, 0)
        assert summary.finalized and summary.state == "COMPLETED"
        assert order.index("start 4") < order.index("end 3")
        assert 1 < peak <= 3
        completed = [e.batch_index for e in events if e.type == "batch:completed"]
        assert sorted(completed) == [0, 1, 2]
        records = [e.record_index for e in events if e.type == "record:processed"]
        assert sorted(records) == list(range(12))
        assert [e.type for e in events].count("job:completed") == 1
        status = await di.status(job)
        assert status is not None
        assert (status.processed_records, status.completed_batches) == (12, 3)
        assert status.processing_batches == 0
        await di.redis.aclose()

    asyncio.run(scenario())


def _held_both(
    done: list[int],
) -> tuple[Callable[[dict[str, Any], Any], Any], asyncio.Event]:
    """A processor under which the worker ends up holding batches 0 and 1 (of 4
    records each): records 3 and 5 never end; ``both`` is set once 5 started (4, 6, 7 end)."""
    both = asyncio.Event()

    async def processor(record: dict[str, Any], ctx: Any) -> None:
        if ctx.record_index in (3, 5):
            if ctx.record_index == 5:
                both.set()
            await asyncio.sleep(STUCK)
        done.append(ctx.record_index)

    return processor, both


def _finish_and_check(di: AsyncDistributedImport, job: str, committed: list[int]) -> Any:
    """Nothing held; ``committed`` counted; another worker does exactly the rest."""

    async def finish() -> None:
        status = await di.status(job)
        assert status is not None
        assert status.processing_batches == 0, "a batch is still held"
        assert status.processed_records == len(committed)
        rest: list[int] = []
        summary = await asyncio.wait_for(
            di.run_worker(job, lambda r, c: rest.append(c.record_index), "next"), STUCK
        )
        assert summary.finalized and summary.processed == len(rest)
        assert Counter(committed + rest) == Counter(range(12)), "a record lost or counted twice"
        status = await di.status(job)
        assert status is not None
        assert (status.processed_records, status.failed_records) == (12, 0)
        assert (status.completed_batches, status.failed_batches) == (3, 0)

    return finish()


def test_cancelled_mid_overlap_hands_both_batches_back(make_async: Any) -> None:
    """Cancelling the worker while it holds two batches commits what each finished
    and hands the rest of both back at once (no attempt counted: max_batch_attempts=1);
    another worker then does exactly the rest."""

    async def scenario() -> None:
        di = make_async(batch_size=4, concurrency=3, max_batch_attempts=1)
        job = (await di.prepare(numbered(12))).job_id
        done: list[int] = []
        processor, both = _held_both(done)
        task = asyncio.ensure_future(di.run_worker(job, processor, "w"))
        await asyncio.wait_for(both.wait(), STUCK)
        await asyncio.sleep(0.01)  # records 4, 6 and 7 end
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sorted(done) == [0, 1, 2, 4, 6, 7]
        # each batch commits its finished prefix: 6 and 7 come after 5, handed back
        await _finish_and_check(di, job, [0, 1, 2, 4])
        await di.redis.aclose()

    asyncio.run(scenario())


def test_sigterm_mid_overlap_hands_both_batches_back(make_async: Any) -> None:
    """handle_signals=True: a SIGTERM while the worker holds two batches (both in user
    code) stops both at once, commits what each finished, hands the rest back, and
    raises SystemExit(143)."""

    async def scenario() -> None:
        di = make_async(batch_size=4, concurrency=3, max_batch_attempts=1)
        job = (await di.prepare(numbered(12))).job_id
        done: list[int] = []
        processor, both = _held_both(done)

        async def signal_when_both_held() -> None:
            await asyncio.wait_for(both.wait(), STUCK)
            await asyncio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)

        killer = asyncio.ensure_future(signal_when_both_held())
        with pytest.raises(SystemExit) as stopped:
            await di.run_worker(job, processor, "w", handle_signals=True)
        await killer
        assert stopped.value.code == 143
        assert sorted(done) == [0, 1, 2, 4, 6, 7]
        # each batch commits its finished prefix: 6 and 7 come after 5, handed back
        await _finish_and_check(di, job, [0, 1, 2, 4])
        await di.redis.aclose()

    asyncio.run(scenario())


def test_a_time_budget_mid_overlap_hands_the_rest_back(make_async: Any) -> None:
    """A time budget spent while two batches run: each commits what it finished
    and hands back the rest; the summary counts exactly what was committed."""

    async def scenario() -> None:
        di = make_async(batch_size=4, concurrency=3, max_batch_attempts=1)
        job = (await di.prepare(numbered(12))).job_id
        done: list[int] = []
        both = asyncio.Event()

        async def processor(record: dict[str, Any], ctx: Any) -> None:
            if ctx.record_index == 5:
                both.set()
            if ctx.record_index in (3, 5):
                await asyncio.sleep(0.3)
            elif ctx.batch_index == 1:
                await both.wait()
            done.append(ctx.record_index)

        summary = await di.run_worker(job, processor, "w", time_budget=0.1)
        assert not summary.finalized
        assert summary.processed == len(done) and summary.batches == 2
        assert 3 in done and 5 in done and 8 not in done
        await _finish_and_check(di, job, done)
        await di.redis.aclose()

    asyncio.run(scenario())


def test_wait_false_with_two_batches_counts_both(make_async: Any) -> None:
    """wait=False ends once nothing is claimable, after the batch started ahead."""

    async def scenario() -> None:
        di = make_async(batch_size=4, concurrency=4)
        job = (await di.prepare(numbered(10))).job_id
        summary = await di.run_worker(job, lambda r, c: None, "w", wait=False)
        assert (summary.batches, summary.processed, summary.finalized) == (3, 10, True)
        await di.redis.aclose()

    asyncio.run(scenario())


def test_a_lost_reply_gives_back_only_batches_held_unknowingly(client: redis.Redis) -> None:
    """After a lost claim reply, the worker gives back the batches it holds without
    knowing it, not the batch it holds knowingly alongside (its commit still counts)."""
    di = DistributedImport(client, namespace=f"o{uuid.uuid4().hex[:8]}", batch_size=2)
    job = di.prepare(numbered(6)).job_id
    core, driver = di._core, di._driver
    known = driver.run(core.store.claim(job, "w"))
    lost = driver.run(core.store.claim(job, "w"))  # as if its reply never came
    assert (known.batch_index, lost.batch_index) == (0, 1)
    driver.run(give_back_unknown(core.store, job, "w", " after a lost reply", {0}))
    assert driver.run(core.store.held_by(job, "w")) == [0]
    status = di.status(job)
    assert status is not None and (status.processing_batches, status.pending_batches) == (1, 2)


def _claimed(index: int, processed: int) -> tuple[Any, Any]:
    from redisbatch._results import BatchResult
    from redisbatch._scripts import Reply
    from redisbatch._store import Claim

    result = BatchResult(
        claimed=True,
        job_id="j",
        batch_id=f"batch-{index}",
        batch_index=index,
        processed_count=processed,
        failed_count=0,
        job_complete=False,
        accepted=True,
        reason=None,
    )
    return result, Claim(Reply.OK, state="PROCESSING", batch_index=index)


def test_the_worker_flow_spawns_ahead_only_on_room_and_counts_in_claim_order() -> None:
    """The flow alone, fed by hand: it spawns the next batch only once the current one
    reports room, joins the current one first, then the one ahead; with wait=False it
    ends when a claim finds nothing, every batch counted once."""
    from redisbatch._config import Settings
    from redisbatch._core import Core
    from redisbatch._effects import Command, Join, Spawn
    from redisbatch._results import BatchResult
    from redisbatch._scripts import Reply
    from redisbatch._store import Claim

    core = Core(None, None, Settings())
    flow = core.worker_flow("j", lambda r, c: None, "w", wait=False, overlap=True)
    first = next(flow)
    assert isinstance(first, Spawn)
    first.flow.close()
    join = flow.send("h0")
    assert join == Join("h0", early=True)
    ahead = flow.send((False, None))  # batch 0 in its last wave
    assert isinstance(ahead, Spawn)
    ahead.flow.close()
    assert flow.send("h1") == Join("h0")
    assert flow.send((True, _claimed(0, 4))) == Join("h1", early=True)
    nothing = BatchResult(
        claimed=False,
        job_id="j",
        batch_id=None,
        batch_index=None,
        processed_count=0,
        failed_count=0,
        job_complete=False,
        accepted=False,
        reason="NO_PENDING_BATCHES",
    )
    # batch 1 ends before its last wave is seen: the next one is spawned after it
    last = flow.send((True, _claimed(1, 3)))
    assert isinstance(last, Spawn)
    last.flow.close()
    assert flow.send("h2") == Join("h2", early=True)
    read_state = flow.send((True, (nothing, Claim(Reply.NO_PENDING_BATCHES, state="PROCESSING"))))
    assert isinstance(read_state, Command) and read_state.args[0] == "HGET"
    with pytest.raises(StopIteration) as stop:
        flow.send(b"PROCESSING")
    summary = stop.value.value
    assert (summary.batches, summary.processed, summary.state) == (2, 7, "PROCESSING")


def test_two_calls_on_one_facade_each_have_their_lanes(make_async: Any) -> None:
    """concurrency bounds one call (a worker and the batch it started ahead), not
    the facade: a worker whose records wait for another worker's records to start
    on the same facade still finishes."""

    async def scenario() -> None:
        di = make_async(batch_size=4, concurrency=2)
        first = (await di.prepare(numbered(4))).job_id
        second = (await di.prepare(numbered(4))).job_id
        other_started = asyncio.Event()

        async def waits(record: dict[str, Any], ctx: Any) -> None:
            await asyncio.wait_for(other_started.wait(), STUCK)

        async def starts(record: dict[str, Any], ctx: Any) -> None:
            other_started.set()

        one = asyncio.ensure_future(di.run_worker(first, waits, "a"))
        await asyncio.sleep(0.05)  # the first worker holds its lanes, waiting
        two = await di.run_worker(second, starts, "b")
        assert (await one).processed == 4 and two.processed == 4
        await di.redis.aclose()

    asyncio.run(scenario())


def test_stop_on_error_mid_overlap_fails_one_batch_and_counts_exactly(make_async: Any) -> None:
    """continue_on_error=False with two batches held at times: the batch with the
    failing record is FAILED, the others complete; counts, events and the single
    job:completed exact, nothing left held."""

    async def scenario() -> None:
        di = make_async(batch_size=4, concurrency=3, continue_on_error=False)
        job = (await di.prepare(numbered(16))).job_id
        events: list[Any] = []
        di.on_any(events.append)

        async def processor(record: dict[str, Any], ctx: Any) -> None:
            await asyncio.sleep(0.001 * (ctx.record_index % 3))
            if ctx.record_index == 3:
                raise ValueError("boom")

        summary = await di.run_worker(job, processor, "w")
        status = await di.status(job)
        assert status is not None and status.state == "FAILED"
        assert status.processing_batches == 0
        assert (status.completed_batches, status.failed_batches) == (3, 1)
        assert (status.processed_records, status.failed_records) == (15, 1)
        assert (summary.processed, summary.failed) == (15, 1)
        types = Counter(e.type for e in events)
        assert (types["batch:failed"], types["batch:completed"], types["job:completed"]) == (
            1,
            3,
            1,
        )
        assert (types["record:processed"], types["record:failed"]) == (15, 1)
        await di.redis.aclose()

    asyncio.run(scenario())

"""What only the async facade has: concurrency, async user code, cancellation."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import pytest

from redisbatch import (
    AsyncDistributedImport,
    Hooks,
    IterableSource,
    ProcessedRecord,
)


def test_concurrency_keeps_results_and_events_in_source_order(make_async: Any) -> None:
    """50 records at once: processed and failed events in source order, a failure among them
    retried, counts exact, and more than one record in the processor at a time."""

    async def scenario() -> None:
        di = make_async(batch_size=100, concurrency=10, max_retries=1)
        job = (await di.prepare(IterableSource({"n": str(i)} for i in range(100)))).job_id
        events: list[Any] = []
        di.on_any(events.append)
        in_flight = peak = 0
        tries: dict[int, int] = {}

        async def processor(record: dict[str, Any], ctx: Any) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(random.uniform(0, 0.01))
            in_flight -= 1
            tries[record["n"]] = tries.get(record["n"], 0) + 1
            if record["n"] == 13:
                raise ValueError("always")
            if record["n"] == 7 and tries[7] == 1:
                raise ValueError("once")

        summary = await di.run_worker(job, processor)
        assert (summary.processed, summary.failed) == (99, 1)
        assert peak > 1
        record_events = [e for e in events if e.type.startswith("record:")]
        assert [e.record_index for e in record_events if e.type != "record:retried"] == list(
            range(100)
        )
        retried = [(e.record_index, e.attempt) for e in events if e.type == "record:retried"]
        assert retried == [(7, 1), (13, 1)]
        [failed] = [r async for r in di.failed_records(job)]
        assert (failed.index, failed.processing_error, failed.retry_count) == (13, "always", 1)
        await di.redis.aclose()

    asyncio.run(scenario())


def test_plain_and_async_user_code_mix(make_async: Any) -> None:
    """Plain and async hooks and processors all work on the async facade."""

    async def scenario() -> None:
        async def before_validate(record: dict[str, Any], ctx: Any) -> dict[str, Any]:
            await asyncio.sleep(0)
            return {"n": record["n"].strip()}

        def after_process(result: ProcessedRecord, ctx: Any) -> None:
            seen.append(result.parsed["n"])

        seen: list[int] = []
        di = make_async(hooks=Hooks(before_validate=before_validate, after_process=after_process))
        job = (await di.prepare(IterableSource({"n": f" {i} "} for i in range(5)))).job_id
        summary = await di.run_worker(job, lambda record, ctx: None)
        assert summary.processed == 5 and seen == [0, 1, 2, 3, 4]
        assert await di.count(IterableSource([{"n": 1}])) == 1
        preview = await di.preview(IterableSource([{"n": "x"}]))
        assert preview.invalid_records[0].errors[0].code == "TYPE_MISMATCH"
        await di.redis.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_cancelled_worker_commits_what_it_finished_and_hands_back_the_rest(
    make_async: Any, concurrency: int
) -> None:
    """Cancelling a worker task mid-batch commits the records it finished, hands the rest
    back at once (not an attempt: max_batch_attempts=1), and re-raises CancelledError."""

    async def scenario() -> None:
        di = make_async(
            batch_size=10, stale_batch_timeout=60, concurrency=concurrency, max_batch_attempts=1
        )
        job = (await di.prepare(IterableSource({"n": str(i)} for i in range(10)))).job_id
        started = asyncio.Event()
        calls: list[int] = []

        async def stuck_at_six(record: Any, ctx: Any) -> None:
            calls.append(ctx.record_index)
            if ctx.record_index >= 6:
                started.set()
                await asyncio.sleep(30)

        task = asyncio.ensure_future(di.process_worker_batch(job, stuck_at_six, "doomed"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        status = await di.status(job)
        assert status is not None
        assert (status.processing_batches, status.pending_batches) == (0, 1)
        assert status.processed_records == 6
        done: list[int] = []
        summary = await asyncio.wait_for(
            di.run_worker(job, lambda r, c: done.append(c.record_index)), 10
        )
        assert summary.finalized and done == [6, 7, 8, 9]
        status = await di.status(job)
        assert status is not None
        assert (status.processed_records, status.failed_batches) == (10, 0)
        await di.redis.aclose()

    asyncio.run(scenario())


def test_a_plain_processor_does_not_starve_the_heartbeat(
    make_async: Any, client: Any, is_real: bool
) -> None:
    """A plain (blocking) processor taking 0.1 s per record, 1 s per batch against a 0.6 s
    stale timeout: the heartbeat still runs, so an eager worker never reclaims the batch
    and each record is processed once."""
    from redisbatch import DistributedImport

    async def scenario() -> None:
        di = make_async(batch_size=10, stale_batch_timeout=0.6)
        job = (await di.prepare(IterableSource({"n": str(i)} for i in range(10)))).job_id
        calls: list[int] = []
        eager_calls: list[int] = []
        stop = False

        def eager() -> None:  # another worker, claiming all along
            other = DistributedImport(
                client, namespace=di._core.settings.namespace, stale_batch_timeout=0.6
            )
            while not stop:
                other.process_worker_batch(job, lambda r, c: eager_calls.append(1), "eager")
                time.sleep(0.05)

        thread = threading.Thread(target=eager)

        def slow(record: Any, ctx: Any) -> None:
            calls.append(ctx.record_index)
            if not calls[1:]:  # the batch is ours: let the other worker try
                thread.start()
            time.sleep(0.1)

        try:
            result = await di.process_worker_batch(job, slow, "slow")
        finally:
            stop = True
            thread.join()
        assert (result.accepted, result.job_complete) == (True, True)
        assert sorted(calls) == list(range(10)) and eager_calls == []
        await di.redis.aclose()

    asyncio.run(scenario())


def test_no_task_outlives_a_call(make_async: Any) -> None:
    """50 fresh facades each processing a batch leave no task running behind them."""

    async def scenario() -> None:
        orchestrator = make_async(batch_size=1)
        job = (await orchestrator.prepare(IterableSource({"n": i} for i in range(50)))).job_id
        await orchestrator.redis.aclose()
        baseline = len(asyncio.all_tasks())
        for _ in range(50):
            di = make_async(batch_size=1)
            result = await di.process_worker_batch(job, lambda r, c: None, "lambda")
            assert result.accepted
            assert len(asyncio.all_tasks()) == baseline
            await di.redis.aclose()

    asyncio.run(scenario())


def test_async_facade_refuses_sync_clients_and_bad_concurrency() -> None:
    """The async facade takes a redis.asyncio client and concurrency >= 1."""
    import fakeredis

    with pytest.raises(TypeError, match="use DistributedImport"):
        AsyncDistributedImport(fakeredis.FakeRedis())
    with pytest.raises(ValueError, match="concurrency"):
        AsyncDistributedImport(fakeredis.FakeAsyncRedis(), concurrency=0)

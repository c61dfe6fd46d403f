"""The async driver's line: a run's script calls on one connection of the client's pool."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import Counter
from typing import Any

import pytest
import redis.asyncio

from redisbatch import AsyncDistributedImport
from redisbatch._async import _Line
from redisbatch._scripts import Script, ScriptCall
from tests._numbered import SCHEMA, numbered

from ._pool import checked_out, count_client_calls


def test_a_run_sends_its_scripts_on_one_connection_and_gives_it_back(make_async: Any) -> None:
    """run_worker's claims and commits go on one pooled connection, past the
    client's per-command path; the connection is back in the pool afterwards."""

    async def scenario() -> None:
        di = make_async(batch_size=5)
        job = (await di.prepare(numbered(20))).job_id
        client = di.redis
        through_client = count_client_calls(client)
        in_use: list[int] = []
        summary = await di.run_worker(job, lambda record, ctx: in_use.append(checked_out(client)))
        assert (summary.processed, summary.state) == (20, "COMPLETED")
        assert through_client == []
        assert min(in_use) >= 1, "the run holds its connection while it runs"
        assert checked_out(client) == 0
        await client.aclose()

    asyncio.run(scenario())


def test_two_calls_at_once_never_share_a_connection(client: Any, async_client_factory: Any) -> None:
    """Two flows of one run calling at once (a worker's two batches): the
    second call takes a connection of its own, both stay with the run until
    it ends, then go back to the pool; after its end, calls go through the client."""
    source = "return ARGV[1]"
    script = Script("echo", 0, source, hashlib.sha1(source.encode()).hexdigest())

    async def scenario() -> None:
        aclient = async_client_factory()
        through_client = count_client_calls(aclient)
        line = _Line(aclient)
        used: list[Any] = []
        first, second = await asyncio.gather(
            line.script(ScriptCall(script, (), ("a",))),
            line.script(ScriptCall(script, (), ("b",))),
        )
        assert (first, second) == (b"a", b"b")
        assert len(line.idle) == 2 and line.idle[0] is not line.idle[1]
        used.extend(line.idle)
        assert await line.script(ScriptCall(script, (), ("c",))) == b"c"
        assert len(line.idle) == 2 and set(map(id, line.idle)) == set(map(id, used))
        assert through_client == []
        assert checked_out(aclient) == 2
        await line.end()
        assert checked_out(aclient) == 0
        assert await line.script(ScriptCall(script, (), ("d",))) == b"d"
        assert len(through_client) == 1, "after its end: through the client"
        assert checked_out(aclient) == 0
        await aclient.aclose()

    client.script_flush()
    asyncio.run(scenario())


def test_a_run_cancelled_while_reading_a_reply_drops_the_connection(make_async: Any) -> None:
    """The task cancelled while the line waits for a commit's reply (the commit
    applied on the server, with its claim of the next batch): that connection is
    disconnected, none is left checked out, the batch is not counted twice, the
    next batch is given back at once and the job completes exactly once."""

    async def scenario() -> None:
        di = make_async(batch_size=5)
        job = (await di.prepare(numbered(10))).job_id
        client = di.redis
        stuck: list[Any] = []
        disconnected: list[Any] = []
        reading = asyncio.Event()

        def hang_next_read(record: dict[str, Any], ctx: Any) -> None:
            if ctx.record_index == 4 and not stuck:
                (line,) = client.connection_pool._in_use_connections  # type: ignore[attr-defined]
                read = line.read_response

                async def read_response(*args: Any, **kwargs: Any) -> Any:
                    await read(*args, **kwargs)  # NOSCRIPT raises: the resend comes here too
                    line.read_response = read  # the reply came: the commit is applied
                    reading.set()
                    await asyncio.Event().wait()

                line.read_response = read_response
                stuck.append(line)
                disconnect = line.disconnect

                async def recorded_disconnect(*args: Any, **kwargs: Any) -> Any:
                    disconnected.append(line)
                    return await disconnect(*args, **kwargs)

                line.disconnect = recorded_disconnect

        worker = asyncio.ensure_future(di.run_worker(job, hang_next_read))
        await asyncio.wait_for(reading.wait(), 10)
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
        assert disconnected == stuck, "the connection with a reply on its way was dropped"
        assert checked_out(client) == 0
        status = await di.status(job)
        assert status is not None and status.processing_batches == 0, "nothing held"
        seen: Counter[int] = Counter()
        await di.run_worker(job, lambda record, ctx: seen.update([record["n"]]))
        status = await di.status(job)
        assert status is not None
        assert (status.processed_records, status.state) == (10, "COMPLETED")
        assert set(seen) <= set(range(5, 10)), "the batch committed before the cut is not redone"
        assert checked_out(client) == 0
        await client.aclose()

    asyncio.run(scenario())


def test_a_run_cancelled_in_user_code_gives_its_connection_back(make_async: Any) -> None:
    async def scenario() -> None:
        di = make_async(batch_size=5)
        job = (await di.prepare(numbered(10))).job_id
        client = di.redis
        started = asyncio.Event()

        async def wait_at_third(record: dict[str, Any], ctx: Any) -> None:
            if ctx.record_index == 2:
                started.set()
                await asyncio.Event().wait()

        worker = asyncio.ensure_future(di.run_worker(job, wait_at_third))
        await asyncio.wait_for(started.wait(), 10)
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
        assert checked_out(client) == 0
        status = await di.status(job)
        assert status is not None and status.processing_batches == 0
        assert (await di.run_worker(job, lambda record, ctx: None)).state == "COMPLETED"
        status = await di.status(job)
        assert status is not None and status.processed_records == 10
        assert checked_out(client) == 0
        await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("restarted", [False, True], ids=["cut", "cut-and-scripts-gone"])
def test_a_cut_line_sends_the_call_again_through_the_client(real_url: str, restarted: bool) -> None:
    """The run's connection killed by the server (and, as after a restart, the
    server's scripts gone): the next script call goes through the client instead,
    loading the script if needed, and the job completes with exact counts."""

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(real_url)
        namespace = f"l{uuid.uuid4().hex[:8]}"
        di = AsyncDistributedImport(
            client, SCHEMA, namespace=namespace, batch_size=5, retry_delay=0.0
        )
        job = (await di.prepare(numbered(20))).job_id
        through_client = count_client_calls(client)
        cut: list[int] = []

        async def cut_once(record: dict[str, Any], ctx: Any) -> None:
            if not cut:
                if restarted:
                    await client.script_flush()
                # the line, the only other connection of this client's pool
                await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                cut.append(ctx.record_index)

        summary = await di.run_worker(job, cut_once)
        assert (summary.processed, summary.batches, summary.state) == (20, 4, "COMPLETED")
        assert len(through_client) == 1 + restarted, "the commit after the cut went past the line"
        status = await di.status(job)
        assert status is not None
        assert (status.processed_records, status.completed_batches) == (20, 4)
        assert checked_out(client) == 0
        await client.aclose()

    asyncio.run(scenario())


def test_overlapping_batches_share_the_line_and_complete_once(make_async: Any) -> None:
    """concurrency=4 and two batches: the second is claimed while the first's
    last records run, the calls of both flows go on the run's line; every
    record is processed once, the connections given back."""

    async def scenario() -> None:
        di = make_async(batch_size=5, concurrency=4)
        job = (await di.prepare(numbered(10))).job_id
        client = di.redis
        seen: Counter[int] = Counter()
        through_client = count_client_calls(client)

        async def processor(record: dict[str, Any], ctx: Any) -> None:
            await asyncio.sleep(0.001)
            seen.update([record["n"]])

        summary = await di.run_worker(job, processor)
        assert (summary.processed, summary.batches, summary.state) == (10, 2, "COMPLETED")
        assert through_client == []
        assert seen == Counter(range(10))
        status = await di.status(job)
        assert status is not None
        assert (status.processed_records, status.completed_batches) == (10, 2)
        assert checked_out(client) == 0
        await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking-pool-of-1", "pool-of-2"])
def test_a_small_pool_keeps_its_connections_for_the_client(real_url: str, blocking: bool) -> None:
    """A pool with a small limit (or a blocking pool: a limit to keep) gets no
    line: the run's calls go through the client, and it completes at once
    instead of waiting for a connection the line would hold."""

    async def scenario() -> None:
        if blocking:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                real_url, max_connections=1, timeout=2
            )
        else:
            pool = redis.asyncio.ConnectionPool.from_url(real_url, max_connections=2)
        client = redis.asyncio.Redis(connection_pool=pool)
        namespace = f"l{uuid.uuid4().hex[:8]}"
        di = AsyncDistributedImport(
            client, SCHEMA, namespace=namespace, batch_size=5, retry_delay=0.0
        )
        job = (await di.prepare(numbered(20))).job_id
        through_client = count_client_calls(client)
        summary = await asyncio.wait_for(di.run_worker(job, lambda record, ctx: None), 10)
        assert (summary.processed, summary.batches, summary.state) == (20, 4, "COMPLETED")
        # One claim, then four commits, each claiming the next batch.
        assert len(through_client) >= 5, "claims and commits went through the client"
        assert checked_out(client) == 0
        await client.aclose()
        await pool.disconnect()

    asyncio.run(scenario())

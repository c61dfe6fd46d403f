"""Long records read after the claim: a claim leaves a batch's records longer
than the store's inline limit out of its reply (their length in their place),
and the flow reads them with a plain HGET on the run's connection. The batch
must be the caller's still when it reads them: one taken meanwhile is claimed
anew. On fakeredis and on a real server, through both facades."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redisbatch import AsyncDistributedImport, DistributedImport, IterableSource
from redisbatch._effects import Reads
from redisbatch._keys import CONSUMER_GROUP
from redisbatch._scripts import ScriptCall
from redisbatch._store import INLINE_RECORDS, Claim, NextClaim, Store

from ._pool import checked_out

Make = Callable[..., DistributedImport]


def records(n: int) -> IterableSource:
    return IterableSource({"n": i, "text": "x" * 40} for i in range(n))


def store_of(di: Any) -> Store:
    store: Store = di._core.store
    return store


def counted_reads(di: Any) -> list[tuple[Any, ...]]:
    """Records the commands of every ``Reads`` the facade's driver performs."""
    driver = di._async._driver if hasattr(di, "_async") else di._driver
    original, seen = driver.reads, []

    def reads(commands: Any) -> Any:
        seen.append(commands)
        return original(commands)

    async def async_reads(commands: Any) -> Any:
        seen.append(commands)
        return await original(commands)

    driver.reads = async_reads if hasattr(di, "_async") else reads
    return seen


def test_the_default_limit_keeps_small_batches_inline(make_import: Make) -> None:
    """Batches under the default limit (16 KiB) come back in their claim's reply:
    no read after the claim."""
    di = make_import(batch_size=5)
    assert store_of(di).inline_records == str(INLINE_RECORDS)
    job = di.prepare(records(20)).job_id
    reads = counted_reads(di)
    summary = di.run_worker(job, lambda r, c: None)
    assert (summary.processed, summary.state) == (20, "COMPLETED")
    assert reads == []


@pytest.mark.parametrize("limit", ["0", "300"], ids=["all-read", "some-read"])
def test_a_job_whose_records_are_read_after_their_claims_completes_once(
    make_import: Make, limit: str
) -> None:
    """With a limit below the batches' size, every claim (the worker's own and
    those riding on commits) is followed by one read of its records; a limit
    between the sizes reads only the long batches. Counts and failures exact."""
    di = make_import(batch_size=5)
    store_of(di).inline_records = limit
    job = di.prepare(
        IterableSource({"n": i, "text": "x" * (200 if i < 10 else 1)} for i in range(23))
    ).job_id
    reads = counted_reads(di)

    def fail_sevens(record: dict[str, Any], ctx: Any) -> None:
        if record["n"] % 7 == 0:
            raise ValueError("seven")

    summary = di.run_worker(job, fail_sevens)
    assert (summary.processed, summary.failed, summary.state) == (19, 4, "COMPLETED")
    assert len(reads) == (5 if limit == "0" else 2)
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.failed_records, status.completed_batches) == (
        19, 4, 5,
    )  # fmt: skip
    assert sorted(r.index for r in di.failed_records(job)) == [0, 7, 14, 21]


def test_process_worker_batch_reads_long_records_after_its_claim(make_import: Make) -> None:
    """One batch per call (serverless): the claim's records read after it."""
    di = make_import(batch_size=4)
    store_of(di).inline_records = "0"
    job = di.prepare(records(8)).job_id
    reads = counted_reads(di)
    seen: list[int] = []
    first = di.process_worker_batch(job, lambda r, c: seen.append(r["n"]), "w")
    second = di.process_worker_batch(job, lambda r, c: seen.append(r["n"]), "w")
    assert (first.processed_count, second.processed_count, second.job_complete) == (4, 4, True)
    assert sorted(seen) == list(range(8)) and len(reads) == 2


def _claim_reply(idx: int, token: bytes, payload: Any) -> list[Any]:
    return [b"OK", idx, token, 1, payload, b"", 8, [], b"", b""]


def test_a_claim_whose_batch_was_taken_before_its_read_claims_again() -> None:
    """The flow fed by hand: the claim's records gone, or the batch's token not
    the claim's by the time they are read (it went stale and another worker
    took it): the flow claims again, under a new request id."""
    store = Store("ns", stale_timeout=30, max_batch_attempts=3, retention=None)
    flow = store.claim("job", "w")
    first = next(flow)
    assert isinstance(first, ScriptCall) and first.script.name == "claimBatch"
    read = flow.send(_claim_reply(3, b"1-7", 4000))
    assert isinstance(read, Reads)
    keys = store.keys("job")
    assert read.commands == (("HGET", keys.records, 3), ("HGET", keys.batches, "t:3"))
    again = flow.send([b"records", b"1-8"])  # another worker's token
    assert isinstance(again, ScriptCall) and again.script.name == "claimBatch"
    assert again.args[5] != first.args[5], "a new claim, not a repeat of the first"
    read = flow.send(_claim_reply(4, b"1-9", 4000))
    assert isinstance(read, Reads)
    again = flow.send([None, b"1-9"])  # the records gone
    assert isinstance(again, ScriptCall) and again.script.name == "claimBatch"
    with pytest.raises(StopIteration) as done:
        flow.send([b"NO_PENDING_BATCHES", b"PROCESSING", 0, [], []])
    claim: Claim = done.value.value
    assert claim.batch is None and claim.state == "PROCESSING"


def test_a_commit_whose_next_batch_was_taken_before_its_read_claims_nothing() -> None:
    """The flow fed by hand: a chained commit's claim whose batch changed hands
    before its records were read is no claim of the worker's (it claims anew)."""
    store = Store("ns", stale_timeout=30, max_batch_attempts=3, retention=None)
    flow = store.commit(
        "job", 2, "1-5", processed=4, failed=0, batch_state="COMPLETED",
        failed_payload=b"", claim_next=NextClaim("w"),
    )  # fmt: skip
    call = next(flow)
    assert isinstance(call, ScriptCall) and call.script.name == "commitBatch"
    assert call.args[-1] == str(INLINE_RECORDS)
    read = flow.send([b"OK", 0, b"PROCESSING", [], _claim_reply(3, b"1-6", 9000)])
    assert isinstance(read, Reads)
    with pytest.raises(StopIteration) as done:
        flow.send([b"records", b"1-7"])
    assert done.value.value.accepted and done.value.value.next_claim is None


def test_a_batch_taken_between_claim_and_read_is_left_to_its_new_holder(
    client: redis.Redis,
) -> None:
    """On a server: a worker's claim goes stale before it reads the records
    (it is frozen there), another worker takes the batch; the first claims
    again and runs another batch, the second commits the one it took, each
    record counted once."""
    di = DistributedImport(client, batch_size=4, stale_batch_timeout=0.2, retry_delay=0.0)
    store = store_of(di)
    store.inline_records = "0"
    job = di.prepare(records(8)).job_id
    driver = di._driver
    original = driver.reads
    taken: list[Any] = []

    def frozen_first(commands: Any) -> Any:
        if not taken:
            taken.append(None)
            time.sleep(0.3)  # the claim goes stale meanwhile
            taken[0] = driver.run(store.claim(job, "thief"))
        return original(commands)

    driver.reads = frozen_first  # type: ignore[method-assign]
    result = di.process_worker_batch(job, lambda r, c: None, "w")
    thief = taken[0]
    assert thief.batch_index == 0 and result.batch_index == 1
    assert result.processed_count == 4 and result.accepted
    driver.reads = original  # type: ignore[method-assign]
    committed = driver.run(
        store.commit(
            job, 0, thief.token, processed=4, failed=0, batch_state="COMPLETED",
            failed_payload=b"",
        )
    )  # fmt: skip
    assert committed.accepted and committed.finalized is not None
    status = di.status(job)
    assert status is not None and (status.state, status.processed_records) == ("COMPLETED", 8)


def test_a_raw_claim_over_the_limit_replies_with_the_records_length(client: redis.Redis) -> None:
    """claimBatch's reply: the records' length in bytes (an integer) in place
    of records longer than ARGV[9]; the records themselves when not, or with no
    limit."""
    di = DistributedImport(client, batch_size=4)
    job = di.prepare(records(12)).job_id
    keys = store_of(di).keys(job)
    stored = client.hget(keys.records, 0)
    assert stored is not None

    def claim(worker: str, limit: str) -> Any:
        script = store_of(di)._scripts["claimBatch"]
        args = (CONSUMER_GROUP, worker, 30000, 3, "", f"r-{worker}", "", "", limit)
        return client.evalsha(script.sha, len(keys.all), *keys.all, *args)

    client.script_load(store_of(di)._scripts["claimBatch"].source)
    assert claim("a", str(len(stored) - 1))[4] == len(stored)
    assert claim("b", str(len(stored)))[4] == client.hget(keys.records, 1)
    assert claim("c", "")[4] == client.hget(keys.records, 2)


def test_a_cut_line_reads_the_records_again_through_the_client(
    real_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The run's connection cut as it sends the read of a claim's records: the
    read goes through the client instead (the flow sees no error: nothing is
    ridden out), and the job completes once."""
    di = DistributedImport(real_client, batch_size=5)
    store_of(di).inline_records = "0"
    job = di.prepare(records(20)).job_id
    cut: list[int] = []
    send_packed = redis.connection.Connection.send_packed_command

    def cut_the_second_read(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        if b"HGET" in b"".join(command if isinstance(command, list) else [command]):
            cut.append(1)
            if len(cut) == 2:
                self._sock.shutdown(socket.SHUT_RDWR)
        return send_packed(self, command, *args, **kwargs)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", cut_the_second_read)
    with caplog.at_level(logging.WARNING, logger="redisbatch"):
        summary = di.run_worker(job, lambda r, c: None)
    assert len(cut) >= 2, "the line was not cut"
    assert [r.message for r in caplog.records if "retrying" in r.message] == []
    assert (summary.processed, summary.batches, summary.state) == (20, 4, "COMPLETED")
    status = di.status(job)
    assert status is not None and (status.processed_records, status.completed_batches) == (20, 4)
    assert checked_out(real_client) == 0


def test_a_claim_whose_batch_was_taken_before_its_read_still_reports_its_dead_letters() -> None:
    """The flow fed by hand: the batches a claim dead-lettered before it took
    the batch that changed hands by its read are reported by the claim made
    again (their only report: no later claim names them)."""
    store = Store("ns", stale_timeout=30, max_batch_attempts=3, retention=None)
    flow = store.claim("job", "w")
    next(flow)
    read = flow.send([b"OK", 3, b"1-7", 1, 4000, b"", 8, [0, 3], b"", b""])
    assert isinstance(read, Reads)
    flow.send([b"records", b"1-8"])  # taken: claims again
    with pytest.raises(StopIteration) as done:
        flow.send([b"NO_PENDING_BATCHES", b"PROCESSING", 0, [], []])
    assert done.value.value.dead_lettered == ((0, 3),)


def test_a_commit_whose_next_batch_was_taken_before_its_read_reports_its_dead_letters() -> None:
    """The flow fed by hand: a chained claim that dead-lettered a batch and
    then lost the batch it took before the read still reports the dead letter
    (as a claim of no batch of the worker's: it claims anew)."""
    store = Store("ns", stale_timeout=30, max_batch_attempts=3, retention=None)
    flow = store.commit(
        "job", 2, "1-5", processed=4, failed=0, batch_state="COMPLETED",
        failed_payload=b"", claim_next=NextClaim("w"),
    )  # fmt: skip
    next(flow)
    flow.send([b"OK", 0, b"PROCESSING", [], [b"OK", 3, b"1-6", 1, 9000, b"", 8, [1, 3], b"", b""]])
    with pytest.raises(StopIteration) as done:
        flow.send([b"records", b"1-7"])
    commit = done.value.value
    assert commit.next_claim is not None and commit.next_claim.batch is None
    assert commit.next_claim.dead_lettered == ((1, 3),)


def test_a_dead_letter_is_reported_when_the_claim_that_made_it_loses_its_batch(
    client: redis.Redis,
) -> None:
    """On a server: a claim dead-letters a stale batch past max_batch_attempts,
    takes the next one, and loses it (stale, taken by another worker) before it
    reads its records; the worker still emits the dead-lettered batch's
    ``batch:failed``, once."""
    di = DistributedImport(client, batch_size=4, stale_batch_timeout=0.2, max_batch_attempts=2)
    store = store_of(di)
    store.inline_records = "0"
    job = di.prepare(records(12)).job_id
    driver = di._driver
    for holder in ("gone", "gone too"):  # batch 0, delivered twice, never committed
        assert driver.run(store.claim(job, holder)).batch_index == 0
        time.sleep(0.25)
    failed: list[int] = []
    di.on("batch:failed", lambda event: failed.append(event.batch_index))
    original = driver.reads
    taken: list[Any] = []

    def frozen_first(commands: Any) -> Any:
        if not taken:
            taken.append(None)
            time.sleep(0.3)  # the claim of batch 1 goes stale meanwhile
            taken[0] = driver.run(store.claim(job, "thief"))
        return original(commands)

    driver.reads = frozen_first  # type: ignore[method-assign]
    result = di.process_worker_batch(job, lambda r, c: None, "w")
    assert taken[0].batch_index == 1 and result.batch_index == 2
    assert failed == [0]


def test_ctrl_c_while_reading_a_chained_claim_reports_the_commit_and_gives_the_batch_back(
    client: redis.Redis,
) -> None:
    """Ctrl-C while the records of the batch a commit claimed are read: the
    commit landed (its reply was read), so its batch is reported as any
    commit a stop lets through (``batch:completed``); the next batch is
    given back at once, not left for the (60 s) stale timeout."""
    di = DistributedImport(client, batch_size=2, stale_batch_timeout=60)
    store_of(di).inline_records = "0"
    job = di.prepare(records(6)).job_id
    original = di._driver.reads
    calls: list[int] = []

    def reads(commands: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:  # the first claim riding on a commit
            raise KeyboardInterrupt
        return original(commands)

    di._driver.reads = reads  # type: ignore[method-assign]
    completed: list[int] = []
    di.on("batch:completed", lambda event: completed.append(event.batch_index))
    with pytest.raises(KeyboardInterrupt):
        di.run_worker(job, lambda r, c: None, "w")
    status = di.status(job)
    assert status is not None
    assert (status.completed_batches, status.processing_batches, status.pending_batches) == (
        1, 0, 2,
    )  # fmt: skip
    assert completed == [0]


def test_a_cancellation_while_reading_a_chained_claim_reports_the_commit(
    async_client_factory: Callable[[], Any],
) -> None:
    """The async driver: the task cancelled while the records of the batch a
    commit claimed are read. The commit is reported, the next batch given back."""

    async def scenario() -> None:
        di = AsyncDistributedImport(async_client_factory(), batch_size=2, stale_batch_timeout=60)
        store_of(di).inline_records = "0"
        job = (await di.prepare(records(6))).job_id
        original = di._driver.reads
        calls: list[int] = []

        async def reads(commands: Any) -> Any:
            calls.append(1)
            if len(calls) == 2:  # the first claim riding on a commit
                task = asyncio.current_task()
                assert task is not None
                asyncio.get_running_loop().call_soon(task.cancel)
                await asyncio.sleep(1)
            return await original(commands)

        di._driver.reads = reads  # type: ignore[method-assign]
        completed: list[int] = []
        di.on("batch:completed", lambda event: completed.append(event.batch_index))
        with pytest.raises(asyncio.CancelledError):
            await di.run_worker(job, lambda r, c: None, "w")
        status = await di.status(job)
        assert status is not None
        assert (status.completed_batches, status.processing_batches, status.pending_batches) == (
            1, 0, 2,
        )  # fmt: skip
        assert completed == [0]
        await di.redis.aclose()

    asyncio.run(scenario())


def test_an_async_line_cut_reads_the_records_again_through_the_client(
    async_client_factory: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The async driver: the run's connection fails as it sends the read of a
    claim's records; the read goes through the client instead (nothing ridden
    out) and the job completes once."""
    import redis.asyncio.connection

    send_packed = redis.asyncio.connection.Connection.send_packed_command
    cut: list[int] = []

    async def cut_the_second_read(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        if b"HGET" in b"".join(command if isinstance(command, list) else [command]):
            cut.append(1)
            if len(cut) == 2:
                await self.disconnect(nowait=True)
                raise redis.exceptions.ConnectionError("cut (test)")
        return await send_packed(self, command, *args, **kwargs)

    async def scenario() -> None:
        di = AsyncDistributedImport(async_client_factory(), batch_size=5)
        store_of(di).inline_records = "0"
        job = (await di.prepare(records(20))).job_id
        monkeypatch.setattr(
            redis.asyncio.connection.Connection, "send_packed_command", cut_the_second_read
        )
        with caplog.at_level(logging.WARNING, logger="redisbatch"):
            summary = await di.run_worker(job, lambda r, c: None)
        assert (summary.processed, summary.batches, summary.state) == (20, 4, "COMPLETED")
        await di.redis.aclose()

    asyncio.run(scenario())
    assert len(cut) >= 3, "the line was not cut, or not read again"
    assert [r.message for r in caplog.records if "retrying" in r.message] == []

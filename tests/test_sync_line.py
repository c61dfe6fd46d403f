"""The sync driver's line: a run's script calls on one connection of the client's pool."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
import redis

from redisbatch import DistributedImport, IterableSource

from ._pool import checked_out, count_client_calls


def test_a_run_sends_its_scripts_on_one_connection_and_gives_it_back(client: redis.Redis) -> None:
    """run_worker's claims and commits go on a pooled connection, past the
    client's per-command path; with a pool of many connections the run keeps it
    across user code, and it is back in the pool afterwards."""
    di = DistributedImport(client, batch_size=5)
    job = di.prepare(IterableSource({"n": i} for i in range(20))).job_id
    through_client = count_client_calls(client)
    in_use: list[int] = []
    summary = di.run_worker(job, lambda record, ctx: in_use.append(checked_out(client)))
    assert (summary.processed, summary.state) == (20, "COMPLETED")
    assert through_client == []
    assert min(in_use) == 1, "the run keeps one connection, no more, while user code runs"
    assert checked_out(client) == 0


def test_an_interrupted_run_gives_its_connection_back(client: redis.Redis) -> None:
    """A worker stopped by KeyboardInterrupt hands its batch back and leaves no
    connection checked out of the pool."""
    di = DistributedImport(client, batch_size=5)
    job = di.prepare(IterableSource({"n": i} for i in range(10))).job_id

    def stop_at_third(record: dict[str, Any], ctx: Any) -> None:
        if ctx.record_index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        di.run_worker(job, stop_at_third)
    assert checked_out(client) == 0
    status = di.status(job)
    assert status is not None and status.processing_batches == 0
    assert di.run_worker(job, lambda record, ctx: None).state == "COMPLETED"
    status = di.status(job)
    assert status is not None and status.processed_records == 10


@pytest.mark.parametrize("restarted", [False, True], ids=["cut", "cut-and-scripts-gone"])
def test_a_cut_line_sends_the_call_again_through_the_client(
    real_client: redis.Redis, restarted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's connection cut under it (and, as after a restart, the server's
    scripts gone): the next script call goes through the client instead, loading
    the script if needed, and the job completes with exact counts."""
    di = DistributedImport(real_client, batch_size=5)
    job = di.prepare(IterableSource({"n": i} for i in range(20))).job_id
    through_client = count_client_calls(real_client)
    cut: list[int] = []
    send_command = redis.connection.Connection.send_command

    def cut_before_sending(self: Any, *args: Any, **kwargs: Any) -> Any:
        if cut == [0]:  # the commit after the first record, on the line
            cut.append(1)
            self._sock.shutdown(socket.SHUT_RDWR)
        return send_command(self, *args, **kwargs)

    def cut_once(record: dict[str, Any], ctx: Any) -> None:
        if not cut:
            if restarted:
                real_client.script_flush()
            cut.append(0)

    monkeypatch.setattr(redis.connection.Connection, "send_command", cut_before_sending)
    summary = di.run_worker(job, cut_once)
    assert cut == [0, 1], "the line was not cut"
    assert (summary.processed, summary.batches, summary.state) == (20, 4, "COMPLETED")
    assert len(through_client) == 1 + restarted, "the commit after the cut went through the client"
    status = di.status(job)
    assert status is not None and (status.processed_records, status.completed_batches) == (20, 4)
    assert checked_out(real_client) == 0


class _PoolOfOne(redis.BlockingConnectionPool):
    """A pool of a single connection that counts the checkouts that had to wait."""

    waited = 0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.pool.empty():  # type: ignore[attr-defined]
            self.waited += 1
        return super().get_connection(*args, **kwargs)


def test_a_pool_of_one_connection_serves_pipelines_and_user_code(real_url: str) -> None:
    """A client whose pool holds a single connection: a run loads a missing
    script on its own connection and gives it back before a pipeline, a
    command or user code, so that nothing waits for the connection the run
    itself holds (a processor using the same client included)."""
    pool = _PoolOfOne.from_url(real_url, max_connections=1, timeout=1)
    client = redis.Redis(connection_pool=pool)
    try:
        client.script_flush()  # the first calls load their scripts on the line
        di = DistributedImport(client, batch_size=5)
        job = di.prepare(IterableSource({"n": i} for i in range(10))).job_id
        assert pool.waited == 0, "a pipeline waited for the connection its own run held"
        summary = di.run_worker(job, lambda record, ctx: client.ping())
        assert (summary.processed, summary.batches, summary.state) == (10, 2, "COMPLETED")
        assert pool.waited == 0, "user code using the client waited for the run's connection"
    finally:
        client.close()
        pool.disconnect()


def test_a_run_interrupted_while_it_reads_a_reply_leaves_none_behind(
    real_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KeyboardInterrupt while the line waits for a commit's reply (the reply
    arrives unread): the connection is dropped, so the next run on the facade
    never reads that reply as its own; the job completes with exact counts."""
    di = DistributedImport(real_client, batch_size=4)
    job = di.prepare(IterableSource({"n": i} for i in range(12))).job_id
    armed: list[bool] = []
    read_response = redis.connection.Connection.read_response

    def interrupted_read(self: Any, *args: Any, **kwargs: Any) -> Any:
        if armed:
            armed.clear()
            time.sleep(0.05)  # the reply is there, unread
            raise KeyboardInterrupt
        return read_response(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.Connection, "read_response", interrupted_read)

    def arm_at_last_record(record: dict[str, Any], ctx: Any) -> None:
        if ctx.record_index == 3:
            armed.append(True)  # the next read is the commit's

    with pytest.raises(KeyboardInterrupt):
        di.run_worker(job, arm_at_last_record, "w")
    summary = di.run_worker(job, lambda record, ctx: None, "w2")
    assert summary.state == "COMPLETED"
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.completed_batches) == (12, 3)
    assert checked_out(real_client) == 0


def test_runs_in_two_threads_on_one_facade_each_have_their_line(client: redis.Redis) -> None:
    """Three threads run workers on one facade at once: each run has its own
    connection (no reply read by the wrong thread); counts exact, none left in use."""
    di = DistributedImport(client, batch_size=5)
    job = di.prepare(IterableSource({"n": i} for i in range(200))).job_id
    seen: list[int] = []
    summaries: list[Any] = []

    def processor(record: dict[str, Any], ctx: Any) -> None:
        seen.append(ctx.record_index)
        time.sleep(0.0005)

    threads = [
        threading.Thread(target=lambda: summaries.append(di.run_worker(job, processor)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(200))
    assert sum(summary.processed for summary in summaries) == 200
    status = di.status(job)
    assert status is not None and status.processed_records == 200
    assert checked_out(client) == 0

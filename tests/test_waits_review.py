"""Review of the waits that block on the queue stream: a wait ends quietly
whatever happens to its connection, and a stopped worker leaves its pool clean."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redisbatch import DistributedImport, IterableSource
from redisbatch._embedded import EmbeddedServer, find_server_binary
from redisbatch._store import Store

from .conftest import _no_server


@pytest.fixture
def durable_server() -> Any:
    if find_server_binary() is None:
        _no_server("no server binary to restart")  # fails under REDISBATCH_REQUIRE_SERVER=1
    server = EmbeddedServer(args=("--appendonly", "yes", "--appendfsync", "always")).start()
    yield server
    server.stop()


def test_a_sync_worker_waiting_as_the_server_goes_down_rides_it_out(
    durable_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server going down between a waiting worker's look at the holders
    (which gives its connection back) and its blocking read: the wait ends
    quietly and the worker rides the outage out, as it did when it slept (a
    client without retries of its own, so that the outage outlasts them)."""
    client = redis.Redis(port=durable_server.port, retry=Retry(NoBackoff(), 0))
    di = DistributedImport(client, batch_size=5, stale_batch_timeout=6)
    job = di.prepare(IterableSource({"n": i} for i in range(10))).job_id
    di.pause(job)
    original = Store.held_batches
    restarted = threading.Event()

    def held_batches(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not restarted.is_set():
            durable_server.kill()

            def restart() -> None:
                time.sleep(1.0)
                durable_server.start()
                restarted.set()

            threading.Thread(target=restart, daemon=True).start()
        return (yield from original(self, *args, **kwargs))

    monkeypatch.setattr(Store, "held_batches", held_batches)
    summaries: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            summaries.append(di.run_worker(job, lambda r, c: None, "w"))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    assert restarted.wait(20)
    di.resume(job)
    worker.join(20)
    assert not worker.is_alive()
    assert errors == []
    assert (summaries[0].processed, summaries[0].state) == (10, "COMPLETED")
    client.close()

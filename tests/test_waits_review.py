"""Review of the waits that block on the queue stream: a wait ends quietly
whatever happens to its connection, and a stopped worker leaves its pool clean."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from redisbatch import AsyncDistributedImport, DistributedImport, IterableSource
from redisbatch._config import Settings
from redisbatch._embedded import EmbeddedServer
from redisbatch._store import Store


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


def _blocked_reads(admin: redis.Redis) -> list[str]:
    return [c["id"] for c in admin.client_list() if c.get("cmd") == "xread" and "b" in c["flags"]]


@pytest.mark.parametrize("facade", ["sync", "async"])
def test_a_blocking_read_unblocked_by_the_server_keeps_the_waits_blocking(
    real_url: str, facade: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server ending a worker's blocking read with an error (CLIENT UNBLOCK
    ... ERROR; a master turned replica answers its blocked clients UNBLOCKED)
    is no ACL refusing XREAD: the wait ends, and the next one blocks again."""
    monkeypatch.setattr(Settings, "poll_interval", property(lambda self: (0.5, 0.5)))
    admin = redis.Redis.from_url(real_url)
    namespace = f"w{uuid.uuid4().hex[:8]}"
    boss = DistributedImport(admin, namespace=namespace, batch_size=5)
    job = boss.prepare(IterableSource({"n": i} for i in range(10))).job_id
    # Both batches held by another worker: "w" waits for one to come back.
    held = [boss._driver.run(boss._core.store.claim(job, "other")) for _ in range(2)]
    before = set(_blocked_reads(admin))
    summaries: list[Any] = []

    def work() -> None:
        if facade == "sync":
            di = DistributedImport(redis.Redis.from_url(real_url), namespace=namespace)
            summaries.append(di.run_worker(job, lambda r, c: None, "w"))
            return

        async def run() -> None:
            client = redis.asyncio.Redis.from_url(real_url)
            di = AsyncDistributedImport(client, namespace=namespace)
            summaries.append(await di.run_worker(job, lambda r, c: None, "w"))
            await client.aclose()

        asyncio.run(run())

    def blocked() -> list[str]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = [i for i in _blocked_reads(admin) if i not in before]
            if found:
                return found
            time.sleep(0.01)
        return []

    worker = threading.Thread(target=work)
    worker.start()
    found = blocked()
    assert found, "the worker's wait blocks"
    try:
        admin.execute_command("CLIENT", "UNBLOCK", found[0], "ERROR")
        time.sleep(0.05)
        assert blocked(), "the worker's next wait blocks again"
    finally:
        for claim in held:  # handed back: stored on the queue again, they wake "w"
            boss.release_batch(job, f"batch-{claim.batch_index}", "other")
        worker.join(10)
    assert not worker.is_alive()
    assert (summaries[0].processed, summaries[0].state) == (10, "COMPLETED")
    assert "poll instead of blocking" not in caplog.text

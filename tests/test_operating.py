"""Operating a job from the library: JobStatus's attempt/rate/eta/workers,
``watch`` over the event stream, and the eviction-policy warning."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis

from redisbatch import (
    AsyncDistributedImport,
    DistributedImport,
    IterableSource,
    JobNotFoundError,
    _eviction,
)
from redisbatch._store import job_status
from tests._async_adapter import SyncFacade
from tests.test_store import Raw

Make = Callable[..., DistributedImport]


def numbered(n: int) -> IterableSource:
    return IterableSource({"n": i} for i in range(n))


def status_of(di: Any, job: str) -> Any:
    status = di.status(job)
    assert status is not None
    return status


def nothing(record: Any, ctx: Any) -> None:
    return None


# ---------------------------------------------------------------- status fields


def test_status_fields_before_during_and_after(make_import: Make) -> None:
    """attempt 1; rate/eta None before a commit, then counted; once final eta 0.0, no workers."""
    di = make_import(batch_size=10)
    job = di.prepare(numbered(50)).job_id
    status = status_of(di, job)
    assert (status.attempt, status.rate, status.eta, status.workers) == (1, None, None, 0)
    di.process_worker_batch(job, nothing, "w1")
    di.process_worker_batch(job, nothing, "w2")
    status = status_of(di, job)
    assert status.workers == 2
    assert status.rate is not None and 0 < status.rate <= 20
    assert status.eta is not None and status.eta == pytest.approx(30 / status.rate)
    di.run_worker(job, nothing, "w1")
    status = status_of(di, job)
    assert status.state == "COMPLETED" and status.eta == 0.0 and status.workers == 0
    assert status.rate is not None and status.rate > 0


def test_workers_are_the_ones_heard_of_within_the_stale_timeout(make_import: Make) -> None:
    """A worker not heard of for longer than the stale timeout no longer counts."""
    di = make_import(batch_size=5, stale_batch_timeout=0.2)
    raw = Raw(di)
    job = di.prepare(numbered(50)).job_id
    raw.claim(job, "a")
    raw.claim(job, "b")
    assert status_of(di, job).workers == 2
    time.sleep(0.3)
    held = raw.claim(job, "c")  # takes over a's batch (stale), trims a and b
    assert held.batch_index is not None
    assert status_of(di, job).workers == 1
    assert raw.heartbeat(job, "c", held)[0] == b"OK"
    assert status_of(di, job).workers == 1


def test_status_stays_small_whatever_the_job_size(make_import: Make, client: Any) -> None:
    """The job hash and the workers set stay bounded: status reads O(1) data."""
    di = make_import(batch_size=1, stale_batch_timeout=0.05)
    job = di.prepare(numbered(150)).job_id
    for i in range(75):
        di.process_worker_batch(job, nothing, f"early{i}")
    time.sleep(0.1)  # the early workers are not heard of for longer than the stale timeout
    for i in range(75):
        di.process_worker_batch(job, nothing, f"late{i}")
    keys = di._core.store.keys(job)
    assert client.hlen(keys.job) <= 40 + 60  # fixed fields + 60 per-second slots
    assert client.zcard(keys.workers) <= 75  # the early ones were dropped by later claims


def _fields(**values: Any) -> dict[str, Any]:
    base = {"state": "PROCESSING", "total_records": 1000, "processed_records": 0,
            "failed_records": 0, "created_at": "100.0", "started_at": "100.0"}  # fmt: skip
    base.update(values)
    return {k: str(v).encode() for k, v in base.items()}


def test_rate_is_over_the_last_minute_of_commits() -> None:
    """Rate: records settled over the last 60 s (less when the job is younger); ETA from it."""
    young = _fields(processed_records=100, **{"r:10": "130:40", "r:11": "131:60"})
    status = job_status("j", 0, 140.0, 3, young)
    assert status.rate == pytest.approx(100 / 40)  # started 40 s ago
    assert status.eta == pytest.approx(900 / (100 / 40))
    slots = {f"r:{s % 60}": f"{s}:10" for s in range(150, 210)}  # 10/s for the last minute
    old = _fields(processed_records=600, **slots)
    assert job_status("j", 0, 210.0, 1, old).rate == pytest.approx(10.0)
    done = _fields(state="COMPLETED", processed_records=1000, completed_at="210.0", **slots)
    final = job_status("j", 0, 999.0, 1, done)  # read long after the end: the end's minute
    assert (final.rate, final.eta, final.workers) == (pytest.approx(10.0), 0.0, 0)
    slots["r:29"] = "89:999"  # second 209's slot last held second 89: not counted
    assert job_status("j", 0, 210.0, 1, _fields(**slots)).rate == pytest.approx(590 / 60)
    paused = job_status("j", 0, 210.0, 1, _fields(state="PAUSED", **slots))
    assert paused.eta is None and paused.rate is not None


# ---------------------------------------------------------------- watch


def _watch(di: Any, job: str, interval: float) -> list[Any]:
    if isinstance(di, SyncFacade):

        async def collect() -> list[Any]:
            return [s async for s in di._async.watch(job, interval)]

        return list(di._runner.run(collect()))
    return list(di.watch(job, interval))


def slow(record: Any, ctx: Any) -> None:
    time.sleep(0.002)


def test_watch_follows_the_job_to_exactly_one_final_snapshot(make_import: Make) -> None:
    """watch yields the current snapshot, then monotone progress, then one final snapshot."""
    di = make_import(batch_size=10)
    job = di.prepare(numbered(200)).job_id
    worker = threading.Thread(target=di.run_worker, args=(job, slow, "w"))
    worker.start()
    try:
        seen = _watch(di, job, 0.5)
    finally:
        worker.join(60)
    settled = [s.processed_records + s.failed_records for s in seen]
    assert settled == sorted(settled) and settled[-1] == 200
    assert [s.is_complete for s in seen].count(True) == 1 and seen[-1].state == "COMPLETED"
    assert len(seen) >= 2
    again = _watch(di, job, 0.5)
    assert len(again) == 1 and again[0].state == "COMPLETED"


def test_watch_of_an_unknown_job_raises(make_import: Make) -> None:
    """watch on a job that does not exist raises JobNotFoundError."""
    di = make_import()
    with pytest.raises(JobNotFoundError):
        _watch(di, "no-such-job", 0.1)


def test_watch_wakes_on_a_commit_not_on_the_interval(client: Any) -> None:
    """A commit wakes the watch at once: a long interval does not delay the next snapshot."""
    di = DistributedImport(client, batch_size=10, namespace="wake")
    job = di.prepare(numbered(20)).job_id
    watching: Iterator[Any] = di.watch(job, interval=30.0)
    first = next(watching)
    assert first.processed_records == 0
    worker = threading.Timer(0.2, di.process_worker_batch, args=(job, nothing, "w"))
    worker.start()
    started = time.monotonic()
    second = next(watching)
    assert second.processed_records == 10
    assert time.monotonic() - started < 20  # well before the 30 s interval
    watching.close()  # type: ignore[attr-defined]
    worker.join(10)  # the watch woke on the commit's event, maybe before its reply came


# ---------------------------------------------------------------- eviction policy


@pytest.fixture
def fresh_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_eviction, "_checked", set())


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "redisbatch" and r.levelno == logging.WARNING
    ]


def test_no_warning_under_noeviction_or_when_config_is_refused(
    client: Any, is_real: bool, fresh_check: None, caplog: pytest.LogCaptureFixture
) -> None:
    """noeviction (the real server's default) or a refused CONFIG GET (fakeredis): no warning."""
    caplog.set_level(logging.DEBUG, logger="redisbatch")
    DistributedImport(client)
    assert _warnings(caplog) == []
    if not is_real:
        assert any("maxmemory-policy" in r.getMessage() for r in caplog.records)


def test_an_evicting_server_is_warned_about_once(
    real_client: redis.Redis,
    real_url: str,
    fresh_check: None,
    caplog: pytest.LogCaptureFixture,
    event_loop_thread: Any,
) -> None:
    """allkeys-lru: one warning per server, at construction (sync) or first call (async)."""
    caplog.set_level(logging.DEBUG, logger="redisbatch")
    real_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        DistributedImport(real_client)
        DistributedImport(redis.Redis.from_url(real_url))
        [message] = _warnings(caplog)
        assert "allkeys-lru" in message and "noeviction" in message
        _eviction._checked.clear()
        caplog.clear()

        async def build_then_call() -> tuple[int, int]:
            import redis.asyncio

            async_client = redis.asyncio.Redis.from_url(real_url)
            di = AsyncDistributedImport(async_client)
            before = len(_warnings(caplog))
            await di.status("nothing")
            after = len(_warnings(caplog))
            await async_client.aclose()
            return before, after

        assert event_loop_thread.run(build_then_call()) == (0, 1)
    finally:
        real_client.config_set("maxmemory-policy", "noeviction")


def test_a_client_refused_config_get_by_acl_is_not_an_error(
    real_client: redis.Redis, real_url: str, fresh_check: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Under an ACL without CONFIG, construction succeeds and only logs at debug."""
    caplog.set_level(logging.DEBUG, logger="redisbatch")
    real_client.config_set("maxmemory-policy", "allkeys-lru")
    real_client.acl_setuser(
        "limited", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-config"]
    )
    try:
        limited = redis.Redis.from_url(real_url, username="limited", password="secret")
        di = DistributedImport(limited)
        assert di.status("nothing") is None
        assert _warnings(caplog) == []
        assert any("could not read" in r.getMessage() for r in caplog.records)
        limited.close()
    finally:
        real_client.acl_deluser("limited")
        real_client.config_set("maxmemory-policy", "noeviction")


def test_fakeredis_identity_is_per_server() -> None:
    """Two fakeredis servers are two servers; two clients of one server are one."""
    server = fakeredis.FakeServer()
    one = _eviction.server_identity(fakeredis.FakeRedis(server=server))
    assert one == _eviction.server_identity(fakeredis.FakeRedis(server=server))
    assert one != _eviction.server_identity(fakeredis.FakeRedis(server=fakeredis.FakeServer()))


def test_reply_shapes_are_read_alike() -> None:
    """XREAD/XREVRANGE and CONFIG GET replies in RESP2, RESP3 and cluster shapes."""
    from redisbatch._watch import _last_id

    entries = [(b"1-0", {b"type": b"x"}), (b"2-0", {b"type": b"y"})]
    assert _last_id([[b"events", entries]]) == b"2-0"  # XREAD, RESP2
    assert _last_id({b"events": [list(e) for e in entries]}) == b"2-0"  # XREAD, RESP3
    assert _last_id(entries[:1]) == b"1-0"  # XREVRANGE
    assert _last_id([]) is None and _last_id(None) is None
    policies = _eviction._policies
    assert policies({b"maxmemory-policy": b"allkeys-lru"}) == {"allkeys-lru"}
    assert policies([b"maxmemory-policy", b"noeviction"]) == {"noeviction"}
    per_node = {"127.0.0.1:7000": {"maxmemory-policy": "volatile-lru"}}
    assert policies(per_node) == {"volatile-lru"}


def test_watch_blocks_less_than_the_clients_read_timeout(real_url: str) -> None:
    """A client with socket_timeout=0.5 watches with interval 5 without a timeout error."""
    client = redis.Redis.from_url(real_url, socket_timeout=0.5)
    di = DistributedImport(client, batch_size=10, namespace="timeout")
    job = di.prepare(numbered(20)).job_id
    watching = di.watch(job, interval=5.0)
    assert next(watching).processed_records == 0
    worker = threading.Timer(1.5, di.process_worker_batch, args=(job, nothing, "w"))
    worker.start()
    assert next(watching).processed_records == 10  # waited through blocks of 0.25 s
    watching.close()  # type: ignore[attr-defined]
    worker.join(10)  # its commit's reply may still be on its way: then close the client
    client.close()

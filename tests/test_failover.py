"""Failover (API contract, section 8): run_worker rides out a Redis restart or a cluster
failover, retrying with backoff for up to stale_batch_timeout; process_worker_batch
raises, as a single call should."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.exceptions
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from redisbatch import DistributedImport, Field, IterableSource, Schema
from redisbatch._embedded import EmbeddedServer

Make = Callable[..., DistributedImport]


def failing_scripts(di: Any, name: str, errors: list[Exception]) -> list[str]:
    """Makes the facade's next calls of script ``name`` raise ``errors`` one by one;
    returns the names of the scripts called since."""
    driver = di._async._driver if hasattr(di, "_async") else di._driver
    original = driver.script
    called: list[str] = []

    def fail(call: Any) -> None:
        called.append(call.script.name)
        if call.script.name == name and errors:
            raise errors.pop(0)

    if inspect.iscoroutinefunction(original):

        async def async_script(call: Any) -> Any:
            fail(call)
            return await original(call)

        driver.script = async_script
    else:

        def script(call: Any) -> Any:
            fail(call)
            return original(call)

        driver.script = script
    return called


def test_a_flow_fed_connection_errors_is_run_again_after_a_wait() -> None:
    """riding_out, fed replies by hand: a transient error means a Sleep and the flow
    again; other errors, and transient ones past the limit, propagate."""
    from redisbatch._effects import Sleep
    from redisbatch._worker import riding_out

    def flow() -> Any:
        return (yield "claim")

    ride = riding_out(flow, 60.0, "claim")
    assert next(ride) == "claim"
    assert isinstance(ride.throw(redis.exceptions.ConnectionError("reset")), Sleep)
    assert ride.send(None) == "claim"
    assert isinstance(ride.throw(redis.exceptions.ClusterDownError("CLUSTERDOWN")), Sleep)
    assert ride.send(None) == "claim"
    with pytest.raises(StopIteration) as done:
        ride.send("OK")
    assert done.value.value == "OK"
    fatal = riding_out(flow, 60.0, "claim")
    next(fatal)
    with pytest.raises(redis.exceptions.ResponseError):
        fatal.throw(redis.exceptions.ResponseError("WRONGTYPE"))
    single = riding_out(flow, 0.0, "claim")
    next(single)
    with pytest.raises(redis.exceptions.ConnectionError):
        single.throw(redis.exceptions.ConnectionError("reset"))


def test_run_worker_rides_out_connection_errors(make_import: Make) -> None:
    """Claims and commits failing with connection and cluster errors: run_worker retries
    them (a commit with the same token) and finishes the job, counts exact, without
    waiting for the 60 s stale timeout."""
    di = make_import(batch_size=5, stale_batch_timeout=60)
    job = di.prepare(IterableSource({"n": i} for i in range(20))).job_id
    errors: list[Exception] = [
        redis.exceptions.ConnectionError("Connection reset by peer"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
    ]
    called = failing_scripts(di, "commitBatch", errors)
    claim_errors: list[Exception] = [
        redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        redis.exceptions.TryAgainError("TRYAGAIN"),
        redis.exceptions.MasterDownError("MASTERDOWN"),
    ]
    failing_scripts(di, "claimBatch", claim_errors)
    started = time.monotonic()
    summary = di.run_worker(job, lambda r, c: None)
    assert time.monotonic() - started < 20
    assert not errors and not claim_errors
    assert (summary.processed, summary.batches, summary.state) == (20, 4, "COMPLETED")
    assert called.count("commitBatch") == 4 + 2, "the failed commits were sent again"
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.completed_batches) == (20, 4)


def test_process_worker_batch_raises_on_a_connection_error(make_import: Make) -> None:
    """A single process_worker_batch call raises the connection error of its commit."""
    di = make_import(batch_size=5, stale_batch_timeout=0.3)
    job = di.prepare(IterableSource({"n": i} for i in range(5))).job_id
    failing_scripts(di, "commitBatch", [redis.exceptions.ConnectionError("down")])
    with pytest.raises(redis.exceptions.ConnectionError):
        di.process_worker_batch(job, lambda r, c: None, "single")
    time.sleep(0.35)
    assert di.run_worker(job, lambda r, c: None).processed == 5


def test_run_worker_gives_up_after_the_stale_timeout(make_import: Make) -> None:
    """A Redis that stays down longer than stale_batch_timeout: run_worker raises."""
    di = make_import(batch_size=5, stale_batch_timeout=0.5)
    job = di.prepare(IterableSource({"n": i} for i in range(5))).job_id
    failing_scripts(di, "claimBatch", [redis.exceptions.ConnectionError("down")] * 1000)
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError):
        di.run_worker(job, lambda r, c: None)
    assert 0.5 <= time.monotonic() - started < 5


def test_a_claim_whose_reply_was_lost_does_not_wait_for_the_stale_timeout(
    make_import: Make,
) -> None:
    """A batch claimed under a worker's id by a request whose reply never arrived (the
    client re-sent the claim and got another batch) is given back by that worker once it
    finds nothing else to claim, not left to the 60 s stale timeout."""
    di = make_import(batch_size=5, stale_batch_timeout=60)
    job = di.prepare(IterableSource({"n": i} for i in range(10))).job_id
    lost = di._driver.run(di._core.store.claim(job, "w"))  # the reply nobody read
    assert lost.batch_index == 0
    started = time.monotonic()
    summary = di.run_worker(job, lambda r, c: None, "w")
    assert time.monotonic() - started < 10
    assert (summary.processed, summary.state) == (10, "COMPLETED")


def test_run_worker_rides_out_a_server_restart(durable_server: EmbeddedServer) -> None:
    """The server is killed mid-job and restarted from its AOF 3 s later: two workers
    keep running (no supervisor loop around them) and finish the job, counts exact."""
    client = redis.Redis(port=durable_server.port)
    schema = Schema([Field("n", "integer", required=True)])
    di = DistributedImport(client, schema, batch_size=20, stale_batch_timeout=30)
    job = di.prepare(IterableSource({"n": str(i)} for i in range(1000))).job_id
    seen: list[int] = []
    summaries: list[Any] = []
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        # A client whose own retries (3, backoff capped at 0.1 s) end well within the outage.
        quick = redis.Redis(port=durable_server.port, retry=Retry(ExponentialBackoff(0.1, 0.01), 3))
        own = DistributedImport(quick, schema, batch_size=20, stale_batch_timeout=30)
        try:
            summaries.append(
                own.run_worker(job, lambda r, c: (seen.append(r["n"]), time.sleep(0.002)), name)
            )
        except BaseException as exc:
            import traceback

            traceback.print_exc()
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(seen) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    run_before = client.info("server")["run_id"]
    durable_server.kill()
    time.sleep(3.0)
    durable_server.start()
    started = time.monotonic()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert not errors, errors
    assert time.monotonic() - started < 15, "a batch waited for the 30 s stale timeout"
    assert client.info("server")["run_id"] != run_before, "the server restarted"
    status = di.status(job)
    assert status is not None and status.state == "COMPLETED"
    assert (status.processed_records, status.failed_records) == (1000, 0)
    assert status.completed_batches == status.total_batches == 50
    assert {s.state for s in summaries} == {"COMPLETED"}
    assert set(seen) == set(range(1000))
    client.close()

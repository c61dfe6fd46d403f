"""The worst day for the store: the Redis server is killed mid-job and restarts
from its append-only file (and with its script cache empty)."""

from __future__ import annotations

import threading
import time

import redis

from redisbatch import DistributedImport, Field, IterableSource, Schema
from redisbatch._embedded import EmbeddedServer


def test_a_server_crash_and_restart_counts_nothing_twice(durable_server: EmbeddedServer) -> None:
    """SIGKILL the server mid-job, restart it from its AOF: workers reconnect (their
    calls reload the lost scripts), batches in flight are reclaimed, counts are exact."""
    client = redis.Redis(port=durable_server.port)
    schema = Schema([Field("n", "integer", required=True)], unique_fields=["n"])
    di = DistributedImport(client, schema, batch_size=20, stale_batch_timeout=0.5)
    job = di.prepare(IterableSource({"n": str(i % 900)} for i in range(1000))).job_id
    seen: list[int] = []

    def worker() -> None:
        while True:
            try:
                summary = di.run_worker(job, lambda r, c: (seen.append(r["n"]), time.sleep(0.001)))
                if summary.finalized or di.status(job).is_complete:  # type: ignore[union-attr]
                    return
            except redis.exceptions.ConnectionError:  # down past redis-py's own retries
                time.sleep(0.1)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(seen) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    run_before = client.info("server")["run_id"]
    durable_server.kill()
    time.sleep(0.3)
    durable_server.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert client.info("server")["run_id"] != run_before, "the server restarted"
    status = di.status(job)
    assert status is not None and status.state == "COMPLETED"
    assert (status.processed_records, status.failed_records) == (900, 100)
    assert status.completed_batches == status.total_batches == 50
    assert set(seen) == set(range(900)), "every valid record processed at least once"
    client.close()

"""Redis Cluster: every script of a job runs on the shard of its hash tag."""

from __future__ import annotations

import time
import uuid

import redis

from redisbatch import DistributedImport, Field, IterableSource, Schema


def test_jobs_run_end_to_end_on_a_three_master_cluster(cluster_url: str) -> None:
    """Jobs on different shards prepare, process, fence, report and delete."""
    client = redis.RedisCluster.from_url(cluster_url)
    di = DistributedImport(
        client,
        Schema([Field("n", "integer")]),
        batch_size=3,
        namespace=f"c{uuid.uuid4().hex[:6]}",
        stale_batch_timeout=0.2,
    )
    slots = set()
    for _ in range(4):
        job = di.prepare(IterableSource({"n": "x" if i == 4 else i} for i in range(10))).job_id
        slots.add(client.keyslot(di._core.store.keys(job).job))
        held = di._driver.run(di._core.store.claim(job, "stalled"))
        time.sleep(0.25)
        summary = di.run_worker(job, lambda r, c: None)
        assert (summary.processed, summary.failed, summary.finalized) == (9, 1, True)
        late = di._driver.run(
            di._core.store.commit(
                job,
                held.batch_index or 0,
                held.token,
                processed=3,
                failed=0,
                batch_state="COMPLETED",
                failed_payload=b"",
            )
        )
        assert not late.accepted
        status = di.status(job)
        assert status is not None and status.state == "COMPLETED"
        assert (status.processed_records, status.failed_records) == (9, 1)
        assert [r.index for r in di.failed_records(job)] == [4]
        assert di.delete(job) and di.status(job) is None
    assert len(slots) > 1, "the jobs should have landed on different slots"
    client.close()

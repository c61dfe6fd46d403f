"""Operating jobs on a real three-master Redis Cluster: thresholds, retry_failed,
watch and status read each job on its own shard."""

from __future__ import annotations

import uuid
from typing import Any

import redis

from redisbatch import DistributedImport, IterableSource


def test_thresholds_redrive_and_watch_on_a_cluster(cluster_url: str) -> None:
    """A job failed over its threshold is redriven, watched to its end and read, on a cluster."""
    client = redis.RedisCluster.from_url(cluster_url)
    di = DistributedImport(
        client, batch_size=5, namespace=f"o{uuid.uuid4().hex[:6]}", tolerated_failure_count=3
    )
    down = {"on": True}

    def save(record: Any, ctx: Any) -> None:
        if down["on"] and ctx.record_index % 2 == 0:
            raise ConnectionError("down")

    slots = set()
    for _ in range(3):
        job = di.prepare(IterableSource({"n": i} for i in range(40))).job_id
        slots.add(client.keyslot(di._core.store.keys(job).job))
        down["on"] = True
        assert di.run_worker(job, save, "w").finalized
        status = di.status(job)
        assert status is not None and (status.state, status.failed_records) == ("FAILED", 5)
        assert di.retry_failed(job) == 5 + 30
        down["on"] = False
        di.run_worker(job, save, "w")
        [final] = list(di.watch(job, interval=0.1))
        assert (final.state, final.attempt, final.processed_records) == ("COMPLETED", 2, 40)
        assert final.eta == 0.0 and final.rate is not None
        assert list(di.failed_records(job)) == []
        assert [j.attempt for j in di.jobs() if j.job_id == job] == [2]
    assert len(slots) > 1, "the jobs should have landed on different slots"
    client.close()

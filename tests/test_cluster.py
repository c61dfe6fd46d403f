"""Redis Cluster: every script of a job runs on the shard of its hash tag."""

from __future__ import annotations

import asyncio
import time
import uuid

import redis
import redis.asyncio

from redisbatch import AsyncDistributedImport, DistributedImport, Field, IterableSource, Schema


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


def test_records_read_after_their_claims_on_a_cluster(cluster_url: str) -> None:
    """Records left out of claims' replies (a limit of 0) are read through the
    cluster client's pipeline, sync and async (no line on a cluster): counts exact."""
    client = redis.RedisCluster.from_url(cluster_url)
    di = DistributedImport(client, batch_size=3, namespace=f"c{uuid.uuid4().hex[:6]}")
    di._core.store.inline_records = "0"
    job = di.prepare(IterableSource({"n": i} for i in range(10))).job_id
    summary = di.run_worker(job, lambda r, c: None)
    assert (summary.processed, summary.batches, summary.state) == (10, 4, "COMPLETED")
    client.close()

    async def scenario() -> None:
        aclient = redis.asyncio.RedisCluster.from_url(cluster_url)
        adi = AsyncDistributedImport(aclient, batch_size=3, namespace=f"c{uuid.uuid4().hex[:6]}")
        adi._core.store.inline_records = "0"
        ajob = (await adi.prepare(IterableSource({"n": i} for i in range(10)))).job_id
        summary = await adi.run_worker(ajob, lambda r, c: None)
        assert (summary.processed, summary.batches, summary.state) == (10, 4, "COMPLETED")
        one = await adi.process_worker_batch(ajob, lambda r, c: None, "w")
        assert not one.claimed
        await aclient.aclose()

    asyncio.run(scenario())

"""``redisbatch.metrics``: the figures of ``/metrics`` for embedding, equal to status()."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import fakeredis
import redis
import redis.asyncio

from redisbatch import AsyncDistributedImport, DistributedImport, IterableSource, JobStatus, metrics


def _values(families: list[metrics.MetricFamily]) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {(f.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def _jobs(di: DistributedImport) -> list[str]:
    rows = [{"n": str(i)} for i in range(7)]
    done = di.prepare(IterableSource(rows), job_id="done").job_id

    def fail_odd(record: dict[str, Any], ctx: Any) -> None:
        if int(record["n"]) % 2:
            raise ValueError("odd")

    di.run_worker(done, fail_odd)
    half = di.prepare(IterableSource(rows), job_id="half").job_id
    di.process_worker_batch(half, fail_odd, "w1")
    aborted = di.prepare(IterableSource(rows), job_id="aborted").job_id
    di.abort(aborted)
    return [done, half, aborted]


def test_collect_agrees_with_status(client: redis.Redis) -> None:
    """collect() gives per job records and batches, per namespace jobs by state, as status()."""
    namespace = f"m{uuid.uuid4().hex[:8]}"
    di = DistributedImport(client, namespace=namespace, batch_size=3, retry_delay=0)
    ids = _jobs(di)
    values = _values(metrics.collect(di))
    for job_id in ids:
        s = di.status(job_id)
        assert s is not None
        labels = {"namespace": namespace, "job_id": job_id, "state": s.state}
        for outcome, expected in (
            ("total", s.total_records),
            ("processed", s.processed_records),
            ("failed", s.failed_records),
        ):
            key = tuple(sorted({**labels, "outcome": outcome}.items()))
            assert values["redisbatch_job_records", key] == expected
        for batch_state in ("pending", "processing", "completed", "failed"):
            key = tuple(sorted({**labels, "batch_state": batch_state}.items()))
            assert values["redisbatch_job_batches", key] == getattr(s, f"{batch_state}_batches")
    jobs = {k[1][1][1]: v for k, v in values.items() if k[0] == "redisbatch_jobs"}
    assert jobs == {
        "PREPARING": 0,
        "PROCESSING": 1,
        "PAUSED": 0,
        "COMPLETED": 1,
        "FAILED": 0,
        "ABORTED": 1,
    }
    assert (di.status("done").processed_records, di.status("done").failed_records) == (4, 3)  # type: ignore[union-attr]


def test_acollect_on_the_async_facade(client: redis.Redis) -> None:
    """acollect() gives an AsyncDistributedImport's namespace the same figures as collect()."""
    namespace = f"m{uuid.uuid4().hex[:8]}"
    di = DistributedImport(client, namespace=namespace, batch_size=3, retry_delay=0)
    _jobs(di)
    expected = metrics.collect(di)

    async def scrape() -> list[metrics.MetricFamily]:
        if isinstance(client, fakeredis.FakeRedis):
            server = client.connection_pool.connection_kwargs["server"]
            async_client: Any = fakeredis.FakeAsyncRedis(server=server)
        else:
            kwargs = client.connection_pool.connection_kwargs
            async_client = redis.asyncio.Redis(host=kwargs["host"], port=kwargs["port"])
        try:
            return await metrics.acollect(AsyncDistributedImport(async_client, namespace=namespace))
        finally:
            await async_client.aclose()

    assert asyncio.run(scrape()) == expected


def test_render_is_the_prometheus_text_format() -> None:
    """render() writes HELP/TYPE, escapes label values, leaves out empty families."""
    family = metrics.MetricFamily(
        "redisbatch_job_records",
        "gauge",
        "Records.\nTwo lines \\ here",
        [
            metrics.Sample({"job_id": 'a "b" \\ c\nd', "outcome": "total"}, 3.0),
            metrics.Sample({"job_id": "x"}, 0.25),
        ],
    )
    empty = metrics.MetricFamily("redisbatch_job_rate", "gauge", "Rate.", [])
    assert metrics.render([family, empty]) == (
        "# HELP redisbatch_job_records Records.\\nTwo lines \\\\ here\n"
        "# TYPE redisbatch_job_records gauge\n"
        'redisbatch_job_records{job_id="a \\"b\\" \\\\ c\\nd",outcome="total"} 3\n'
        'redisbatch_job_records{job_id="x"} 0.25\n'
    )
    assert metrics.render([empty]) == ""


class _Later(JobStatus, frozen=True):
    """A JobStatus with the fields a later version adds (rate, eta, workers, attempt)."""

    attempt: int = 1
    rate: float | None = None
    eta: float | None = None
    workers: int = 0


def _status(job_id: str, state: str, **later: Any) -> JobStatus:
    return _Later(
        job_id=job_id,
        state=state,
        total_records=10,
        total_batches=2,
        pending_batches=1,
        processing_batches=1,
        completed_batches=0,
        failed_batches=0,
        processed_records=4,
        failed_records=1,
        is_complete=False,
        created_at=1.0,
        started_at=None,
        completed_at=None,
        error=None,
        **later,
    )


def test_rate_eta_workers_and_attempt_when_status_has_them() -> None:
    """rate, eta, workers and attempt become gauges where JobStatus has them; None is left out."""
    families = metrics.families(
        [
            _status("a", "PROCESSING", rate=12.5, eta=40.0, workers=3, attempt=2),
            _status("b", "PROCESSING"),
        ],
        "ns",
    )
    values = _values(families)
    a = (("job_id", "a"), ("namespace", "ns"), ("state", "PROCESSING"))
    b = (("job_id", "b"), ("namespace", "ns"), ("state", "PROCESSING"))
    assert values["redisbatch_job_rate", a] == 12.5
    assert values["redisbatch_job_eta_seconds", a] == 40.0
    assert values["redisbatch_job_workers", a] == 3
    assert values["redisbatch_job_attempt", a] == 2
    assert ("redisbatch_job_rate", b) not in values
    assert ("redisbatch_job_eta_seconds", b) not in values
    assert values["redisbatch_job_workers", b] == 0
    text = metrics.render(families)
    assert 'redisbatch_job_rate{namespace="ns",job_id="a",state="PROCESSING"} 12.5\n' in text
    assert text.count("# TYPE redisbatch_job_rate gauge") == 1

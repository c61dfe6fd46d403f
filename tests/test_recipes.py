"""The queue and serverless recipes of examples/ run a prepared job to its end on a
real server: Celery tasks (eager mode), RQ jobs (a SimpleWorker in this process),
and a Lambda-style handler that re-invokes itself; each hands over when its time
budget runs out, and exactly one of them finalizes the job."""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from redisbatch import DistributedImport, IterableSource

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _need(module: str) -> None:
    """Skips when ``module`` (an extra only these tests use) is missing, outside CI only."""
    try:
        importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed (pip install -e '.[recipes]')")


def _load(name: str, monkeypatch: pytest.MonkeyPatch, url: str) -> tuple[ModuleType, str]:
    """The example module, imported afresh under its own name with REDIS_URL and a new
    namespace; (module, namespace)."""
    namespace = f"r{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", url)
    # celery_tasks.py prefers CELERY_BROKER_URL: a user's broker is not the test's.
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setenv("REDISBATCH_NAMESPACE", namespace)
    unique = f"{name}_{namespace}"
    spec = importlib.util.spec_from_file_location(unique, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, unique, module)  # RQ imports the job function by name
    spec.loader.exec_module(module)
    return module, namespace


def _slow_and_counted(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Makes the example's processor take 10 ms a record; returns the list that
    collects every run_worker summary."""
    save = module.save_record

    def slow(record: dict[str, Any], ctx: Any) -> None:
        time.sleep(0.01)
        save(record, ctx)

    monkeypatch.setattr(module, "save_record", slow)
    di = module.importer()
    run_worker = di.run_worker
    summaries: list[Any] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        summaries.append(run_worker(*args, **kwargs))
        return summaries[-1]

    monkeypatch.setattr(di, "run_worker", counted)
    return summaries


def _prepare(client: redis.Redis, namespace: str, count: int) -> str:
    di = DistributedImport(client, namespace=namespace, batch_size=5)
    return di.prepare(IterableSource([{"n": str(i)} for i in range(count)])).job_id


def _check_done(client: redis.Redis, namespace: str, job_id: str, count: int) -> None:
    status = DistributedImport(client, namespace=namespace).status(job_id)
    assert status is not None and status.state == "COMPLETED"
    assert (status.processed_records, status.failed_records) == (count, 0)
    saved = {k.decode() for k in client.hkeys(f"{namespace}:saved")}
    assert saved == {f"{job_id}:{i}" for i in range(count)}


def test_celery_tasks_fan_out_and_hand_over(
    real_url: str, real_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery tasks hand over when their budget runs out; the job ends COMPLETED, finalized once."""
    _need("celery")
    module, namespace = _load("celery_tasks", monkeypatch, real_url)
    module.app.conf.task_always_eager = True  # tasks run inline, as a worker would run them
    module.app.conf.task_eager_propagates = True
    summaries = _slow_and_counted(module, monkeypatch)
    job_id = _prepare(real_client, namespace, 60)
    results = module.fan_out(job_id, tasks=3, time_budget=0.15)
    assert len(results) == 3
    assert all(r.successful() for r in results)
    _check_done(real_client, namespace, job_id, 60)
    assert len(summaries) > 3  # budgets ran out and successors took over
    assert sum(s.finalized for s in summaries) == 1
    assert sum(s.processed for s in summaries) == 60


def test_rq_jobs_fan_out_and_hand_over(
    real_url: str, real_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RQ jobs hand over when their budget runs out; the job ends COMPLETED, finalized once."""
    _need("rq")
    from rq import Queue, SimpleWorker

    module, namespace = _load("rq_jobs", monkeypatch, real_url)
    summaries = _slow_and_counted(module, monkeypatch)
    job_id = _prepare(real_client, namespace, 60)
    jobs = module.fan_out(job_id, jobs=3, time_budget=0.15, connection=real_client)
    assert len(jobs) == 3
    queue = Queue(module.QUEUE, connection=real_client)
    # An RQ worker installs SIGINT/SIGTERM handlers and leaves them behind: put
    # the test process's own back, or later tests' signals raise rq's exceptions.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        SimpleWorker([queue], connection=real_client).work(burst=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert all(job.get_status(refresh=True) == "finished" for job in jobs)
    _check_done(real_client, namespace, job_id, 60)
    assert len(summaries) > 3
    assert sum(s.finalized for s in summaries) == 1
    assert len(queue) == 0


class _Context:
    """What the handler reads of a Lambda context."""

    function_name = "import-users"

    def __init__(self, remaining: float) -> None:
        self.remaining = remaining

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining * 1000)


def test_lambda_handler_reinvokes_itself_until_the_job_is_done(
    real_url: str, real_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Lambda-style handler re-invokes itself until the job is COMPLETED, finalized once."""
    module, namespace = _load("lambda_handler", monkeypatch, real_url)
    summaries = _slow_and_counted(module, monkeypatch)
    job_id = _prepare(real_client, namespace, 150)
    pending = [{"job_id": job_id}] * 3
    invoked: list[str] = []
    replies = []

    def invoke(function_name: str, event: dict[str, Any]) -> None:
        invoked.append(function_name)
        pending.append(event)

    while pending:
        assert len(replies) < 20, replies
        event = pending.pop(0)
        replies.append(module.handler(event, _Context(module.MARGIN + 1.0), invoke=invoke))
    _check_done(real_client, namespace, job_id, 150)
    assert invoked and set(invoked) == {"import-users"}
    assert len(replies) == 3 + len(invoked)
    assert [r["reinvoked"] for r in replies].count(True) == len(invoked)
    assert replies[-1]["state"] == "COMPLETED"
    assert sum(r["finalized"] for r in replies) == 1
    assert sum(s.processed for s in summaries) == 150

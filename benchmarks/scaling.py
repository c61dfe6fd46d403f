"""Scaling of the standard job with N: throughput, CPU per record, server time
per batch and the server's memory, without and with ``max_pending_batches``.

    python benchmarks/scaling.py --data-dir /tmp/scaling-data --repeat 3
    python benchmarks/scaling.py --rows 10000000 --max-pending 16 --data-dir ...   # 10M, once
    python benchmarks/scaling.py --smoke          # N = 2000, a few seconds (CI)

The job is benchmarks/peers/run.py's redisbatch run (``common.run_ours``):
the users CSV of benchmarks/standard_job.py (every 100th email malformed),
batch 500, a no-op processor, 4 worker processes started and ready before
``prepare`` (start-up not measured), this process as the orchestrator. Each
run has a fresh server of its own on a free port, so ``used_memory_peak`` is
that run's peak. Per N (``--rows``, default 10k, 100k, 1M; 10M only when asked,
it takes minutes) and attempt (``--repeat`` for N below 1M, ``--repeat-large``
from 1M), the job runs twice back to back: without backpressure, and with
``max_pending_batches`` (``--max-pending``, default 16).

Per run:

- records/s, CPU per record (orchestrator + workers + server: process
  times, ``/proc`` trees, ``INFO cpu``) and server ms per batch, as run.py;
- memory: ``used_memory`` sampled every ``--sample-ms`` during the job by a
  thread of this process (its CPU, and the server time of its ``INFO``
  calls, are taken off the CPU figures), ``used_memory_peak`` of the run's
  server, both less the server's ``used_memory`` just before the job; and
  ``used_memory`` after the job (workers gone) with each of the job's keys
  (type, length, ``MEMORY USAGE``): what retention keeps.

Then, separately (``--claim-rows``, default 1M; 0 skips), one job per mode
on a server logging commands in its slow log (``--slowlog-us``, default 0:
every command, those the scripts run included; 20 logs the scripts alone):
the server µs of each claimBatch / commitBatch / storeBatch call, and of
each command the scripts run, by tenth of the job, to show whether a claim
or commit near the end of the job costs what one near the start does. Its
slow log costs memory and time, which is why it is not one of the runs above.

Prints a table and the runs as JSON lines (``# {...}``), then one summary
JSON line; ``--json FILE`` writes everything. ``--smoke`` checks exactly-once
and that no batch payload is left after the job, and fails otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "peers"), str(HERE)]

import redis  # noqa: E402
import standard_job  # noqa: E402
from common import load, run_ours  # noqa: E402

from redisbatch._embedded import EmbeddedServer  # noqa: E402
from redisbatch._keys import JobKeys  # noqa: E402
from redisbatch._scripts import scripts  # noqa: E402

NAMESPACE = "scaling"
MB = 1024 * 1024


# ---------------------------------------------------------------- memory


class MemorySampler:
    """``INFO memory`` used_memory every ``interval`` seconds, in a thread."""

    def __init__(self, url: str, interval: float) -> None:
        self.client = redis.Redis.from_url(url)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.thread_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = 0.0

    def _run(self) -> None:
        cpu0 = time.thread_time()
        while not self._stop.is_set():
            used = int(self.client.info("memory")["used_memory"])
            self.samples.append((time.perf_counter() - self._t0, used))
            self._stop.wait(self.interval)
        self.thread_cpu = time.thread_time() - cpu0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def own_cpu_s(self) -> tuple[float, float]:
        """This thread's CPU, and the server's time answering its INFO calls
        (calls x usec_per_call of INFO: the run's other INFO calls are a handful)."""
        info = self.client.info("commandstats").get("cmdstat_info") or {}
        per_call = float(info.get("usec_per_call", 0.0))
        return self.thread_cpu, len(self.samples) * per_call / 1e6

    def peak(self) -> tuple[int, float]:
        """(highest sample, its time as a fraction of the job's wall time)."""
        if not self.samples:
            return 0, 0.0
        at, used = max(self.samples, key=lambda s: s[1])
        return used, at / max(self.samples[-1][0], 1e-9)


def job_keys(client: redis.Redis, job_id: str) -> dict[str, dict[str, Any]]:
    """Each of the job's keys that exists: type, length, MEMORY USAGE (all samples)."""
    found: dict[str, dict[str, Any]] = {}
    for key in JobKeys.of(NAMESPACE, job_id).all:
        kind = client.type(key).decode()
        if kind == "none":
            continue
        length = {
            "hash": client.hlen,
            "stream": client.xlen,
            "set": client.scard,
            "zset": client.zcard,
            "list": client.llen,
        }.get(kind)
        found[key.rsplit(":", 1)[1]] = {
            "type": kind,
            "len": length(key) if length else None,
            "bytes": client.memory_usage(key, samples=0),
        }
    return found


# ---------------------------------------------------------------- one run


def _standard_job(
    url: str,
    path: Path,
    rows: int,
    max_pending: int | None,
    args: argparse.Namespace,
    probe: Any = None,
) -> dict:
    """The standard job on the server at ``url``, as run.py runs it."""
    return run_ours(
        url,
        path,
        rows=rows,
        batch_size=args.batch_size,
        workers=args.workers,
        timeout=args.timeout,
        parser=args.parser,
        max_pending_batches=max_pending,
        namespace=NAMESPACE,
        probe=probe,
    )


def run_one(path: Path, rows: int, max_pending: int | None, args: argparse.Namespace) -> dict:
    """The job on a fresh server; run.py's figures plus memory."""
    with EmbeddedServer() as server:
        client = redis.Redis.from_url(server.url)
        info = client.info("server")
        base = int(client.info("memory")["used_memory"])
        sampler = MemorySampler(server.url, args.sample_ms / 1000)
        result = _standard_job(server.url, path, rows, max_pending, args, probe=sampler)
        time.sleep(0.2)  # the workers' connections are gone
        memory = client.info("memory")
        sampled, at = sampler.peak()
        keys = job_keys(client, result["job_id"])
        result.update(
            rows=rows,
            max_pending_batches=max_pending,
            server=f"{info.get('server_name', 'redis')} {info['redis_version']}",
            mem_base_mb=round(base / MB, 3),
            mem_peak_mb=round((int(memory["used_memory_peak"]) - base) / MB, 3),
            mem_sampled_peak_mb=round((sampled - base) / MB, 3),
            mem_sampled_peak_at=round(at, 2),
            mem_samples=len(sampler.samples),
            mem_after_mb=round((int(memory["used_memory"]) - base) / MB, 3),
            keys_after=keys,
            batches_key_bytes_per_batch=round(
                keys.get("batches", {}).get("bytes", 0) / result["batches"], 1
            ),
        )
    ok = (
        result["processed"] + result["failed"] == rows
        and result["failed"] == standard_job.expected_invalid(rows)
        and result["completions"] == 1
    )
    result["exactly_once"] = ok
    left = {k: v for k, v in keys.items() if k in ("records", "queue") and v["len"]}
    result["payloads_left"] = left
    return result


# ---------------------------------------------------------------- claim cost


def claim_cost(path: Path, rows: int, max_pending: int | None, args: argparse.Namespace) -> dict:
    """Server µs per script call by tenth of the job (slow log, threshold 0)."""
    names = {s.sha: name for name, s in scripts().items()}
    # The log holds the commands scripts run too (about 60 per batch): room for all.
    room = str(max(100_000, rows // args.batch_size * 100))
    slowlog = ("--slowlog-log-slower-than", str(args.slowlog_us), "--slowlog-max-len", room)
    with EmbeddedServer(args=slowlog) as server:
        client = redis.Redis.from_url(server.url)
        for script in scripts().values():  # no NOSCRIPT replies in the log
            client.script_load(script.source)
        result = _standard_job(server.url, path, rows, max_pending, args)
        entries = client.execute_command("SLOWLOG", "GET", "-1")
    calls: dict[str, list[tuple[int, int]]] = {}
    for entry in entries:
        ident, duration, argv = int(entry[0]), int(entry[2]), entry[3]
        if len(argv) > 1 and argv[0].upper() == b"EVALSHA":
            name = names.get(argv[1].decode(), "?")
        else:  # a command a script ran (the log has those too), or a plain one
            name = argv[0].decode().upper()
        calls.setdefault(name, []).append((ident, duration))
    out: dict[str, Any] = {
        "rows": rows,
        "max_pending_batches": max_pending,
        "batches": result["batches"],
        "records_per_s": result["records_per_s"],
        "exactly_once": result["processed"] + result["failed"] == rows
        and result["completions"] == 1,
        "slowlog_us": args.slowlog_us,
        "slowlog_entries": len(entries),
        "scripts": {},
        "commands": {},
    }
    for name, timed in sorted(calls.items()):
        series = [d for _, d in sorted(timed)]
        tenth = max(1, len(series) // 10)
        tenths = [
            statistics.median(series[i * tenth : (i + 1) * tenth] or series[-tenth:])
            for i in range(10)
        ]
        figures = {
            "calls": len(series),
            "us_median_by_tenth": [round(t, 1) for t in tenths],
            "us_first_tenth": round(tenths[0], 1),
            "us_last_tenth": round(tenths[-1], 1),
            "last_over_first": round(tenths[-1] / tenths[0], 2) if tenths[0] else None,
            "us_mean": round(statistics.fmean(series), 1),
        }
        if name in ("storeBatch", "claimBatch", "commitBatch"):
            out["scripts"][name] = figures
        elif len(series) >= 100:  # the commands inside the scripts: which one grows
            out["commands"][name] = figures
    return out


# ---------------------------------------------------------------- report


def mode(max_pending: int | None) -> str:
    return "none" if max_pending is None else f"max_pending={max_pending}"


def report(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per (N, mode); prints the table."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["rows"], mode(r["max_pending_batches"])), []).append(r)
    rows = []
    fields = (
        "records_per_s", "wall_s", "cpu_us_per_record", "server_ms_per_batch",
        "mem_peak_mb", "mem_sampled_peak_mb", "mem_after_mb",
    )  # fmt: skip
    for (n, m), results in groups.items():
        row: dict[str, Any] = {"rows": n, "mode": m, "runs": len(results)}
        for key in fields:
            row[key] = round(statistics.median(r[key] for r in results), 3)
        row["records_per_s_all"] = [r["records_per_s"] for r in results]
        row["cpu_us_per_record_all"] = [r["cpu_us_per_record"] for r in results]
        row["mem_peak_mb_all"] = [r["mem_peak_mb"] for r in results]
        row["load_after"] = [r["load_after"] for r in results]
        rows.append(row)
    print(
        f"{'N':>10} {'mode':<15}{'runs':>5}{'records/s':>11}{'CPU us/rec':>11}"
        f"{'srv ms/b':>9}{'peak MB':>9}{'sampled':>9}{'after MB':>9}  load after"
    )
    for row in rows:
        print(
            f"{row['rows']:>10,} {row['mode']:<15}{row['runs']:>5}{row['records_per_s']:>11,.0f}"
            f"{row['cpu_us_per_record']:>11.2f}{row['server_ms_per_batch']:>9.3f}"
            f"{row['mem_peak_mb']:>9.2f}{row['mem_sampled_peak_mb']:>9.2f}"
            f"{row['mem_after_mb']:>9.2f}  {', '.join(row['load_after'])}"
        )
    return rows


def report_claims(costs: list[dict[str, Any]]) -> None:
    print(
        f"{'server us per call':<38}{'calls':>7}{'first 10%':>10}{'last 10%':>10}"
        f"{'last/first':>11}  median by tenth of the job"
    )
    for c in costs:
        for name, s in c["scripts"].items():
            label = f"{c['rows']:,} {mode(c['max_pending_batches'])} {name}"
            print(
                f"{label:<38}{s['calls']:>7}{s['us_first_tenth']:>10.1f}"
                f"{s['us_last_tenth']:>10.1f}{s['last_over_first'] or 0:>11.2f}"
                f"  {s['us_median_by_tenth']}"
            )


# ---------------------------------------------------------------- main


def measure(
    args: argparse.Namespace, sizes: list[int], modes: list[int | None]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every run, then the claim-cost runs; exits on a wrong count or a payload left."""
    runs: list[dict[str, Any]] = []
    costs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        folder = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        folder.mkdir(parents=True, exist_ok=True)
        print(f"# batch {args.batch_size}, {args.workers} workers, modes "
              f"{[mode(m) for m in modes]}, load {load()}", flush=True)  # fmt: skip
        for n in sizes:
            t0 = time.perf_counter()
            path = standard_job.cached(folder, n)  # written in 10k-row chunks, once
            made = time.perf_counter() - t0
            if made > 1:
                print(f"# generated {path} in {made:.1f}s", flush=True)
            for attempt in range(args.repeat if n < 1_000_000 else args.repeat_large):
                for max_pending in modes:
                    load_before = load()
                    result = run_one(path, n, max_pending, args)
                    result.update(attempt=attempt + 1, load_before=load_before,
                                  load_after=load())  # fmt: skip
                    print(f"# {json.dumps(result)}", flush=True)
                    if not result["exactly_once"] or result["payloads_left"]:
                        raise SystemExit(f"counts, completion or payloads wrong: {result}")
                    runs.append(result)
        if args.claim_rows:
            path = standard_job.cached(folder, args.claim_rows)
            for max_pending in modes:
                cost = claim_cost(path, args.claim_rows, max_pending, args)
                cost["load_after"] = load()
                print(f"# {json.dumps(cost)}", flush=True)
                if not cost["exactly_once"]:
                    raise SystemExit(f"claim-cost run: counts or completion wrong: {cost}")
                costs.append(cost)
    return runs, costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", default="10000,100000,1000000",
        help="comma-separated N (10M: --rows 10000000, minutes per run)",
    )  # fmt: skip
    parser.add_argument("--max-pending", type=int, default=16, help="the backpressure mode")
    parser.add_argument("--repeat", type=int, default=2, help="attempts per N below 1M")
    parser.add_argument("--repeat-large", type=int, default=1, help="attempts per N from 1M")
    parser.add_argument("--only", choices=("both", "none", "pending"), default="both")
    parser.add_argument("--claim-rows", type=int, default=1_000_000, help="0: no claim cost")
    parser.add_argument(
        "--slowlog-us", type=int, default=0,
        help="claim cost: the slow log's threshold (0 logs every command, those the "
        "scripts run too, which slows the scripts; 20 logs the scripts alone)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sample-ms", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per job")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep generated CSVs here")
    parser.add_argument("--parser", choices=("python", "auto"), default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--smoke", action="store_true", help="N = 2000, a few seconds (CI)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",") if n]
    if args.smoke:
        sizes, args.repeat, args.repeat_large, args.claim_rows = [2000], 1, 1, 2000
    modes: list[int | None] = {
        "both": [None, args.max_pending],
        "none": [None],
        "pending": [args.max_pending],
    }[args.only]

    started = datetime.now(UTC)
    clock = time.perf_counter()
    runs, costs = measure(args, sizes, modes)
    table = report(runs)
    if costs:
        report_claims(costs)
    took = time.perf_counter() - clock
    print(f"# took {took:.1f}s, load {load()}")
    out = {
        "date": started.isoformat(timespec="seconds"),
        "took_s": round(took, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "commit": _commit(),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "sample_ms": args.sample_ms,
        "medians": table,
        "claim_cost": costs,
        "runs": runs,
    }
    print(json.dumps({"date": out["date"], "commit": out["commit"], "medians": table,
                      "claim_cost": costs}))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


def _commit() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    return "?"


if __name__ == "__main__":
    main()

"""Where redisbatch's whole-job CPU goes on the standard job, beyond the bare
parse+validate cost. Measures, one part at a time, on a throwaway server:

    python benchmarks/peers/profile_ours.py --rows 200000 [--batch-size 500]
        [--parser python|hiredis] [--top 15] [--only bare,prepare,worker,server,idle]

- ``bare``: csv.DictReader + hand validation, one process (the unit).
- ``prepare``: the orchestrator alone (no workers): CPU per record, then the
  same under cProfile, top functions by own time.
- ``worker``: one in-process worker over the prepared job (``run_worker``,
  ``wait=False``, no-op processor): CPU per record; then under cProfile, own
  time summed by area (validation, msgpack, pipeline, events, redis-py, the
  store's Python side, the driver) and the top functions.
- ``plain``: the same worker without cProfile (to sample with py-spy:
  ``py-spy record -f raw -o out.txt -- python profile_ours.py --only plain``);
  ``plainprepare``: the orchestrator alone, likewise (``pyspy_areas.py
  --under prepare``).
- ``server``: server CPU per batch (``INFO cpu``) and per script call: with
  ``slowlog-log-slower-than 0`` every EVALSHA's server time is logged; summed
  per script (claimBatch, commitBatch, storeBatch, ...).
- ``fastpath``: the workers' validation of the standard job's batches
  (``Validator.check_raw_rows``, no Redis) on the data as generated, with
  every empty ``tags`` filled, with every malformed email fixed, and both:
  what the fallbacks to the field-by-field path cost.
- ``idle``: one worker process polling a job that is being prepared but has
  no batch yet: its CPU and the server's per second of waiting.

``--parser`` chooses redis-py's reply parser for the worker's client
(``hiredis`` needs the hiredis package installed). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import redis  # noqa: E402
import standard_job  # noqa: E402
from common import child_env, server_cpu, tree_cpu  # noqa: E402

from redisbatch import CsvParser, DistributedImport, FileSource, IterableSource  # noqa: E402
from redisbatch._embedded import EmbeddedServer  # noqa: E402
from redisbatch._scripts import scripts  # noqa: E402

# Own time of a function is put in the first area whose marker is in its file path
# or name (checked in this order).
AREAS = (
    ("validation", ("_validate.py", "_fastpath.py", "_schema.py", "_parsers.py")),
    ("msgpack/json codec", ("_codec.py", "msgspec", "Decoder", "Encoder")),
    (
        "record pipeline",
        ("_pipeline.py", "_processing.py", "_settle.py", "_inflight.py", "_hooks.py"),
    ),
    ("events", ("_events.py",)),
    ("worker flow", ("_worker.py", "_core.py", "_results.py")),
    ("store (Python side of scripts)", ("_store.py", "_scripts.py", "_keys.py")),
    ("sync driver", ("_sync.py", "_effects.py")),
    ("redis-py", ("redis/", "hiredis", "socket", "select", "_io.", "recv", "sendall")),
    ("csv / batching (prepare)", ("_csv.py", "_batcher.py", "_prepare.py", "_sources.py")),
)


def noop(record: Any, ctx: Any) -> None:
    pass


def client_for(url: str, parser: str) -> redis.Redis:
    if parser == "python":
        from redis._parsers import _RESP2Parser, _RESP3Parser
        from redis.utils import DEFAULT_RESP_VERSION

        parser = _RESP3Parser if DEFAULT_RESP_VERSION == 3 else _RESP2Parser
        return redis.Redis.from_url(url, parser_class=parser)
    if parser == "hiredis":
        from redis._parsers import _HiredisParser
        from redis.utils import HIREDIS_AVAILABLE

        if not HIREDIS_AVAILABLE:
            raise SystemExit("--parser hiredis: pip install hiredis")
        return redis.Redis.from_url(url, parser_class=_HiredisParser)
    return redis.Redis.from_url(url)


def area_of(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for area, markers in AREAS:
        if any(m in where for m in markers):
            return area
    return "other (builtins, stdlib)"


def profile(fn: Any, top: int, records: int) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Runs ``fn`` under cProfile: own time per area and the top functions, in
    microseconds per record (cProfile inflates small calls; compare areas
    with each other, and the plain CPU figures for totals)."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    areas: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        areas[area_of(filename, name)] += tottime
        rows.append((tottime, calls, cumtime, f"{Path(filename).name}:{line}:{name}"))
    rows.sort(reverse=True)
    total = sum(areas.values())
    shares = {
        k: round(v * 1e6 / records, 3) for k, v in sorted(areas.items(), key=lambda kv: -kv[1])
    }
    shares["_total_profiled_us_per_record"] = round(total * 1e6 / records, 3)
    return shares, [
        {
            "function": where,
            "own_us_per_record": round(own * 1e6 / records, 3),
            "calls_per_record": round(calls / records, 3),
            "cum_us_per_record": round(cum * 1e6 / records, 3),
        }
        for own, calls, cum, where in rows[:top]
    ]


def cpu_of(fn: Any) -> tuple[float, Any]:
    started = time.process_time()
    result = fn()
    return time.process_time() - started, result


def per_script(client: redis.Redis, action: Any) -> dict[str, Any]:
    """Server time per script call during ``action``, from the slow log."""
    names = {s.sha: s.name for s in scripts().values()}
    config = client.config_get("slowlog-*")
    client.config_set("slowlog-max-len", 1_000_000)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    try:
        action()
        entries = client.slowlog_get(1_000_000)
    finally:
        client.config_set("slowlog-log-slower-than", config["slowlog-log-slower-than"])
        client.config_set("slowlog-max-len", config["slowlog-max-len"])
    out: dict[str, list[int]] = defaultdict(list)
    for entry in entries:
        command = entry["command"]
        parts = command.split() if isinstance(command, bytes) else str(command).split()
        verb = parts[0].decode() if isinstance(parts[0], bytes) else parts[0]
        if verb.upper() == "EVALSHA":
            sha = parts[1].decode() if isinstance(parts[1], bytes) else parts[1]
            out[names.get(sha, sha)].append(int(entry["duration"]))
        else:
            out[verb.upper()].append(int(entry["duration"]))
    return {
        name: {
            "calls": len(us),
            "usec_per_call": round(sum(us) / len(us), 1),
            "usec_total": sum(us),
        }
        for name, us in sorted(out.items(), key=lambda kv: -sum(kv[1]))
    }


def fastpath(path: Path, batch_size: int, repeat: int = 5) -> dict[str, Any]:
    """Validation CPU per record of the workers' fast path on variants of the data."""
    import csv

    from redisbatch._codec import StoredBatch, decode_batch, encode_batch
    from redisbatch._validate import Validator

    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        columns = next(reader)
        rows = list(reader)
    email, tags = columns.index("email"), columns.index("tags")

    def variant(fill_tags: bool, fix_emails: bool) -> list[list[str]]:
        out = []
        for original in rows:
            row = list(original)
            if fill_tags and not row[tags]:
                row[tags] = "red"
            if fix_emails and "@" not in row[email]:
                row[email] = row[email].replace(".", "@", 1)
            out.append(row)
        return out

    result: dict[str, Any] = {}
    for name, fill, fix in (
        ("as_generated", False, False),
        ("tags_filled", True, False),
        ("emails_fixed", False, True),
        ("both", True, True),
    ):
        data = variant(fill, fix)
        payloads = [
            encode_batch(StoredBatch(i, data[i : i + batch_size]))
            for i in range(0, len(data), batch_size)
        ]
        validator = Validator(standard_job.SCHEMA)
        best = float("inf")
        for _ in range(repeat):
            started = time.process_time()
            for payload in payloads:
                validator.check_raw_rows(columns, decode_batch(payload).raw_rows)
            best = min(best, time.process_time() - started)
        result[name] = round(best * 1e6 / len(data), 3)
    result["unit"] = f"CPU us per record, best of {repeat}"
    return result


def idle_poll(url: str, seconds: float) -> dict[str, Any]:
    """A worker process waits on a job that exists but has no batch yet."""
    client = redis.Redis.from_url(url)
    job, namespace = "idle-job", "profile-idle"
    di = DistributedImport(client, standard_job.SCHEMA, batch_size=500, namespace=namespace)
    release = threading.Event()

    def slow_rows() -> Any:
        yield {"email": "a@example.com", "name": "A", "age": "1", "country": "DE",
               "signup_date": "2024-01-01", "tags": ""}  # fmt: skip
        release.wait(seconds + 30)

    preparing = threading.Thread(
        target=lambda: di.prepare(IterableSource(slow_rows()), job_id=job), daemon=True
    )
    preparing.start()
    while di.status(job) is None:
        time.sleep(0.01)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "ours_worker.py"), job, namespace, "500"],
        env=child_env(url), cwd=str(HERE), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        worker0, server0 = tree_cpu([proc.pid]), server_cpu(client)
        calls0 = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(seconds)
        worker1, server1 = tree_cpu([proc.pid]), server_cpu(client)
        calls1 = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    finally:
        release.set()
        preparing.join(30)
        proc.stdin.close()
        proc.wait(30)
    return {
        "seconds": seconds,
        "worker_cpu_ms_per_s": round((worker1 - worker0) * 1e3 / seconds, 2),
        "server_cpu_ms_per_s": round((server1 - server0) * 1e3 / seconds, 2),
        "claims_per_s": round((calls1 - calls0) / seconds, 1),
    }


def main() -> None:  # noqa: PLR0915 - one section per measured part, in order
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--parser", choices=("auto", "python", "hiredis"), default="auto")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--only", default="bare,prepare,worker,server,fastpath,idle")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    parts = set(args.only.split(","))
    out: dict[str, Any] = {"rows": args.rows, "batch_size": args.batch_size,
                           "parser": args.parser}  # fmt: skip
    rows = args.rows
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer() as server:
        folder = args.data_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = standard_job.cached(folder, rows)
        client = client_for(server.url, args.parser)

        def facade(namespace: str) -> DistributedImport:
            return DistributedImport(
                client, standard_job.SCHEMA, batch_size=args.batch_size, namespace=namespace
            )

        if "bare" in parts:
            out["bare"] = standard_job.bare_baseline(path)
        if "prepare" in parts:
            di = facade("profile-prepare")
            server0 = server_cpu(client)
            cpu, prepared = cpu_of(lambda: di.prepare(FileSource(path), CsvParser()))
            server1 = server_cpu(client)
            di.delete(prepared.job_id)
            areas, top = profile(
                lambda: di.delete(di.prepare(FileSource(path), CsvParser()).job_id),
                args.top, rows,
            )  # fmt: skip
            out["prepare"] = {
                "cpu_us_per_record": round(cpu * 1e6 / rows, 3),
                "server_ms_per_batch": round((server1 - server0) * 1e3 / prepared.total_batches, 4),
                "areas_us_per_record": areas,
                "top": top,
            }
        if "plainprepare" in parts:  # prepare alone, without cProfile: for py-spy
            di = facade("profile-plainprepare")
            cpu, prepared = cpu_of(lambda: di.prepare(FileSource(path), CsvParser()))
            di.delete(prepared.job_id)
            out["plain_prepare_cpu_us_per_record"] = round(cpu * 1e6 / rows, 3)
        if "plain" in parts:  # one worker, nothing else: the part to run under py-spy
            di = facade("profile-plain")
            job = di.prepare(FileSource(path), CsvParser())
            cpu, _ = cpu_of(lambda: di.run_worker(job.job_id, noop, wait=False))
            out["plain_worker_cpu_us_per_record"] = round(cpu * 1e6 / rows, 3)
        if "worker" in parts or "server" in parts:
            di = facade("profile-worker")
            jobs = [di.prepare(FileSource(path), CsvParser()) for _ in range(3)]
            batches = jobs[0].total_batches
            server0 = server_cpu(client)
            cpu, summary = cpu_of(lambda: di.run_worker(jobs[0].job_id, noop, wait=False))
            server1 = server_cpu(client)
            assert summary.processed + summary.failed == rows, summary
            out["worker"] = {
                "cpu_us_per_record": round(cpu * 1e6 / rows, 3),
                "server_ms_per_batch_one_worker": round((server1 - server0) * 1e3 / batches, 4),
            }
            if "worker" in parts:
                areas, top = profile(
                    lambda: di.run_worker(jobs[1].job_id, noop, wait=False), args.top, rows
                )
                out["worker"].update(areas_us_per_record=areas, top=top)
            if "server" in parts:
                scripts_used = per_script(
                    client, lambda: di.run_worker(jobs[2].job_id, noop, wait=False)
                )
                store = per_script(
                    client,
                    lambda: di.delete(di.prepare(FileSource(path), CsvParser()).job_id),
                )
                out["server_scripts_worker"] = scripts_used
                out["server_scripts_prepare"] = store
                # Script entries only: the commands a script runs are logged too, and
                # their time is inside the script's.
                named = set(scripts())
                total_us = sum(
                    v["usec_total"]
                    for part in (scripts_used, store)
                    for k, v in part.items()
                    if k in named
                )
                out["server_script_us_per_batch"] = round(total_us / batches, 1)
        if "fastpath" in parts:
            out["fastpath"] = fastpath(path, args.batch_size)
        if "idle" in parts:
            out["idle"] = idle_poll(server.url, 3.0)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

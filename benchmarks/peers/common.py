"""What every implementation of the standard job shares: worker processes,
CPU accounting of process trees, the server's CPU, the completion list, and
the redisbatch run of the job (``run_ours``, used by run.py and
benchmarks/scaling.py).

CPU of a process tree is read from ``/proc/<pid>/stat`` (utime + stime of
every live process in the tree, plus cutime + cstime: what its reaped
children used, so RQ's work horses and Celery's recycled pool processes are
counted). A snapshot before the job and one after it give the job's CPU with
start-up excluded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import redis

TICK = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve().parent
BENCHMARKS = HERE.parent
ROOT = BENCHMARKS.parent


def child_env(url: str) -> dict[str, str]:
    """Environment for worker processes: the server URL, the benchmark modules importable."""
    env = dict(os.environ)
    paths = [str(HERE), str(BENCHMARKS), str(ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["BENCH_REDIS_URL"] = url
    return env


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, cpu ticks incl. reaped children) of one process, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is state (field 3); ppid is field 4; utime..cstime are fields 14..17
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of the process trees under ``roots`` (incl. reaped children)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)], ticks[int(entry)] = stat
    wanted = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    return sum(ticks.get(pid, 0) for pid in wanted) / TICK


def tree_pids(root: int) -> set[int]:
    """``root`` and its live descendants."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)] = stat[0]
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def server_cpu(client: redis.Redis) -> float:
    """The server's CPU seconds so far (all its threads, user + system)."""
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def wait_done(client: redis.Redis, key: str, timeout: float) -> bytes:
    """Blocks until the job's completion callback pushes its summary to ``key``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # 1 s at a time: redis-py 8 reads with a 5 s socket timeout by default.
        reply = client.blpop([key], timeout=1)
        if reply is not None:
            return bytes(reply[1])
    raise TimeoutError(f"the job did not complete within {timeout}s ({key})")


def settle(roots: list[int], timeout: float = 5.0) -> None:
    """Waits (bounded) until the workers' transient children (RQ work horses) are gone,
    so their CPU has moved into the parents' cutime/cstime."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(tree_pids(r)) <= 1 for r in roots):
            return
        time.sleep(0.02)


def load() -> str:
    """The 1-minute load average and the number of CPUs, as text."""
    return f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"


def wait_until(condition: Any, timeout: float, message: str) -> None:
    """Polls ``condition`` until it is true; TimeoutError with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.05)


def evalsha_stats(stats: dict[str, Any]) -> tuple[int, int]:
    """(calls, usec) of EVALSHA in an ``INFO commandstats`` reply."""
    entry = stats.get("cmdstat_evalsha") or {}
    return int(entry.get("calls", 0)), int(entry.get("usec", 0))


class Workers:
    """Worker processes in their own session, stopped (then killed) on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, cmd: list[str], env: dict[str, str], **kw: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            cmd, env=env, cwd=str(HERE), text=True, start_new_session=True, **kw
        )
        self.procs.append(proc)
        return proc

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            if proc.poll() is None:  # the main process first: it stops its children itself
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the session, if any
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.procs.clear()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Measure:
    """Wall clock and CPU (orchestrator, workers, server) from now to ``stop``."""

    def __init__(self, client: redis.Redis, worker_roots: list[int]) -> None:
        self.client, self.roots = client, worker_roots
        self.server0 = server_cpu(client)
        self.workers0 = tree_cpu(worker_roots)
        self.orchestrator0 = time.process_time()
        self.wall0 = time.perf_counter()

    def stop(
        self,
        rows: int,
        batches: int,
        *,
        exclude_orchestrator_s: float = 0.0,
        exclude_server_s: float = 0.0,
    ) -> dict[str, Any]:
        """The figures; ``exclude_*`` is CPU of the measurement itself (a sampler
        thread in this process, its commands on the server), taken off."""
        wall = time.perf_counter() - self.wall0
        orchestrator = time.process_time() - self.orchestrator0 - exclude_orchestrator_s
        workers = tree_cpu(self.roots) - self.workers0
        server = server_cpu(self.client) - self.server0 - exclude_server_s
        total = orchestrator + workers + server
        return {
            "wall_s": round(wall, 3),
            "records_per_s": round(rows / wall),
            "batches": batches,
            "cpu_orchestrator_s": round(orchestrator, 3),
            "cpu_workers_s": round(workers, 3),
            "cpu_server_s": round(server, 3),
            "cpu_total_s": round(total, 3),
            "cpu_us_per_record": round(total * 1e6 / rows, 3),
            "server_ms_per_batch": round(server * 1e3 / batches, 4),
        }


class Probe(Protocol):
    """Something watching a job while it runs (benchmarks/scaling.py's memory
    sampler): started just before the clock, stopped when the job is done."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    @property
    def own_cpu_s(self) -> tuple[float, float]:
        """(CPU seconds of this process, server CPU seconds) the probe used."""
        ...


def run_ours(
    url: str,
    path: Path,
    *,
    rows: int,
    batch_size: int,
    workers: int,
    timeout: float,
    parser: str | None = None,
    max_pending_batches: int | None = None,
    namespace: str = "peers",
    probe: Probe | None = None,
) -> dict[str, Any]:
    """The standard job on redisbatch: ``workers`` ours_worker.py processes are
    started and made ready (not measured), told to go, and this process runs
    ``prepare``; the clock stops when the finalizing worker's completion
    summary arrives. Returns the Measure figures, the counts the exactly-once
    check needs, EVALSHA calls and usec per batch, and the job's id."""
    import standard_job

    from redisbatch import CsvParser, DistributedImport, FileSource

    env = child_env(url)
    if parser:
        env["BENCH_PARSER"] = parser
    job = uuid.uuid4().hex
    client = redis.Redis.from_url(url)
    di = DistributedImport(
        client,
        standard_job.SCHEMA,
        batch_size=batch_size,
        namespace=namespace,
        max_pending_batches=max_pending_batches,
    )
    with Workers() as procs:
        cmd = [sys.executable, str(HERE / "ours_worker.py"), job, namespace, str(batch_size)]
        for _ in range(workers):
            procs.start(cmd, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for proc in procs.procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a redisbatch worker did not start")
        stats0 = client.info("commandstats")
        if probe is not None:
            probe.start()
        m = Measure(client, procs.pids)
        for proc in procs.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        prepared = di.prepare(FileSource(path), CsvParser(), job_id=job)
        done = wait_done(client, f"{namespace}:{job}:done", timeout)
        own_cpu, own_server = 0.0, 0.0
        if probe is not None:
            probe.stop()
            own_cpu, own_server = probe.own_cpu_s
        result = m.stop(
            rows,
            prepared.total_batches,
            exclude_orchestrator_s=own_cpu,
            exclude_server_s=own_server,
        )
        stats1 = client.info("commandstats")
        summaries = []
        for proc in procs.procs:
            assert proc.stdout is not None
            summaries.append(json.loads(proc.stdout.readline()))
    status = di.status(job)
    assert status is not None
    summary = json.loads(done)
    time.sleep(0.1)
    (calls0, usec0), (calls1, usec1) = evalsha_stats(stats0), evalsha_stats(stats1)
    result.update(
        job_id=job,
        processed=summary["processed"],
        failed=status.failed_records,
        completions=1 + client.llen(f"{namespace}:{job}:done"),
        finalized_by=sum(s["finalized"] for s in summaries),
        evalsha_per_batch=round((calls1 - calls0) / prepared.total_batches, 2),
        evalsha_us_per_batch=round((usec1 - usec0) / prepared.total_batches, 1),
    )
    if probe is not None:
        result["probe_cpu_s"] = [round(own_cpu, 3), round(own_server, 3)]
    return result

"""What every implementation of the standard job shares: the server, CPU
accounting of process trees, the server's CPU, the completion list.

CPU of a process tree is read from ``/proc/<pid>/stat`` (utime + stime of
every live process in the tree, plus cutime + cstime: what its reaped
children used, so RQ's work horses and Celery's recycled pool processes are
counted). A snapshot before the job and one after it give the job's CPU with
start-up excluded.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

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

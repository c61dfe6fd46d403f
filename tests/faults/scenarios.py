"""Fault scenarios shared by the CI suite (tests/faults) and the long run
(benchmarks/chaos.py): the same code, with smaller sizes in CI.

Each round prepares a job on a server started for the round, runs worker
processes (or serverless invocations) against it while a fault is injected,
and then measures, independently of the library:

- records lost: source records the processor never saw (a ledger of the
  indexes each processor call saw, kept in files, out of Redis' reach), or
  not counted in the job's totals;
- double counts: records counted more than once (processed + failed above the
  total, or batch counts that do not add up);
- finalizations: callers told ``job_complete``/``finalized`` (over all
  workers), ``job:completed`` events heard by the workers' handlers, and
  ``job:completed`` entries on the job's event stream: each must be 1;
- keys without a TTL once the job is final (retention is set).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import random
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterDownError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from redisbatch import AsyncDistributedImport, DistributedImport, IterableSource
from redisbatch._embedded import EmbeddedServer
from redisbatch._keys import CONSUMER_GROUP

SPAWN = multiprocessing.get_context("spawn")
RETENTION = 600.0
#: The index of the namespace's jobs is pruned by creates, not expired: the
#: one key allowed to live without a TTL.
INDEX_SUFFIX = ":jobs"


# --------------------------------------------------------------------- clients


def retrying_client(url: str, *, attempts: int = 80) -> redis.Redis:
    """A sync client that retries a command on a lost connection (redis-py 8's
    ``from_url`` does not by default), for ~30 s of outage."""
    return redis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), attempts),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_timeout=10,
        socket_connect_timeout=2,
    )


def retrying_cluster_client(url: str, *, attempts: int = 80) -> redis.RedisCluster:
    """A cluster client that retries (and finds the new master) through a failover."""
    return redis.RedisCluster.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), attempts),
        socket_timeout=5,
        socket_connect_timeout=2,
    )


def retrying_async_client(url: str, *, attempts: int = 80) -> redis.asyncio.Redis:
    from redis.asyncio.retry import Retry as AsyncRetry

    return redis.asyncio.Redis.from_url(
        url,
        retry=AsyncRetry(ExponentialBackoff(cap=0.5, base=0.02), attempts),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_timeout=10,
        socket_connect_timeout=2,
    )


# --------------------------------------------------------------------- ledger


class Ledger:
    """Lines appended by every process to its own file: ``r <index>`` per
    processor call, ``c`` per caller told it finalized the job, ``e`` per
    ``job:completed`` event heard, ``s <records>`` per worker summary (the
    records of the batches it was told were accepted). One ``os.write`` per
    line (O_APPEND)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def writer(self) -> Callable[[str], None]:
        path = Path(self.directory) / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

        def note(line: str) -> None:
            os.write(fd, line.encode() + b"\n")

        return note

    def read(self) -> tuple[set[int], int, int, int]:
        """(indexes seen, processor calls, finalizations told, events heard)."""
        seen: set[int] = set()
        calls = told = heard = 0
        self.summarized = self.restarts = 0
        for path in Path(self.directory).glob("*.log"):
            for line in path.read_text().splitlines():
                if line.startswith("r "):
                    seen.add(int(line[2:]))
                    calls += 1
                elif line == "c":
                    told += 1
                elif line == "e":
                    heard += 1
                elif line.startswith("s "):
                    self.summarized += int(line[2:])
                elif line == "x":
                    self.restarts += 1
        return seen, calls, told, heard


# --------------------------------------------------------------------- workers


@dataclass(frozen=True)
class WorkerConfig:
    url: str
    namespace: str
    job_id: str
    ledger: str
    facade: str = "sync"  # or "async"
    stale: float = 1.0
    record_sleep: float = 0.0
    clock_skew: float = 0.0  # seconds added to this process's time.time()
    worker_id: str | None = None
    cluster: bool = False
    #: Restart run_worker when it raises a connection error (a supervisor's
    #: job), noting ``x`` in the ledger; without it the error ends the worker.
    supervise: bool = False


def worker_main(cfg: WorkerConfig) -> None:
    """A worker process: run_worker until the job is final, noting to the ledger."""
    if cfg.clock_skew:
        real_time = time.time
        time.time = lambda: real_time() + cfg.clock_skew  # this process's clock only
    note = Ledger(cfg.ledger).writer()
    if cfg.facade == "async":
        asyncio.run(_async_worker(cfg, note))
        return
    client: Any = retrying_cluster_client(cfg.url) if cfg.cluster else retrying_client(cfg.url)
    di = DistributedImport(
        client, namespace=cfg.namespace, stale_batch_timeout=cfg.stale, retention=RETENTION
    )
    di.on("job:completed", lambda event: note("e"))

    def processor(record: dict[str, Any], ctx: Any) -> None:
        note(f"r {ctx.record_index}")
        if cfg.record_sleep:
            time.sleep(cfg.record_sleep)

    while True:
        try:
            summary = di.run_worker(cfg.job_id, processor, cfg.worker_id)
        except (RedisConnectionError, RedisTimeoutError, ClusterDownError, SlotNotCoveredError):
            if not cfg.supervise:
                raise
            note("x")
            time.sleep(0.5)
            continue
        break
    note(f"s {summary.processed + summary.failed}")
    if summary.finalized:
        note("c")
    client.close()


#: The async workers' concurrency: records in flight, of up to two batches.
ASYNC_LANES = 4


async def _async_worker(cfg: WorkerConfig, note: Callable[[str], None]) -> None:
    client = retrying_async_client(cfg.url)
    di = AsyncDistributedImport(  # several lanes: two batches held at times
        client,
        namespace=cfg.namespace,
        stale_batch_timeout=cfg.stale,
        retention=RETENTION,
        concurrency=ASYNC_LANES,
    )
    di.on("job:completed", lambda event: note("e"))

    async def processor(record: dict[str, Any], ctx: Any) -> None:
        note(f"r {ctx.record_index}")
        if cfg.record_sleep:  # the lanes' pace, a sync worker's: the faults land as often
            await asyncio.sleep(cfg.record_sleep * ASYNC_LANES)

    summary = await di.run_worker(cfg.job_id, processor, cfg.worker_id)
    note(f"s {summary.processed + summary.failed}")
    if summary.finalized:
        note("c")
    await client.aclose()


# --------------------------------------------------------------------- outcome


@dataclass
class Outcome:
    """What one scenario's rounds came to (one entry per job in the lists)."""

    scenario: str
    rounds: int = 0
    records: int = 0
    faults: int = 0
    lost: int = 0
    double_counts: int = 0
    told: list[int] = field(default_factory=list)  # callers told they finalized
    heard: list[int] = field(default_factory=list)  # job:completed events heard
    streamed: list[int] = field(default_factory=list)  # job:completed on the stream
    untimed_keys: int = 0
    states: list[str] = field(default_factory=list)
    seconds: float = 0.0
    threads_left: int = 0  # threads still running after serverless invocations returned
    restarts: int = 0  # run_worker calls a supervisor restarted after a connection error
    notes: list[str] = field(default_factory=list)  # problems seen, each makes it fail

    @property
    def ok(self) -> bool:
        ones = all(n == 1 for n in (*self.told, *self.heard, *self.streamed))
        done = all(s == "COMPLETED" for s in self.states)
        clean = not self.untimed_keys and not self.notes
        checked = self.rounds > 0  # no job checked proves nothing
        return checked and not self.lost and not self.double_counts and ones and done and clean

    def problems(self) -> str:
        return (
            f"{self.scenario}: lost={self.lost} double={self.double_counts} "
            f"told={self.told} heard={self.heard} streamed={self.streamed} "
            f"untimed={self.untimed_keys} states={self.states} {'; '.join(self.notes)}"
        )

    @staticmethod
    def spread(values: list[int]) -> str:
        if not values:
            return "-"
        low, high = min(values), max(values)
        return str(low) if low == high else f"{low}..{high}"


def check_job(
    outcome: Outcome,
    client: redis.Redis,
    namespace: str,
    job_id: str,
    total: int,
    ledger: Ledger,
    *,
    callers_exact: bool = False,
) -> None:
    """Adds one finished job's figures to ``outcome``. With ``callers_exact``
    (no worker was killed), the records the workers were told were accepted
    must add up to the total too."""
    di = DistributedImport(client, namespace=namespace)
    status = di.status(job_id)
    seen, _, told, heard = ledger.read()
    outcome.rounds += 1
    outcome.records += total
    if status is None:
        outcome.lost += total
        outcome.notes.append(f"job {job_id} is gone")
        outcome.states.append("GONE")
        return
    counted = status.processed_records + status.failed_records
    outcome.lost += max(total - len(seen & set(range(total))), total - counted, 0)
    outcome.double_counts += max(counted - total, 0)
    if status.completed_batches + status.failed_batches != status.total_batches:
        outcome.double_counts += abs(
            status.total_batches - status.completed_batches - status.failed_batches
        )
    if callers_exact and ledger.summarized != total:
        outcome.notes.append(f"workers were told {ledger.summarized} records were accepted")
    outcome.restarts += ledger.restarts
    outcome.told.append(told)
    outcome.heard.append(heard)
    events = client.xrange(di._core.store.keys(job_id).events)
    outcome.streamed.append(sum(1 for _, f in events if f.get(b"type") == b"job:completed"))
    outcome.states.append(status.state)
    outcome.untimed_keys += len(untimed_keys(client, namespace))


def untimed_keys(client: redis.Redis, namespace: str) -> list[str]:
    """The namespace's keys without a TTL, its job index aside."""
    found = []
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        name = key.decode()
        if not name.endswith(INDEX_SUFFIX) and client.pttl(key) == -1:
            found.append(name)
    return found


def prepare_job(
    url: str, namespace: str, total: int, batch_size: int, *, cluster: bool = False
) -> str:
    client: Any = retrying_cluster_client(url) if cluster else retrying_client(url)
    di = DistributedImport(client, namespace=namespace, batch_size=batch_size, retention=RETENTION)
    job_id = di.prepare(IterableSource({"n": i} for i in range(total))).job_id
    client.close()
    return job_id


def new_job(
    url: str, prefix: str, batches: int, batch_size: int, *, cluster: bool = False
) -> tuple[str, int, str]:
    """A job of ``batches`` full batches prepared in a fresh namespace named
    ``prefix`` + random hex: (namespace, total records, job id)."""
    namespace = f"{prefix}{uuid.uuid4().hex[:8]}"
    total = batches * batch_size
    return namespace, total, prepare_job(url, namespace, total, batch_size, cluster=cluster)


def wait_final(client: redis.Redis, namespace: str, job_id: str, timeout: float) -> str | None:
    di = DistributedImport(client, namespace=namespace)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = di.status(job_id)
        except redis.RedisError:
            status = None
        if status is not None and status.is_complete:
            return status.state
        time.sleep(0.1)
    return None


def wait_progress(di: DistributedImport, job_id: str, records: int, timeout: float) -> bool:
    """Waits until ``records`` are counted (False if the job ended first or never got there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = di.status(job_id)
        except redis.RedisError:
            status = None
        if status is not None:
            if status.is_complete:
                return False
            if status.processed_records + status.failed_records >= records:
                return True
        time.sleep(0.02)
    return False


def join_all(processes: list[Any], timeout: float, outcome: Outcome) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            outcome.notes.append(f"worker {process.pid} did not return after the job ended")
            process.kill()
            process.join(5)


def start_workers(configs: list[WorkerConfig]) -> list[Any]:
    """One spawned worker process per config, started."""
    processes = [SPAWN.Process(target=worker_main, args=(cfg,)) for cfg in configs]
    for p in processes:
        p.start()
    return processes


def await_end(
    outcome: Outcome,
    control: Any,
    namespace: str,
    job_id: str,
    processes: list[Any],
    timeout: float,
) -> None:
    """Waits for the job's final state (noted when it does not come), then for the workers."""
    if wait_final(control, namespace, job_id, timeout) is None:
        outcome.notes.append("the job did not end")
    join_all(processes, 60, outcome)


# --------------------------------------------------------------------- scenarios


def worker_kills(
    *,
    facade: str,
    rounds: int,
    batches: int,
    batch_size: int = 5,
    workers: int = 4,
    kill_every: tuple[float, float] = (0.2, 0.8),
    seed: int = 0,
    timeout: float = 240.0,
) -> Outcome:
    """SIGKILL a random worker process at random moments; a new one replaces
    it (a supervisor's restart). The kills stop near the job's end, so that the
    ledger's note of the finalization is not itself killed."""
    outcome = Outcome(f"worker SIGKILL ({facade})")
    rng = random.Random(seed)
    started = time.monotonic()
    with EmbeddedServer() as server:
        control = retrying_client(server.url)
        for _ in range(rounds):
            namespace, total, job_id = new_job(server.url, "k", batches, batch_size)
            with tempfile.TemporaryDirectory() as ledger_dir:
                ledger = Ledger(ledger_dir)
                cfg = WorkerConfig(
                    server.url, namespace, job_id, ledger_dir, facade, stale=1.0,
                    record_sleep=0.002,
                )  # fmt: skip
                spawn = partial(SPAWN.Process, target=worker_main, args=(cfg,))
                alive = [spawn() for _ in range(workers)]
                for p in alive:
                    p.start()
                done: list[Any] = []
                di = DistributedImport(control, namespace=namespace)
                deadline = time.monotonic() + timeout
                next_kill = time.monotonic() + rng.uniform(*kill_every)
                while time.monotonic() < deadline:
                    status = di.status(job_id)
                    assert status is not None
                    if status.is_complete:
                        break
                    settled = status.completed_batches + status.failed_batches
                    if time.monotonic() >= next_kill and settled < batches * 0.95:
                        victim = alive.pop(rng.randrange(len(alive)))
                        if victim.pid is not None and victim.is_alive():
                            os.kill(victim.pid, signal.SIGKILL)
                            outcome.faults += 1
                        victim.join(5)
                        done.append(victim)
                        replacement = spawn()
                        replacement.start()
                        alive.append(replacement)
                        next_kill = time.monotonic() + rng.uniform(*kill_every)
                    time.sleep(0.02)
                join_all(alive, 60, outcome)
                check_job(outcome, control, namespace, job_id, total, ledger)
        control.close()
    outcome.seconds = time.monotonic() - started
    return outcome


def redis_restarts(
    *,
    fsync: str,
    rounds: int,
    batches: int,
    batch_size: int = 5,
    workers: int = 4,
    restarts: int = 2,
    seed: int = 0,
    timeout: float = 240.0,
) -> Outcome:
    """SIGKILL the server mid-job and start it again on the same port and AOF.

    With ``appendfsync always`` every write the server acknowledged is on disk
    before the reply: nothing acknowledged is lost. With ``everysec`` up to
    about one second of acknowledged writes can be lost: claims and commits
    of that second happen again (fencing tokens and the lease set make the
    redo safe: counts never double), but a finalization acknowledged in that
    second can be reported once more when the job finalizes again."""
    outcome = Outcome(f"Redis SIGKILL+restart ({fsync})")
    rng = random.Random(seed)
    started = time.monotonic()
    args = ("--appendonly", "yes", "--appendfsync", fsync)
    for _ in range(rounds):
        server = EmbeddedServer(args=args).start()
        try:
            namespace, total, job_id = new_job(server.url, "r", batches, batch_size)
            time.sleep(1.2)  # the prepared job itself is on disk, even with everysec
            with tempfile.TemporaryDirectory() as ledger_dir:
                ledger = Ledger(ledger_dir)
                cfg = WorkerConfig(
                    server.url, namespace, job_id, ledger_dir, stale=1.0, record_sleep=0.01
                )
                processes = start_workers([cfg] * workers)
                control = retrying_client(server.url)
                di = DistributedImport(control, namespace=namespace)
                for k in range(restarts):
                    # Kills spread over the job: after 15%, then further on.
                    share = 0.15 + 0.6 * k / max(1, restarts)
                    if not wait_progress(di, job_id, int(total * share), timeout):
                        break
                    time.sleep(rng.uniform(0.0, 0.3))
                    server.kill()
                    outcome.faults += 1
                    time.sleep(rng.uniform(0.05, 0.5))
                    server.start()
                await_end(outcome, control, namespace, job_id, processes, timeout)
                check_job(
                    outcome,
                    control,
                    namespace,
                    job_id,
                    total,
                    ledger,
                    callers_exact=fsync == "always",
                )
                control.close()
        finally:
            server.stop()
    outcome.seconds = time.monotonic() - started
    return outcome


def cut_connections(
    *,
    rounds: int,
    batches: int,
    batch_size: int = 5,
    workers: int = 4,
    cut_request: float = 0.01,
    cut_reply: float = 0.01,
    seed: int = 0,
    timeout: float = 240.0,
    facade: str = "sync",
) -> Outcome:
    """Workers reach Redis through a proxy that cuts connections at random,
    before a command reaches the server or after it ran and before its reply
    comes back. Workers use retrying clients: a call is sent again, and each
    script answers a repeat as it answered the first."""
    from .proxy import CuttingProxy

    outcome = Outcome(f"connections cut (proxy, {facade})")
    started = time.monotonic()
    with EmbeddedServer() as server:
        control = retrying_client(server.url)
        for round_no in range(rounds):
            namespace, total, job_id = new_job(server.url, "c", batches, batch_size)
            proxy = CuttingProxy(
                server.port,
                cut_request=cut_request,
                cut_reply=cut_reply,
                seed=seed + round_no,
                cut_reply_containing=b"COMPLETED",
            ).start()
            try:
                url = f"redis://127.0.0.1:{proxy.port}/0"
                with tempfile.TemporaryDirectory() as ledger_dir:
                    ledger = Ledger(ledger_dir)
                    cfg = WorkerConfig(url, namespace, job_id, ledger_dir, facade, stale=2.0)
                    processes = start_workers([cfg] * workers)
                    await_end(outcome, control, namespace, job_id, processes, timeout)
                    outcome.faults += proxy.faults
                    check_job(
                        outcome, control, namespace, job_id, total, ledger, callers_exact=True
                    )
            finally:
                proxy.stop()
        control.close()
    outcome.seconds = time.monotonic() - started
    return outcome


def skewed_clocks(
    *,
    rounds: int,
    batches: int,
    batch_size: int = 5,
    skews: tuple[float, ...] = (-300.0, 300.0, -600.0, 600.0),
    seed: int = 0,
    timeout: float = 120.0,
) -> Outcome:
    """Workers whose clocks are minutes apart (``time.time`` shifted in each
    worker process), one of them killed mid-job: leases, stale reclaim and the
    job's timestamps go by the server's clock, so the dead worker's batch is
    reclaimed after the stale timeout, not minutes early or late."""
    outcome = Outcome("clocks minutes apart")
    rng = random.Random(seed)
    started = time.monotonic()
    with EmbeddedServer() as server:
        control = retrying_client(server.url)
        for _ in range(rounds):
            namespace, total, job_id = new_job(server.url, "s", batches, batch_size)
            with tempfile.TemporaryDirectory() as ledger_dir:
                ledger = Ledger(ledger_dir)
                processes = start_workers(
                    [
                        WorkerConfig(
                            server.url,
                            namespace,
                            job_id,
                            ledger_dir,
                            stale=1.0,
                            record_sleep=0.002,
                            clock_skew=skew,
                        )
                        for skew in skews
                    ]
                )
                di = DistributedImport(control, namespace=namespace)
                if not wait_progress(di, job_id, int(total * rng.uniform(0.1, 0.5)), timeout):
                    outcome.notes.append("the job ended (or stalled) before the kill")
                victim = processes[rng.randrange(len(processes))]
                if victim.pid is not None and victim.is_alive():
                    os.kill(victim.pid, signal.SIGKILL)
                    outcome.faults += 1
                outcome.faults += len(skews)  # each skewed worker counts as a fault too
                survivors = [p for p in processes if p is not victim]
                await_end(outcome, control, namespace, job_id, survivors, timeout)
                victim.join(5)
                check_job(outcome, control, namespace, job_id, total, ledger)
                status = DistributedImport(control, namespace=namespace).status(job_id)
                if status is not None:
                    now = time.time()
                    for name in ("created_at", "completed_at"):
                        stamp = getattr(status, name) or 0.0
                        if abs(stamp - now) > 120:
                            outcome.notes.append(f"{name} {stamp} is not the server's time")
        control.close()
    outcome.seconds = time.monotonic() - started
    return outcome


def serverless(
    *,
    invocations: int,
    batches: int,
    batch_size: int = 10,
    budget: tuple[float, float] = (0.02, 0.15),
    seed: int = 0,
    facade: str = "sync",
) -> Outcome:
    """Short invocations, each with its own client, facade and worker id and a
    small time budget (a serverless function), in this one process: batches
    are cut by the budgets and handed back. Afterwards nothing has piled up:
    no consumer in the group, no per-worker field on the batches hash, and no
    thread or connection left in the process."""
    outcome = Outcome(f"serverless invocations ({facade})")
    rng = random.Random(seed)
    started = time.monotonic()
    with EmbeddedServer() as server, tempfile.TemporaryDirectory() as ledger_dir:
        control = retrying_client(server.url)
        namespace, total, job_id = new_job(server.url, "f", batches, batch_size)
        ledger = Ledger(ledger_dir)
        note = ledger.writer()
        gc.collect()
        threads_before = threading.active_count()
        for n in range(invocations):
            worker_id = f"fn-{n}-{uuid.uuid4().hex[:6]}"
            seconds = rng.uniform(*budget)
            finalized = _invoke(server.url, namespace, job_id, worker_id, seconds, note, facade)
            outcome.faults += 1
            if finalized:
                note("c")
        # Invocations keep coming until the job is done (budgets cut batches).
        extra = 0
        while not DistributedImport(control, namespace=namespace).status(job_id).is_complete:  # type: ignore[union-attr]
            finalized = _invoke(server.url, namespace, job_id, f"fn-x{extra}", 0.5, note, facade)
            extra += 1
            if finalized:
                note("c")
            if extra > 1000:
                outcome.notes.append("the job did not end")
                break
        gc.collect()
        leaked = threading.active_count() - threads_before
        outcome.threads_left = max(0, leaked)
        keys = DistributedImport(control, namespace=namespace)._core.store.keys(job_id)
        consumers = (
            control.xinfo_consumers(keys.queue, CONSUMER_GROUP)
            if control.exists(keys.queue)
            else []
        )
        worker_fields = [f for f in control.hkeys(keys.batches) if f.startswith(b"w:")]
        if consumers:
            outcome.notes.append(f"{len(consumers)} consumers left in the group")
        if worker_fields:
            outcome.notes.append(f"{len(worker_fields)} per-worker fields left")
        check_job(outcome, control, namespace, job_id, total, ledger, callers_exact=True)
        control.close()
    outcome.seconds = time.monotonic() - started
    return outcome


def _invoke(
    url: str,
    namespace: str,
    job_id: str,
    worker_id: str,
    budget: float,
    note: Callable[[str], None],
    facade: str,
) -> bool:
    """One serverless invocation: its own client and facade, a time budget."""

    def processor(record: dict[str, Any], ctx: Any) -> None:
        note(f"r {ctx.record_index}")
        time.sleep(0.002)

    if facade == "async":

        async def run() -> bool:
            client = retrying_async_client(url)
            di = AsyncDistributedImport(  # several lanes: two batches held at times
                client,
                namespace=namespace,
                stale_batch_timeout=5.0,
                retention=RETENTION,
                concurrency=4,
            )
            di.on("job:completed", lambda event: note("e"))
            summary = await di.run_worker(job_id, processor, worker_id, time_budget=budget)
            await client.aclose()
            note(f"s {summary.processed + summary.failed}")
            return summary.finalized

        return asyncio.run(run())
    client = retrying_client(url)
    di = DistributedImport(
        client, namespace=namespace, stale_batch_timeout=5.0, retention=RETENTION
    )
    di.on("job:completed", lambda event: note("e"))
    summary = di.run_worker(job_id, processor, worker_id, time_budget=budget)
    client.close()
    note(f"s {summary.processed + summary.failed}")
    return summary.finalized


def cluster_failover(
    *,
    rounds: int,
    batches: int,
    batch_size: int = 5,
    workers: int = 4,
    seed: int = 0,
    timeout: float = 240.0,
    supervise: bool = False,
) -> Outcome:
    """A cluster of 3 masters with a replica each; mid-job the master owning
    the job's slot is SIGKILLed and its replica promoted (node timeout 1 s).
    Workers use retrying cluster clients. redis-py's cluster client retries
    without backoff (its retries are spent before the replica is promoted), so
    run_worker rides the failover out itself. With ``supervise`` a supervisor
    loop in the worker process restarts a run_worker that raised anyway, and
    ``restarts`` counts those restarts.

    Replication is asynchronous: writes the master acknowledged but had not
    sent to its replica are lost with it, as with ``appendfsync everysec``:
    their claims and commits happen again (fencing keeps counts exact), and
    a finalization acknowledged in that window can be reported again."""
    from redisbatch._embedded import EmbeddedCluster

    outcome = Outcome("cluster failover (master killed)")
    rng = random.Random(seed)
    started = time.monotonic()
    for _ in range(rounds):
        cluster = EmbeddedCluster(3, replicas=1, node_timeout=1000).start()
        try:
            url = cluster.url
            namespace, total, job_id = new_job(url, "x", batches, batch_size, cluster=True)
            control = retrying_cluster_client(url)
            di = DistributedImport(control, namespace=namespace)
            with tempfile.TemporaryDirectory() as ledger_dir:
                ledger = Ledger(ledger_dir)
                cfg = WorkerConfig(
                    url, namespace, job_id, ledger_dir, stale=5.0, record_sleep=0.01,
                    cluster=True,
                    supervise=supervise,
                )  # fmt: skip
                processes = start_workers([cfg] * workers)
                if wait_progress(di, job_id, int(total * rng.uniform(0.15, 0.4)), timeout):
                    master = cluster.master_of(di._core.store.keys(job_id).job)
                    master.kill()
                    outcome.faults += 1
                await_end(outcome, control, namespace, job_id, processes, timeout)
                check_job(outcome, control, namespace, job_id, total, ledger)
            control.close()
        finally:
            cluster.stop()
    outcome.seconds = time.monotonic() - started
    return outcome

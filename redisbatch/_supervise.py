"""``redisbatch worker``: workers in this process or in N child processes,
stopped gracefully by SIGINT/SIGTERM (each worker commits what it finished
and hands the rest of its batch back), at once by a second signal.

With several processes the parent routes signals: children ignore SIGINT
(a terminal's Ctrl-C reaches the whole process group, and each child must
get exactly one stop), the parent sends each child one SIGTERM on the first
signal and SIGKILL on the second. Each child, like a single in-process
worker, turns SIGTERM into a stop of ``run_worker`` (which commits what it
finished and hands the rest of its batch back), and exits 128 + signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from ._async_facade import AsyncDistributedImport
from ._facade import DistributedImport
from ._progress import Progress, following
from ._schema_file import import_attr, load_schema

__all__ = ["WorkerSpec", "run_here", "run_processes"]

_POLL = 0.5  # seconds between progress snapshots


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker process needs to build its own client and facade."""

    url: str
    namespace: str
    job_id: str
    processor: str  # MODULE:FUNC
    schema: str | None
    concurrency: int | None  # set: the asyncio facade with this concurrency
    stale_timeout: float | None

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"namespace": self.namespace}
        if self.stale_timeout is not None:
            options["stale_batch_timeout"] = self.stale_timeout
        return options

    def load(self) -> tuple[Any, Any]:
        """(processor, schema or None); raises ConfigurationError."""
        processor = import_attr(self.processor, "processor")
        if not callable(processor):
            from ._exceptions import ConfigurationError

            raise ConfigurationError(f"processor {self.processor!r} is not callable")
        return processor, None if self.schema is None else load_schema(self.schema)


@contextlib.contextmanager
def _sigterm_stops(own: bool) -> Iterator[None]:
    """While inside: SIGTERM raises SystemExit (when ``own``; else run_worker's
    ``handle_signals`` does it), and a second SIGINT/SIGTERM ends the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def at_once(signum: int, frame: Any) -> None:
        os._exit(128 + signum)

    def first(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, at_once)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, at_once)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, first if own else signal.getsignal(signal.SIGTERM))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_status(exc: BaseException) -> int:
    if isinstance(exc, SystemExit) and isinstance(exc.code, int):
        return exc.code
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return 128 + signal.SIGTERM


def _run_sync(spec: WorkerSpec, progress: Progress | None) -> int:
    processor, schema = spec.load()
    client = redis.Redis.from_url(spec.url)
    di = DistributedImport(client, schema, **spec.options())
    kwargs: dict[str, Any] = {}
    if "handle_signals" in inspect.signature(di.run_worker).parameters:
        kwargs["handle_signals"] = True
    try:
        with following(progress, lambda: di.status(spec.job_id)), _sigterm_stops(not kwargs):
            di.run_worker(spec.job_id, processor, **kwargs)
    except (KeyboardInterrupt, SystemExit) as exc:
        return _stop_status(exc)
    finally:
        client.close()
    return 0


async def _run_async(spec: WorkerSpec, progress: Progress | None) -> int:
    processor, schema = spec.load()
    client = redis.asyncio.Redis.from_url(spec.url)
    di = AsyncDistributedImport(client, schema, concurrency=spec.concurrency or 1, **spec.options())
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(di.run_worker(spec.job_id, processor))
    stopped: list[int] = []

    def stop(signum: int) -> None:
        if stopped:
            os._exit(128 + signum)
        stopped.append(signum)
        task.cancel()  # the async facade hands the batch back on cancellation

    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            loop.add_signal_handler(signum, stop, signum)
    try:
        while not task.done():
            await asyncio.wait([task], timeout=_POLL)
            if progress is not None and not task.done():
                with contextlib.suppress(Exception):
                    status = await di.status(spec.job_id)
                    if status is not None:
                        progress.update(status)
        try:
            task.result()
        except asyncio.CancelledError:
            return 128 + (stopped[0] if stopped else signal.SIGTERM)
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await client.aclose()


def run_here(spec: WorkerSpec, progress: Progress | None = None) -> int:
    """One worker in this process; 0 once the job is final, 128 + signal when stopped."""
    if spec.concurrency is None:
        return _run_sync(spec, progress)
    return asyncio.run(_run_async(spec, progress))


def _child(spec: WorkerSpec) -> None:
    """A worker process's body: one stop per SIGTERM from the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = run_here(spec)
    except Exception as exc:  # one line, as the parent's own errors
        print(f"redisbatch worker {os.getpid()}: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 2
    sys.stdout.flush()
    os._exit(code)


def run_processes(
    spec: WorkerSpec, count: int, snapshot: Callable[[], Any], progress: Progress | None
) -> tuple[int | None, list[int]]:
    """``count`` worker processes until they end; returns (the signal that
    stopped them or None, their exit codes)."""
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_child, args=(spec,), daemon=False) for _ in range(count)]
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        for child in children:
            if child.pid is not None and child.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM if len(received) == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for child in children:
            child.start()
        while any(child.exitcode is None for child in children):
            multiprocessing.connection.wait([c.sentinel for c in children], timeout=_POLL)
            if progress is not None:
                with contextlib.suppress(Exception):
                    status = snapshot()
                    if status is not None:
                        progress.update(status)
        for child in children:
            child.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    codes = [child.exitcode if child.exitcode is not None else -1 for child in children]
    return (received[0] if received else None), codes


def wait_for_job(snapshot: Callable[[], Any], seconds: float) -> Any:
    """The job's status, polling up to ``seconds`` for it to appear."""
    deadline = time.monotonic() + seconds
    while True:
        status = snapshot()
        if status is not None or time.monotonic() >= deadline:
            return status
        time.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))

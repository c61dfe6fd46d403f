"""Testing code that uses redisbatch: pytest fixtures, and a whole job run in-process.

pytest registers the fixtures by itself once redisbatch is installed (entry
point ``redisbatch`` in the ``pytest11`` group, the small module
``_redisbatch_pytestplugin``, which imports this one only when a test uses
a fixture); ``-p no:redisbatch`` turns them off, and with plugin autoloading
disabled ``pytest_plugins = ["redisbatch.testing"]`` in a ``conftest.py``
registers them. The fixtures and ``run_job`` run on fakeredis with Lua,
which the ``testing`` extra installs::

    pip install 'redisbatch[testing]'

Fixtures:

- ``redisbatch_redis``: a fakeredis client on an empty in-memory server of
  the test's own.
- ``redisbatch_import``: ``redisbatch_import(schema=None, **options)`` builds a
  ``DistributedImport`` on that server. Every facade a test builds shares the
  server, so two of them act as two workers of one job. ``retry_delay``
  defaults to 0 here, so that retries do not sleep. Its type is
  ``ImportFactory``, for annotating the fixture argument.

Functions (also usable outside pytest):

- ``run_job(processor, source, parser=None, *, schema=None, workers=1,
  crashes=(), client=None, job_id=None, **options)`` prepares the source,
  runs workers in this process until the job is final, and returns a
  ``JobRun``: the final ``JobStatus``, the failed records, every batch result
  and how many times the processor was called for each record.
  ``crashes=[Crash(batch=1, after=3)]`` makes the worker holding batch 1 die
  after three records, as a killed process would: nothing of that batch is
  committed, the batch is reclaimed, and another worker runs it again.
- ``fake_redis()``: a fakeredis client on a new server.
- ``import_factory(client)``: the ``redisbatch_import`` factory on a client
  of your own.

(PYTEST_DONT_REWRITE: pytest leaves this module as it is, so that it may be
imported before pytest registers it as a plugin.)

Example::

    from redisbatch.testing import Crash, run_job

    def test_a_crash_loses_nothing():
        rows = [{"email": f"u{i}@example.com"} for i in range(10)]
        run = run_job(save_user, rows, batch_size=5, workers=2, crashes=[Crash(batch=0, after=2)])
        assert run.status.state == "COMPLETED"
        assert run.status.processed_records == 10
        assert run.calls[0] == 2  # processed, then processed again after the crash
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis

# The fixtures are defined once, in the plugin module pytest loads by entry
# point (it imports this module only when a test uses one of them); they are
# re-exported here for ``pytest_plugins = ["redisbatch.testing"]``.
from _redisbatch_pytestplugin import redisbatch_import, redisbatch_redis

from ._events import BatchClaimed, Event
from ._facade import DistributedImport
from ._hooks import BatchProcessor, Processor, batch_processor
from ._parsers import Parser
from ._results import (
    BatchContext,
    BatchResult,
    JobStatus,
    PrepareResult,
    ProcessedRecord,
    ProcessingContext,
)
from ._schema import Schema
from ._sources import ByteSource, BytesSource, FileSource, IterableSource, Source

__all__ = [
    "Crash",
    "ImportFactory",
    "JobRun",
    "fake_redis",
    "import_factory",
    "redisbatch_import",
    "redisbatch_redis",
    "run_job",
]


class ImportFactory(Protocol):
    """The type of the ``redisbatch_import`` fixture, for annotating the
    fixture argument: called as ``make(schema=None, **options)``, it builds a
    ``DistributedImport`` on the test's Redis client, ``options`` being
    ``DistributedImport``'s keyword arguments (``retry_delay`` defaults to 0)."""

    def __call__(self, schema: Schema | None = None, **options: Any) -> DistributedImport:
        """A ``DistributedImport`` for ``schema`` with ``options``."""
        ...


_INSTALL_HINT = "redisbatch.testing needs fakeredis with Lua: pip install 'redisbatch[testing]'"


def fake_redis() -> redis.Redis:
    """A fakeredis client on a new, empty in-memory server of its own (servers
    are not shared between calls). Raises ``ImportError`` naming the
    ``testing`` extra when fakeredis or its Lua support (lupa) is missing."""
    if importlib.util.find_spec("lupa") is None:
        raise ImportError(_INSTALL_HINT)
    try:
        import fakeredis
    except ImportError:
        raise ImportError(_INSTALL_HINT) from None
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


# ---------------------------------------------------------------- fixtures


def import_factory(client: redis.Redis) -> ImportFactory:
    """What the ``redisbatch_import`` fixture gives: ``make(schema=None, **options)``
    building a ``DistributedImport`` on ``client`` (``retry_delay`` defaults to 0)."""

    def make(schema: Schema | None = None, **options: Any) -> DistributedImport:
        options.setdefault("retry_delay", 0.0)
        return DistributedImport(client, schema, **options)

    return make


# ---------------------------------------------------------------- run_job


@dataclass(frozen=True)
class Crash:
    """A worker that dies while it holds a batch, as a killed process would.

    ``batch`` is the batch's index (0-based, in source order). The worker
    dies after its processor has handled ``after`` records of that batch
    (records that fail validation never reach the processor): with 0, as
    soon as it has claimed the batch; with as many as reach the processor
    (or more, or with a ``batch_processor`` and any ``after`` above 0), just
    before it would commit. Nothing of the batch is committed and the worker
    hands nothing back: every command it sends from then on fails before it
    reaches Redis. The batch is then reclaimed
    (``reclaim_stale_batches(job_id, timeout=0)``, what the stale timeout
    does on its own in production) and another worker runs it again; that
    redelivery counts as an attempt. ``times`` deliveries of the batch die
    this way: with ``max_batch_attempts`` or more, the batch is
    dead-lettered.
    """

    batch: int = 0
    after: int = 0
    times: int = 1

    def __post_init__(self) -> None:
        for name, least in (("batch", 0), ("after", 0), ("times", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"Crash.{name} must be an integer of at least {least}")


@dataclass(frozen=True)
class JobRun:
    """What ``run_job`` saw.

    ``job_id``: the job's id. ``prepared``: what ``prepare`` returned.
    ``status``: the job's ``JobStatus`` when the run ended (final, unless no
    worker could claim anything). ``failed``: every invalid or failed
    record, in source order (``failed_records``). ``batches``: the
    ``BatchResult`` of every batch a worker claimed and lived to commit, in
    order (``accepted`` is False for a commit refused because the batch was
    reclaimed). ``calls``: how many times the processor was called for each
    record index (retries and redeliveries included; records that never
    reached it are absent). ``crashes``: how many workers died (see
    ``Crash``). ``events``: every local event of the orchestrator and the
    workers, in order. ``state``: ``status.state``.
    """

    job_id: str
    prepared: PrepareResult
    status: JobStatus
    failed: list[ProcessedRecord]
    batches: list[BatchResult]
    calls: dict[int, int]
    crashes: int
    events: list[Event]

    @property
    def state(self) -> str:
        """The job's state when the run ended (``status.state``)."""
        return self.status.state


class _WorkerDied(BaseException):
    """Stops a dying worker inside its processor call, where a kill would stop it.

    A ``BaseException``, so that neither the pipeline nor a processor's
    ``except Exception`` takes it for a record's failure.
    """


class _Worker:
    """One in-process worker: its own connection pool, so that it can die alone.

    Every command it sends passes ``on_send``: a dead worker's commands fail
    before they reach the server, on a connection taken before the death too.
    """

    def __init__(
        self, worker_id: str, client: redis.Redis, schema: Schema | None, options: dict[str, Any]
    ) -> None:
        pool = client.connection_pool
        self.worker_id = worker_id
        self.pool = type(pool)(connection_class=pool.connection_class, **pool.connection_kwargs)
        make_connection = self.pool.make_connection

        def gated_connection() -> Any:
            connection = make_connection()
            send = connection.send_packed_command

            def send_packed_command(*args: Any, **kwargs: Any) -> None:
                self.on_send()
                send(*args, **kwargs)  # type: ignore[no-untyped-call]

            connection.send_packed_command = send_packed_command  # type: ignore[method-assign]
            return connection

        self.pool.make_connection = gated_connection  # type: ignore[method-assign]
        self.client = redis.Redis(connection_pool=self.pool)
        self.facade = DistributedImport(self.client, schema, **options)
        self.dead = False
        self.doom: int | None = None  # records to handle in the current batch before dying
        self.handled: set[int] = set()
        self.doomed_thread: int | None = None  # its next command kills the worker

    def arm(self, after: int | None) -> None:
        """A new batch was claimed: die after ``after`` records of it (None: live on).

        Until then, the first command this thread sends (the commit, when
        fewer than ``after`` records reach the processor) kills the worker
        instead; heartbeats, from their own thread, go on as in a live worker.
        """
        self.doom, self.handled = after, set()
        self.doomed_thread = None
        if after == 0:
            self.kill()
        elif after is not None:
            self.doomed_thread = threading.get_ident()

    def on_send(self) -> None:
        """Called before each command the worker sends."""
        if self.doomed_thread is not None and threading.get_ident() == self.doomed_thread:
            self.kill()
        if self.dead:
            raise redis.ConnectionError("this worker died (redisbatch.testing.Crash)")

    def kill(self) -> None:
        """From now on every Redis call fails: nothing more reaches the server."""
        self.dead = True
        self.doomed_thread = None

    def before(self) -> None:
        if self.dead:
            raise _WorkerDied(self.worker_id)

    def after(self, indexes: Iterable[int]) -> None:
        if self.doom is None:
            return
        self.handled.update(indexes)
        if len(self.handled) >= self.doom:
            self.kill()

    def close(self) -> None:
        self.client.close()


class _Run:
    """The bookkeeping of one ``run_job``: workers, deaths to come, counts."""

    def __init__(
        self,
        client: redis.Redis,
        schema: Schema | None,
        options: dict[str, Any],
        crashes: Sequence[Crash],
    ) -> None:
        self.client, self.schema, self.options = client, schema, options
        self.deaths: dict[int, list[int]] = {}  # batch index -> ``after`` of each dying delivery
        for crash in crashes:
            self.deaths.setdefault(crash.batch, []).extend([crash.after] * crash.times)
        self.workers: dict[str, _Worker] = {}
        self.events: list[Event] = []
        self.calls: dict[int, int] = {}
        self.crashes = 0

    def worker(self, worker_id: str) -> _Worker:
        worker = _Worker(worker_id, self.client, self.schema, self.options)
        self.workers[worker_id] = worker
        worker.facade.on_any(self._event)
        return worker

    def _event(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, BatchClaimed) and event.worker_id in self.workers:
            dying = self.deaths.get(event.batch_index)
            self.workers[event.worker_id].arm(dying.pop(0) if dying else None)

    def _count(self, indexes: Iterable[int]) -> None:
        for index in indexes:
            self.calls[index] = self.calls.get(index, 0) + 1

    def wrap(self, processor: Processor | BatchProcessor) -> Processor | BatchProcessor:
        """The processor, counting calls and dying where a ``Crash`` says."""
        if isinstance(processor, BatchProcessor):
            inner = processor.fn

            def batch(records: list[Any], ctx: BatchContext) -> Any:
                worker = self.workers[ctx.worker_id]
                worker.before()
                self._count(ctx.record_indexes)
                return inner(records, ctx)  # a doomed worker then dies at its commit

            return batch_processor(batch)

        def record(value: Any, ctx: ProcessingContext) -> Any:
            worker = self.workers[ctx.worker_id]
            worker.before()
            self._count((ctx.record_index,))
            try:
                return processor(value, ctx)
            finally:
                worker.after((ctx.record_index,))

        return record

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()


def _as_source(source: Any) -> Source:
    if isinstance(source, ByteSource | IterableSource):
        return source
    if isinstance(source, bytes):
        return BytesSource(source)
    if isinstance(source, str):
        if "\n" not in source:
            raise ValueError(
                "run_job takes a str as the source's content, with its line ends; "
                "pass FileSource(path) or a pathlib.Path for a file"
            )
        return BytesSource(source)
    if isinstance(source, os.PathLike):
        return FileSource(source)
    if isinstance(source, Mapping) or not isinstance(source, Iterable):
        raise TypeError(
            "source must be a redisbatch source, a path, the content as str/bytes, "
            f"or an iterable of records (dicts); got {type(source).__name__}"
        )
    return IterableSource(source)


def run_job(
    processor: Processor | BatchProcessor,
    source: Any,
    parser: Parser | None = None,
    *,
    schema: Schema | None = None,
    workers: int = 1,
    crashes: Sequence[Crash] = (),
    client: redis.Redis | None = None,
    job_id: str | None = None,
    **options: Any,
) -> JobRun:
    """Runs a whole job in this process and returns what happened.

    ``source`` is a redisbatch source, a ``pathlib.Path``, the content as
    ``bytes``/``str`` (with a ``parser``), or an iterable of records (dicts).
    ``options`` are the ``DistributedImport`` keyword options (``batch_size``,
    ``max_retries``, ...; ``retry_delay`` defaults to 0 here). ``workers``
    workers take turns, one batch each, until the job is final; each has its
    own connection and a worker id ``worker-<n>`` (a worker replacing a dead
    one: ``worker-<n>-restart-<k>``). ``crashes`` kill workers mid-batch (see
    ``Crash``). ``client`` is the Redis client to run on: by default a
    fakeredis server of the run's own (a real ``redis.Redis`` works too).
    ``schema`` is the job's ``Schema`` (default None: no validation);
    ``job_id`` the id to prepare under (default a new one).

    The processor is a plain function ``(record, ctx)`` or a
    ``batch_processor``; ``async def`` processors belong to
    ``AsyncDistributedImport``, which ``run_job`` does not drive.
    """
    if inspect.iscoroutinefunction(processor) or inspect.iscoroutinefunction(
        getattr(processor, "fn", None)
    ):
        raise TypeError("run_job drives DistributedImport: the processor must not be async")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError("workers must be an integer of at least 1")
    options.setdefault("retry_delay", 0.0)
    owned = client is None
    client = fake_redis() if client is None else client
    run = _Run(client, schema, options, crashes)
    try:
        orchestrator = DistributedImport(client, schema, **options)
        orchestrator.on_any(run.events.append)
        prepared = orchestrator.prepare(_as_source(source), parser, job_id=job_id)
        job = prepared.job_id
        for crash in crashes:
            if crash.batch >= prepared.total_batches:
                raise ValueError(
                    f"{crash} can never happen: the job has {prepared.total_batches} batches"
                )
        wrapped = run.wrap(processor)
        slots = [run.worker(f"worker-{n}") for n in range(workers)]
        restarts = 0
        results: list[BatchResult] = []
        idle_rounds = 0
        while idle_rounds < 2:  # a dead-lettering claim claims nothing: look once more
            status = orchestrator.status(job)
            if status is None or status.is_complete:
                break
            idle_rounds += 1
            for n, worker in enumerate(slots):
                try:
                    result = worker.facade.process_worker_batch(job, wrapped, worker.worker_id)
                except (_WorkerDied, redis.ConnectionError):
                    if not worker.dead:
                        raise
                    run.crashes += 1
                    orchestrator.reclaim_stale_batches(job, timeout=0)
                    restarts += 1
                    slots[n] = run.worker(f"worker-{n}-restart-{restarts}")
                    idle_rounds = 0
                    continue
                if result.claimed:
                    results.append(result)
                    idle_rounds = 0
        status = orchestrator.status(job)
        if status is None:
            raise RuntimeError(f"job {job!r} was deleted while run_job ran it")
        return JobRun(
            job_id=job,
            prepared=prepared,
            status=status,
            failed=list(orchestrator.failed_records(job)),
            batches=results,
            calls=dict(sorted(run.calls.items())),
            crashes=run.crashes,
            events=run.events,
        )
    finally:
        run.close()
        if owned:
            client.close()

"""What a flow asks its driver to do.

Flows — preparing a job, processing a batch — are generators with no I/O of
their own: they ``yield`` one of these effects and receive its result (or
have its exception thrown in at the ``yield``). A driver (``_sync``, and the
async one) performs them. A flow can be unit-tested by feeding it replies by
hand: no Redis, no event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Generic, TypeVar

import redis.exceptions

from ._parsers import RowBlock
from ._scripts import Reply, ScriptCall

__all__ = [
    "Background",
    "Call",
    "CallEach",
    "Command",
    "Effect",
    "Flow",
    "FlowSteps",
    "GateMode",
    "Interrupted",
    "ItemReader",
    "Join",
    "Lease",
    "Pipeline",
    "ReadItems",
    "Reads",
    "Sleep",
    "Spawn",
    "StartHeartbeat",
    "StopGate",
    "StopHeartbeat",
    "Wait",
    "block_ms",
    "block_outcome",
    "gate_mode",
    "refuses_blocking",
    "release_held",
]

T = TypeVar("T")
log = logging.getLogger("redisbatch")

SLEEP_SLICE = 0.05  # a backoff wait with a lease looks at it this often


@dataclass(frozen=True, slots=True)
class Call:
    """Call user code (processor, hook, checker); a coroutine result is awaited."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class CallEach:
    """Call user code once per argument tuple, in order (a driver may run
    several at once), and report each call's outcome.

    The result is a list of outcomes for a prefix of ``args``: None for a call
    that returned, the exception for one that raised. The driver stops starting
    calls once the lease is lost, once ``deadline`` (``time.monotonic()``) has
    passed, or, with ``stop_on_error``, after a call raised; calls already
    started are awaited and reported. One effect per run of records spares a
    generator round per record.
    """

    fn: Callable[..., Any]
    args: Sequence[tuple[Any, ...]]
    lease: Lease | None = None
    stop_on_error: bool = False
    deadline: float | None = None

    def may_start(self) -> bool:
        """Whether the driver may start another call now."""
        if self.lease is not None and self.lease.stopped:
            return False
        return self.deadline is None or time.monotonic() < self.deadline


class ItemReader:
    """A source iterator read in slices. When the source raises after some
    items of a slice, those items are returned first and the error is raised
    by the next read: nothing read is lost."""

    __slots__ = ("_error", "_items")

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self._error: BaseException | None = None

    def read(self, limit: int) -> list[Any]:
        """Items up to about ``limit`` records (a block of rows counts its rows)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        out: list[Any] = []
        size = 0
        try:
            for item in self._items:
                out.append(item)
                size += len(item) if type(item) is RowBlock else 1
                if size >= limit:
                    break
        except Exception as exc:
            if not out:
                raise
            self._error = exc
        return out


@dataclass(frozen=True, slots=True)
class ReadItems:
    """Read up to ``limit`` items from a source (files, sockets and user
    generators may block: an async driver reads in a thread). The result is a
    list; an empty one means the source is exhausted."""

    reader: ItemReader
    limit: int

    def read(self) -> list[Any]:
        return self.reader.read(self.limit)


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this many seconds (retry backoff, polling). With a ``lease``, the
    wait ends early once the lease is stopped (lost, or its worker stopping).
    With ``wake_on`` (a job's queue stream) and no lease, it also ends as soon
    as an entry is added to that stream (a batch stored or handed back): a
    driver with a connection of its own to spare waits there with blocking
    ``XREAD``s (each within the connection's socket timeout), and otherwise
    sleeps."""

    seconds: float
    lease: Lease | None = None
    wake_on: str | None = None

    def pauses(self, clock: Callable[[], float]) -> Iterator[float]:
        """The driver's waits, one after the other: the whole wait, or, with a
        ``lease``, slices of at most ``SLEEP_SLICE`` until the time is up or the
        lease is stopped. ``clock`` is the driver's monotonic clock."""
        lease = self.lease
        if lease is None:
            yield self.seconds
            return
        end = clock() + self.seconds
        while not lease.stopped:
            left = end - clock()
            if left <= 0:
                return
            yield min(left, SLEEP_SLICE)


#: A blocking read ends this long (ms) before its connection's socket timeout,
#: or is not sent.
_TIMEOUT_ROOM_MS: Final = 250


def block_ms(seconds: float, socket_timeout: float | None) -> int:
    """How long (ms) a blocking read may stand in for ``seconds`` of a wait on
    a connection with this socket timeout (None: none): within the timeout,
    with room to spare; 0 when too short to block."""
    ms = int(seconds * 1000)
    if socket_timeout is not None:
        ms = min(ms, int(socket_timeout * 1000) - _TIMEOUT_ROOM_MS)
    return max(ms, 0)


def block_outcome(reply: Any, elapsed: float, ms: int) -> bool | None:
    """What a blocking read of ``ms`` ms that answered ``reply`` after
    ``elapsed`` seconds says: True when an entry came, False when the block
    timed out, None when the server answered at once without blocking (as
    fakeredis's raw connection does): the wait cannot block there."""
    if reply:
        return True
    return False if elapsed >= ms / 2000 else None


def refuses_blocking(exc: redis.exceptions.RedisError) -> bool:
    """Whether a blocking read's error means that waits sleep from now on: the
    server refuses XREAD (NOPERM: a worker's ACL from before blocking waits),
    said in the log. Any other error (a read the server unblocked, a connection
    lost: the next claim rides that out) ends only the wait it came in."""
    if isinstance(exc, redis.exceptions.NoPermissionError):
        log.warning("waits for new batches poll instead of blocking: %s", exc)
        return True
    return False


@dataclass(frozen=True, slots=True)
class Command:
    """One plain Redis command, for keys outside a job's hash tag (or a read).
    ``options`` go to the client's reply parser (``parse_detail=True`` for
    ``XPENDING`` with a range)."""

    args: tuple[Any, ...]
    options: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Reads:
    """Plain reads of a job's keys, sent together in one round trip on the
    run's own connection where it has one (as its script calls are); the
    result is their replies in order, raw (no reply callbacks)."""

    commands: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Several script calls in one round trip; the result is their replies in order."""

    calls: tuple[ScriptCall, ...]


@dataclass(frozen=True, slots=True)
class Background:
    """Send a pipeline without waiting for its replies; the result is a ticket
    for ``Wait``. The orchestrator reads and encodes the next batches while
    Redis stores the previous ones."""

    pipeline: Pipeline


@dataclass(frozen=True, slots=True)
class Wait:
    """The replies of a ``Background`` pipeline (its error is raised here)."""

    ticket: Any


class Interrupted(BaseException):
    """How a driver tells a flow holding a batch that its worker is being
    stopped (``KeyboardInterrupt``, ``SystemExit``, task cancellation).

    Thrown in at the ``yield`` where the interruption arrived, it tells the
    flow to settle what it finished, hand the rest of its batch back, and
    raise it again; the driver then raises the original ``cause``. A
    ``BaseException``, so that ``except Exception`` around user code does not
    take it for a failing record. ``outcomes`` carries the calls a
    ``CallEach`` finished before the interruption (the interrupted call is
    not among them): a driver sends those instead of throwing.
    """

    def __init__(
        self, cause: BaseException | None = None, outcomes: list[Exception | None] | None = None
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.outcomes = outcomes


@dataclass(slots=True)
class Lease:
    """A claimed batch held by this worker: what its heartbeat needs."""

    heartbeat: ScriptCall
    interval: float
    lost: bool = False  # set when a heartbeat found the batch taken away
    interrupted: bool = False  # set by the driver when the worker is being stopped
    release: ScriptCall | None = None  # gives the batch back if the flow dies holding it

    @property
    def stopped(self) -> bool:
        """Whether the batch's work must stop at the next record or retry."""
        return self.lost or self.interrupted

    def heard(self, reply: Any) -> bool:
        """Takes a heartbeat's reply; False (and ``lost``) when the batch was
        reclaimed or released meanwhile and heartbeats should stop."""
        code = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if code == Reply.STALE:
            self.lost = True
        return not self.lost


@dataclass(frozen=True, slots=True)
class StartHeartbeat:
    """Heartbeat the lease every ``lease.interval`` seconds until stopped."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class StopHeartbeat:
    lease: Lease


@dataclass(frozen=True, slots=True)
class Spawn:
    """Start running ``flow`` alongside the flow that yields this (an async
    worker's next batch, while its current one ends); the result is a handle
    for ``Join``. The spawned flow holds its own batches, heartbeats and
    interruption; the two share the driver's ``concurrency`` lanes."""

    flow: Flow[Any]


@dataclass(frozen=True, slots=True)
class Join:
    """The value of a spawned flow, once it ends (its exception is raised
    here): ``(True, value)``. With ``early``, ``(False, None)`` as soon as the
    flow's calls are in their last wave (fewer left to start than lanes: some
    lanes are about to fall idle): the moment to spawn the next batch, whose
    claim and checks then overlap the last records."""

    handle: Any
    early: bool = False


Effect = (
    Background
    | Wait
    | Call
    | CallEach
    | ReadItems
    | Sleep
    | Command
    | Reads
    | Pipeline
    | ScriptCall
    | StartHeartbeat
    | StopHeartbeat
    | Spawn
    | Join
)
Flow = Generator[Effect, Any, T]


class GateMode(Enum):
    """Where a pending SIGTERM (``handle_signals``) may stop a worker, by effect."""

    PASS = 0  # not here: a Redis call, mid-batch
    CHECK = 1  # before it: a new claim
    OPEN = 2  # before it and at once during it: user code, a wait


class StopGate:
    """Where a SIGTERM may stop a worker: at once while user code runs or the
    flow waits (``open``); otherwise — in a Redis call, in the flow's own
    code — before the next user call, wait or claim (``check``), so that a
    batch is never cut off between its claim and its heartbeat, nor before
    its commit. A driver says what stopping is (``stopped``, ``stop_now``)."""

    __slots__ = ("open", "pending")

    def __init__(self) -> None:
        self.open = False
        self.pending: int | None = None  # a signal that came while closed

    def stopped(self, signum: int) -> BaseException:  # pragma: no cover - drivers override
        """The exception that stops the worker."""
        raise NotImplementedError

    def stop_now(self, signum: int) -> None:
        """Stops the worker at once (the gate is open)."""
        raise self.stopped(signum)

    def on_signal(self, signum: int) -> None:
        if self.open:
            self.stop_now(signum)
        else:
            self.pending = signum

    def check(self) -> None:
        """Raises the pending stop, if any."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise self.stopped(signum)


def gate_mode(effect: Any) -> GateMode:
    """Where a SIGTERM may stop a worker around ``effect``: before user code,
    a wait or a new claim, at once inside user code and waits; never between
    a claim and its heartbeat, nor before a commit. Both drivers' gates ask this."""
    if isinstance(effect, Call | CallEach | Sleep):
        return GateMode.OPEN
    if isinstance(effect, Spawn) or (
        isinstance(effect, ScriptCall) and effect.script.name == "claimBatch"
    ):
        return GateMode.CHECK
    return GateMode.PASS


class FlowSteps(Generic[T]):
    """The driver-independent half of running a flow: stepping it, and what an
    effect's failure means. An ``Exception`` is thrown into the flow; an
    interruption (``KeyboardInterrupt``, ``SystemExit``, cancellation) while
    it holds a batch marks the held leases ``interrupted``, is thrown in as
    ``Interrupted`` (or, from a ``CallEach``, its finished outcomes are sent)
    and raised again once the flow ends; with no batch held, or a second
    time, it ends the run at once. Each driver only performs the effects::

        while True:
            done, effect = steps.next()
            if done:
                return effect
            try:
                steps.send = perform(effect)      # or: await perform(effect)
            except BaseException as exc:
                steps.failed(exc)
    """

    __slots__ = ("flow", "held", "interrupt", "send", "throw")

    def __init__(self, flow: Flow[T], held: Callable[[], Iterable[Lease]]) -> None:
        self.flow = flow
        self.held = held  # the leases the run holds now
        self.interrupt: BaseException | None = None
        self.send: Any = None
        self.throw: BaseException | None = None

    def next(self) -> tuple[bool, Any]:
        """``(True, the flow's value)`` once it returned, else ``(False, its next effect)``."""
        try:
            effect = (
                self.flow.throw(self.throw) if self.throw is not None else self.flow.send(self.send)
            )
        except StopIteration as stop:
            if self.interrupt is not None:
                raise self.interrupt from None
            return True, stop.value
        except Interrupted:
            if self.interrupt is None:  # pragma: no cover - only drivers throw it
                raise
            raise self.interrupt from None
        self.send, self.throw = None, None
        return False, effect

    def failed(self, exc: BaseException) -> None:
        """An effect raised ``exc``: what the flow is sent next, or (raised) the run's end."""
        if isinstance(exc, Exception):
            self.throw = exc
            return
        cause = exc.cause if isinstance(exc, Interrupted) else exc
        assert cause is not None
        leases = list(self.held())
        if self.interrupt is not None or not leases:
            if cause is exc:
                raise exc
            raise cause from None
        for lease in leases:
            lease.interrupted = True
        self.interrupt = cause
        if isinstance(exc, Interrupted):  # a CallEach interrupted after some calls
            self.send = exc.outcomes
        else:
            self.throw = Interrupted(exc)


def release_held(leases: Iterable[Lease]) -> Flow[None]:
    """Gives back the batches a run still held when its flow died (not those
    lost meanwhile); a failure leaves the batch to go stale. Both drivers run
    it when a run ends."""
    for lease in leases:
        if lease.release is None or lease.lost:
            continue
        try:
            yield lease.release
        except redis.exceptions.RedisError as exc:
            log.warning("could not release a batch after an error (it goes stale): %s", exc)

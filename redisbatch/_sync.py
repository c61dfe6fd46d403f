"""The sync driver: performs a flow's effects with a redis-py client.

Heartbeats run on one daemon thread per ``run`` that holds a batch, joined
when the run ends: a facade leaves no thread behind once its call returns.
A ``KeyboardInterrupt`` or ``SystemExit`` raised while the flow holds a
batch is thrown into it as ``Interrupted`` (the flow commits what it
finished and hands the rest back), then raised again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

import redis
import redis.cluster
import redis.exceptions

from ._effects import (
    Background,
    Call,
    CallEach,
    Command,
    Flow,
    FlowSteps,
    GateMode,
    Interrupted,
    Lease,
    Pipeline,
    ReadItems,
    Reads,
    Sleep,
    StartHeartbeat,
    StopGate,
    StopHeartbeat,
    Wait,
    block_ms,
    block_outcome,
    gate_mode,
    refuses_blocking,
    release_held,
)
from ._exceptions import ConfigurationError
from ._scripts import PipelineReplies, ScriptCall

__all__ = ["SignalGate", "SyncDriver", "sigterm_as_exit"]

T = TypeVar("T")
log = logging.getLogger("redisbatch")

#: A run keeps its connection across user code only when the client's pool
#: allows this many: the run's, the heartbeat thread's, and two for user code.
_FEW_CONNECTIONS = 4


def _call_each(effect: CallEach) -> list[Exception | None]:
    """CallEach, one call after the other. An interruption (``KeyboardInterrupt``,
    ``SystemExit``) in a call is raised as ``Interrupted`` carrying the outcomes
    of the calls before it."""
    fn, lease, deadline = effect.fn, effect.lease, effect.deadline
    outcomes: list[Exception | None] = []
    append = outcomes.append
    try:
        for args in effect.args:
            if (lease is not None and lease.stopped) or (
                deadline is not None and time.monotonic() >= deadline
            ):
                break
            try:
                fn(*args)
            except Exception as exc:
                append(exc)
                if effect.stop_on_error:
                    break
            else:
                append(None)
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: this call is not done
        if isinstance(exc, Exception):  # pragma: no cover - user errors are outcomes
            raise
        raise Interrupted(exc, outcomes) from None
    return outcomes


class SignalGate(StopGate):
    """The sync driver's ``StopGate``: a SIGTERM raises ``SystemExit(128 + signum)``
    in the main thread."""

    __slots__ = ()

    def stopped(self, signum: int) -> SystemExit:
        return SystemExit(128 + signum)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[SignalGate]:
    """For its duration, SIGTERM raises ``SystemExit(143)`` in the main thread
    where the yielded gate allows it (a worker then hands its batch back); the
    previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        raise ConfigurationError("handle_signals=True needs run_worker in the main thread")
    gate = SignalGate()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        gate.on_signal(signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield gate
        gate.check()  # a SIGTERM during the last Redis call
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class _Sent:
    """A pipeline written to a pooled connection, its replies read by ``result``."""

    def __init__(self, driver: SyncDriver, calls: tuple[ScriptCall, ...]) -> None:
        self.driver = driver
        self.replies = PipelineReplies(calls)
        self.pool = driver.client.connection_pool
        self.connection = self.pool.get_connection()
        self.sent = self.replies.pending_calls()
        try:
            self.connection.send_packed_command(
                self.connection.pack_commands(self.sent)  # type: ignore[no-untyped-call]
            )
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        self.connection.disconnect()  # type: ignore[no-untyped-call]
        self.pool.release(self.connection)

    def result(self) -> list[Any]:
        results: list[Any] = []
        try:
            for _ in self.sent:
                try:
                    results.append(self.connection.read_response())
                except redis.exceptions.ResponseError as exc:  # NOSCRIPT among them
                    results.append(exc)
        except BaseException:
            self._drop()
            raise
        self.pool.release(self.connection)
        for script in self.replies.take(results):
            self.driver.client.script_load(script.source)
        return self.driver.pipeline(self.replies.calls, self.replies)


def _evalsha(client: redis.Redis, call: ScriptCall) -> Any:
    """The call through the client (its pool, its retry policy), loading the
    script when the server does not have it (a restarted server has none)."""
    script = call.script
    try:
        return client.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
    except redis.exceptions.NoScriptError:
        client.script_load(script.source)
        return client.evalsha(script.sha, len(call.keys), *call.keys, *call.args)


def _read_all(connection: Any, count: int) -> list[Any]:
    """``count`` replies; an error among them is raised once all are read (the
    connection stays in step)."""
    replies: list[Any] = []
    error: redis.exceptions.ResponseError | None = None
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except redis.exceptions.ResponseError as exc:
            error = error or exc
    if error is not None:
        raise error
    return replies


def _reads(client: redis.Redis, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
    """Plain reads in one pipeline through the client (its pool, its retries)."""
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)  # type: ignore[no-untyped-call]
    return pipe.execute()


class _Line:
    """The pooled connection one ``run`` sends its script calls on, taken at
    its first call and given back when the run ends.

    A call is written and read on it directly, without the client's
    per-command layers (pool checkout, retry wrapper, instrumentation), which
    cost several times the call itself on a loopback server. Any failure other
    than a script's own error drops the connection, and a connection or timeout
    error sends the call again through the client, with its retry policy:
    every script answers a repeat as it answered the first call."""

    __slots__ = ("client", "connection")

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.connection: Any = None

    def script(self, call: ScriptCall) -> Any:
        script, keys = call.script, call.keys

        def send(connection: Any) -> Any:
            try:
                connection.send_command("EVALSHA", script.sha, len(keys), *keys, *call.args)
                return connection.read_response()
            except redis.exceptions.NoScriptError:
                # loaded on this connection: the pool may have no other to give
                connection.send_command("SCRIPT", "LOAD", script.source)
                connection.read_response()
                connection.send_command("EVALSHA", script.sha, len(keys), *keys, *call.args)
                return connection.read_response()

        return self._send(send, lambda: _evalsha(self.client, call))

    def reads(self, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
        def send(connection: Any) -> list[Any]:
            connection.send_packed_command(connection.pack_commands(commands))
            return _read_all(connection, len(commands))

        return self._send(send, lambda: _reads(self.client, commands))

    def wait_for_entry(self, stream: str, seconds: float) -> bool | None:
        """Blocks up to ``seconds`` (less where the connection's socket timeout
        is shorter) for a new entry on ``stream``: True when one came, False
        when the block timed out, None when it could not block (too short a
        wait, or a server answering at once, as fakeredis does)."""

        def send(connection: Any) -> bool | None:
            ms = block_ms(seconds, connection.socket_timeout)
            if ms < 1:
                return None
            started = time.monotonic()
            connection.send_command("XREAD", "BLOCK", ms, "STREAMS", stream, "$")
            return block_outcome(connection.read_response(), time.monotonic() - started, ms)

        return self._send(send, lambda: None)

    def _send(self, send: Callable[[Any], T], again: Callable[[], T]) -> T:
        """``send`` on the line's connection; ``again`` (through the client)
        after a connection or timeout error."""
        connection = self.connection
        if connection is None:
            connection = self.connection = self.client.connection_pool.get_connection()
        try:
            return send(connection)
        except redis.exceptions.ResponseError:
            raise  # the command's own error: the connection is in step
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            self.close(broken=True)
            return again()
        except BaseException:
            self.close(broken=True)  # a reply may still be on its way
            raise

    def close(self, *, broken: bool = False) -> None:
        """Gives the connection back to the pool (disconnected if ``broken``)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            if broken:
                connection.disconnect()
            self.client.connection_pool.release(connection)


class _Heartbeats:
    """One daemon thread heartbeating every lease a ``run`` holds, until closed.

    Adding and removing a lease is a dict operation under a condition, so a
    batch of ``run_worker`` costs no thread start or join; ``close`` ends and
    joins the thread. ``add`` wakes the thread only when the new lease is due
    before the thread's next wake-up (``_wake``): with equal intervals, a
    batch after the first costs no thread switch.
    """

    def __init__(self, driver: SyncDriver) -> None:
        self._driver = driver
        self._due: dict[int, tuple[Lease, float]] = {}
        self._changed = threading.Condition()
        self._closed = False
        # When the thread next looks at ``_due`` on its own (under the lock):
        # -inf while it is not waiting (it looks before it waits again), inf
        # while it waits with no lease, else the end of its timed wait.
        self._wake = -math.inf
        self._thread = threading.Thread(target=self._run, name="redisbatch-heartbeat", daemon=True)
        self._thread.start()

    def add(self, lease: Lease) -> None:
        with self._changed:
            due = time.monotonic() + lease.interval
            self._due[id(lease)] = (lease, due)
            if due < self._wake:
                self._changed.notify()

    def remove(self, lease: Lease) -> None:
        with self._changed:
            self._due.pop(id(lease), None)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._due.clear()
            self._changed.notify()
        if self._thread is not threading.current_thread():
            # A heartbeat in flight finishes first (bounded by the client's timeouts).
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due and not self._closed:
                    self._wake = math.inf
                    self._changed.wait()
                    self._wake = -math.inf
                if self._closed:
                    return
                now = time.monotonic()
                next_due = min(due for _, due in self._due.values())
                if next_due > now:
                    self._wake = next_due
                    self._changed.wait(next_due - now)
                    self._wake = -math.inf
                    continue
                ready = [lease for lease, due in self._due.values() if due <= now]
                for lease in ready:
                    self._due[id(lease)] = (lease, now + lease.interval)
            for lease in ready:
                self._beat(lease)

    def _beat(self, lease: Lease) -> None:
        try:
            reply = self._driver.script(lease.heartbeat)
        except redis.exceptions.RedisError as exc:
            log.warning("heartbeat failed (will retry): %s", exc)
            return
        if not lease.heard(reply):
            self.remove(lease)


class SyncDriver:
    """Runs flows against one sync client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        # thread id -> the line of the run going on in that thread (a plain
        # client only: a cluster client routes each call itself)
        self._lines: dict[int, _Line] | None = {} if isinstance(client, redis.Redis) else None
        # A pool this small cannot spare the run's connection while user code
        # (which may use the same client) runs or the run sleeps.
        size = getattr(getattr(client, "connection_pool", None), "max_connections", None)
        self._few_connections = isinstance(size, int) and size < _FEW_CONNECTIONS
        # Waits for new batches block on the queue stream until the server refuses
        # the read (an ACL without XREAD): they sleep from then on.
        self._blocking_waits = True

    def script(self, call: ScriptCall) -> Any:
        if call.before:
            return self.pipeline((call,))[0]
        if self._lines:
            line = self._lines.get(threading.get_ident())
            if line is not None:
                return line.script(call)
        return _evalsha(self.client, call)

    def reads(self, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
        if self._lines:
            line = self._lines.get(threading.get_ident())
            if line is not None:
                return line.reads(commands)
        return _reads(self.client, commands)

    def _free_line(self) -> None:
        """Gives the connection of this thread's run back to the pool before an
        effect that takes one of its own (a pipeline, a command), so that the run
        never waits for the connection it holds; and, with a pool of fewer than
        ``_FEW_CONNECTIONS``, before user code or a sleep too, so that user code
        using the same client and the heartbeat thread find one. The next script
        call takes one again (then once per batch: the commit and the next claim
        share it)."""
        if self._lines:
            line = self._lines.get(threading.get_ident())
            if line is not None and line.connection is not None:
                line.close()

    def pipeline(
        self, calls: tuple[ScriptCall, ...], replies: PipelineReplies | None = None
    ) -> list[Any]:
        """Script calls in one round trip (see ``PipelineReplies``)."""
        replies = replies or PipelineReplies(calls)
        while replies.todo:
            pipe = self.client.pipeline(transaction=False)
            for call in replies.pending_calls():
                pipe.execute_command(*call)  # type: ignore[no-untyped-call]
            for script in replies.take(pipe.execute(raise_on_error=False)):
                self.client.script_load(script.source)
        return replies.replies

    def send(self, calls: tuple[ScriptCall, ...]) -> _Sent | list[Any]:
        """Writes a pipeline and returns before its replies arrive (on one pooled
        connection); a cluster client runs it at once instead."""
        if isinstance(self.client, redis.cluster.RedisCluster):
            return self.pipeline(calls)
        return _Sent(self, calls)

    def run(self, flow: Flow[T], gate: SignalGate | None = None) -> T:
        """Runs a flow to its end. With a ``gate`` (``handle_signals``), a SIGTERM
        is taken at once inside user code and waits, else before the next one."""
        held = _Held(self)
        steps = FlowSteps(flow, lambda: held.leases)
        thread = threading.get_ident()
        line = None
        if self._lines is not None and thread not in self._lines:  # not a run inside a run
            line = self._lines[thread] = _Line(self.client)
        try:
            while True:
                done, effect = steps.next()
                if done:
                    return effect  # type: ignore[no-any-return]
                try:
                    if gate is None:
                        steps.send = self._perform(effect, held)
                    else:
                        steps.send = self._perform_gated(effect, held, gate)
                except BaseException as exc:
                    steps.failed(exc)
        finally:
            flow.close()
            try:
                held.close()
            finally:
                if line is not None:
                    del self._lines[thread]  # type: ignore[union-attr]
                    line.close()

    def _perform_gated(self, effect: Any, held: _Held, gate: SignalGate) -> Any:
        """A pending SIGTERM stops the worker before user code, a wait or a new
        claim: never between a claim and its heartbeat, nor before a commit."""
        mode = gate_mode(effect)
        if mode is not GateMode.OPEN:
            if mode is GateMode.CHECK:
                gate.check()
            return self._perform(effect, held)
        gate.open = True
        try:
            gate.check()
            return self._perform(effect, held)
        finally:
            gate.open = False

    def _wants_the_line_free(self, effect: Any) -> bool:
        """Whether the run's connection goes back to the pool before ``effect``
        (see ``_free_line``)."""
        if isinstance(effect, Pipeline | Background | Command):
            return True
        if isinstance(effect, ScriptCall):
            return bool(effect.before)
        return self._few_connections and isinstance(effect, Call | CallEach | Sleep)

    def _wait(self, effect: Sleep) -> None:
        """A ``Sleep``: blocked on its stream, where it wakes on one and the
        run's line can spare its connection, then asleep for what is left if
        no entry came and the reads could not block."""
        end = time.monotonic() + effect.seconds
        line = None
        blocking = effect.wake_on is not None and effect.lease is None and self._blocking_waits
        if blocking and self._lines and not self._few_connections:
            line = self._lines.get(threading.get_ident())
        while line is not None and effect.wake_on is not None and time.monotonic() < end:
            try:
                woke = line.wait_for_entry(effect.wake_on, end - time.monotonic())
            except redis.exceptions.RedisError as exc:
                if refuses_blocking(exc):
                    self._blocking_waits = False
                break
            if woke:
                return
            if woke is None:
                break
        effect = Sleep(max(0.0, end - time.monotonic()), effect.lease)
        for pause in effect.pauses(time.monotonic):
            time.sleep(pause)

    def _perform(self, effect: Any, held: _Held) -> Any:
        """Performs one effect; returns what the flow is sent back."""
        if self._wants_the_line_free(effect):
            self._free_line()
        if isinstance(effect, CallEach):
            return _call_each(effect)
        if isinstance(effect, Call):
            return effect.fn(*effect.args)
        if isinstance(effect, ScriptCall):
            return self.script(effect)
        if isinstance(effect, Pipeline):
            return self.pipeline(effect.calls)
        if isinstance(effect, Command):
            return self.client.execute_command(*effect.args, **(effect.options or {}))  # type: ignore[no-untyped-call]
        if isinstance(effect, Reads):
            return self.reads(effect.commands)
        if isinstance(effect, Background):
            return self.send(effect.pipeline.calls)
        if isinstance(effect, Wait):
            ticket = effect.ticket
            return ticket.result() if isinstance(ticket, _Sent) else ticket
        if isinstance(effect, ReadItems):
            return effect.read()
        if isinstance(effect, Sleep):
            self._wait(effect)
        elif isinstance(effect, StartHeartbeat):
            held.start(effect.lease)
        elif isinstance(effect, StopHeartbeat):
            held.stop(effect.lease)
        else:  # pragma: no cover - a new effect type without a driver branch
            raise TypeError(f"unknown effect {effect!r}")
        return None


class _Held:
    """The batches one ``run`` holds, and the thread heartbeating them."""

    def __init__(self, driver: SyncDriver) -> None:
        self.driver = driver
        self.leases: list[Lease] = []
        self.beats: _Heartbeats | None = None

    def start(self, lease: Lease) -> None:
        if self.beats is None:
            self.beats = _Heartbeats(self.driver)
        self.leases.append(lease)
        self.beats.add(lease)

    def stop(self, lease: Lease) -> None:
        """Stops heartbeating a lease; a lease stopped already is left as it is
        (a flow interrupted during a stop stops it again)."""
        if self.beats is not None:
            self.beats.remove(lease)
        if lease in self.leases:
            self.leases.remove(lease)

    def close(self) -> None:
        """Ends the heartbeat thread; gives back a batch still held (its flow died)."""
        if self.beats is not None:
            self.beats.close()
        if self.leases:
            self.driver.run(release_held(self.leases))

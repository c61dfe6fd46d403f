"""The async driver: performs a flow's effects with a ``redis.asyncio`` client.

The same flows as the sync driver (``_sync``); user code may be ``async
def`` or plain, ``CallEach`` runs up to ``concurrency`` calls at once, and
each held batch is heartbeated by a task, awaited when the batch ends. A
``Spawn``ed flow (a worker's next batch, started while its current batch's
last records run) runs as a task of its own; the calls of every flow share
the ``concurrency`` lanes (``_Lanes``). Plain
user code runs inline and holds the event loop, so after each such call the
driver sends a heartbeat that is due itself. A task
cancellation (or ``KeyboardInterrupt``/``SystemExit``) while the flow holds
a batch is thrown into it as ``Interrupted``, as in the sync driver. A
run's script calls go on pooled connections it keeps until it ends
(``_Line``), past the client's per-command layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from types import CoroutineType
from typing import Any, TypeVar

import redis.asyncio
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
    Join,
    Lease,
    Pipeline,
    ReadItems,
    Reads,
    Sleep,
    Spawn,
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
from ._scripts import PipelineReplies, ScriptCall

__all__ = ["AsyncDriver", "CancelGate", "sigterm_cancels"]

T = TypeVar("T")
log = logging.getLogger("redisbatch")

_END_WAIT = 5.0  # longest wait for a cancelled heartbeat task to end
# The connections a pool must allow beyond a run's concurrency for the run to
# keep its line's (at most one per flow calling at once, two with overlap):
# the client's own calls (heartbeats, pipelines, user code) keep their room.
_LINE_ROOM = 16


class CancelGate(StopGate):
    """The async driver's ``StopGate``: a SIGTERM cancels the worker's task
    (at once while open, else raised as a cancellation at the next check);
    ``fired`` keeps the signal, once it came. A spawned flow has a gate of its
    own (``branch``) that the signal reaches too, so that each batch held
    stops where its own flow may stop."""

    __slots__ = ("branches", "fired", "task")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        super().__init__()
        self.task = task
        self.fired: list[int] = []
        self.branches: list[CancelGate] = []

    def branch(self) -> CancelGate:
        """The gate of a spawned flow (its ``task`` set once it is started)."""
        gate = CancelGate(None)
        self.branches.append(gate)
        if self.fired:
            gate.pending = self.fired[0]
        return gate

    def stopped(self, signum: int) -> asyncio.CancelledError:
        return asyncio.CancelledError()

    def stop_now(self, signum: int) -> None:
        if self.task is not None:
            self.task.cancel()

    def on_signal(self, signum: int) -> None:
        self.fired.append(signum)
        for gate in self.branches:
            gate.on_signal(signum)
        super().on_signal(signum)


@contextlib.contextmanager
def sigterm_cancels(task: asyncio.Task[Any]) -> Iterator[CancelGate]:
    """For its duration, SIGTERM cancels ``task`` where the yielded gate allows
    it (its worker then hands its batch back). The previous handler is
    restored after."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    gate = CancelGate(task)
    try:
        loop.add_signal_handler(signal.SIGTERM, gate.on_signal, signal.SIGTERM)
    except (RuntimeError, ValueError) as exc:
        from ._exceptions import ConfigurationError

        raise ConfigurationError(
            f"handle_signals=True needs run_worker in the main thread's event loop: {exc}"
        ) from None
    try:
        yield gate
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class _Lanes:
    """A run's ``concurrency`` lanes: at most that many calls in flight across
    the run and the flows it spawned (each public call has its own). A lane
    is taken without a wait while one is free (always so with one
    ``CallEach`` at a time)."""

    __slots__ = ("free", "waiters")

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def take(self) -> None:
        while self.free <= 0:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if self.free > 0:  # a wake-up this waiter can no longer use
                    self._wake()
                raise
        self.free -= 1

    async def wait(self, wanted: Callable[[], bool]) -> bool:
        """Waits for a lane; takes it if it is still ``wanted()`` then."""
        await self.take()
        if wanted():
            return True
        self.give()
        return False

    def give(self) -> None:
        self.free += 1
        if self.waiters:
            self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


async def _evalsha(client: redis.asyncio.Redis, call: ScriptCall) -> Any:
    """The call through the client (its pool, its retry policy), loading the
    script when the server does not have it (a restarted server has none)."""
    script = call.script
    try:
        return await client.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
    except redis.exceptions.NoScriptError:
        await client.script_load(script.source)
        return await client.evalsha(script.sha, len(call.keys), *call.keys, *call.args)


async def _reads(client: redis.asyncio.Redis, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
    """Plain reads in one pipeline through the client (its pool, its retries)."""
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return await pipe.execute()


class _Line:
    """The pooled connections one ``run`` sends its flows' script calls on:
    the sync driver's line (``_sync._Line``), taken at the first call and
    given back when the run ends (``end``).

    A call takes a connection the run keeps idle, or one more from the pool,
    and puts it back once its reply is read: a run whose flows call one at a
    time keeps one connection, and a call made while another flow's is in
    flight (a worker's two batches at once) takes a second one, never the
    connection in use. A script's own error leaves the connection in step; a
    connection or timeout error drops it and sends the call again through the
    client (every script answers a repeat as it answered the first call); any
    other exception, a cancellation above all, drops it (a reply may be
    pending). Heartbeat tasks go through the client."""

    __slots__ = ("client", "ended", "idle")

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self.idle: list[Any] = []
        self.ended = False

    async def script(self, call: ScriptCall) -> Any:
        script, keys = call.script, call.keys

        async def send(connection: Any) -> Any:
            try:
                await connection.send_command("EVALSHA", script.sha, len(keys), *keys, *call.args)
                return await connection.read_response()
            except redis.exceptions.NoScriptError:
                await self.client.script_load(script.source)
                await connection.send_command("EVALSHA", script.sha, len(keys), *keys, *call.args)
                return await connection.read_response()

        return await self._send(send, lambda: _evalsha(self.client, call))

    async def reads(self, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
        async def send(connection: Any) -> list[Any]:
            await connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            error: redis.exceptions.ResponseError | None = None
            for _ in commands:  # all of them, so that the connection stays in step
                try:
                    replies.append(await connection.read_response())
                except redis.exceptions.ResponseError as exc:
                    error = error or exc
            if error is not None:
                raise error
            return replies

        return await self._send(send, lambda: _reads(self.client, commands))

    async def wait_for_entry(self, stream: str, seconds: float) -> bool | None:
        """Blocks up to ``seconds`` (less where the connection's socket timeout
        is shorter) for a new entry on ``stream``: True when one came, False
        when the block timed out, None when it could not block (too short a
        wait, or a server answering at once, as fakeredis does)."""
        clock = asyncio.get_running_loop().time

        async def send(connection: Any) -> bool | None:
            ms = block_ms(seconds, connection.socket_timeout)
            if ms < 1:
                return None
            started = clock()
            await connection.send_command("XREAD", "BLOCK", ms, "STREAMS", stream, "$")
            return block_outcome(await connection.read_response(), clock() - started, ms)

        async def not_sent() -> bool | None:
            return None

        return await self._send(send, not_sent)

    async def _send(
        self,
        send: Callable[[Any], Awaitable[T]],
        again: Callable[[], Awaitable[T]],
    ) -> T:
        """``send`` on a connection of the line; ``again`` (through the client)
        after a connection or timeout error, or once the run has ended."""
        if self.ended:
            return await again()
        if self.idle:
            connection = self.idle.pop()
        else:
            pool = self.client.connection_pool
            try:
                connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                return await again()
        broken = False
        try:
            return await send(connection)
        except redis.exceptions.ResponseError:
            raise  # the command's own error: the connection is in step
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            broken = True
        except BaseException:
            broken = True  # a reply may still be on its way
            raise
        finally:
            if broken or self.ended:
                await self._give_back(connection, broken)
            else:
                self.idle.append(connection)
        return await again()

    async def end(self) -> None:
        """The run ended: gives its connections back (one in use, when its call ends)."""
        self.ended = True
        idle, self.idle = self.idle, []
        for connection in idle:
            await self._give_back(connection, False)

    async def _give_back(self, connection: Any, broken: bool) -> None:
        try:
            if broken:
                with contextlib.suppress(Exception):
                    await connection.disconnect(nowait=True)
        finally:
            await self.client.connection_pool.release(connection)


class AsyncDriver:
    """Runs flows against one ``redis.asyncio`` client."""

    def __init__(self, client: redis.asyncio.Redis, concurrency: int = 1) -> None:
        self.client = client
        self.concurrency = concurrency
        # id(lease) -> [lease, loop time its next heartbeat is due, still held],
        # for every held batch
        self._due: dict[int, list[Any]] = {}
        # task -> the line of the run it belongs to (the run's own task and
        # the tasks of the flows it spawned). A plain client only (a cluster
        # client routes each call itself), and a pool with room for the line
        # (a blocking pool's limit is one to keep: never hold connections there).
        pool = getattr(client, "connection_pool", None)
        lined = (
            isinstance(client, redis.asyncio.Redis)
            and not isinstance(pool, redis.asyncio.BlockingConnectionPool)
            and getattr(pool, "max_connections", 0) >= concurrency + _LINE_ROOM
        )
        self._lines: dict[asyncio.Task[Any], _Line] | None = {} if lined else None
        # Waits for new batches block on the queue stream until the server refuses
        # the read (an ACL without XREAD): they sleep from then on.
        self._blocking_waits = True

    async def _call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """User code, plain or ``async def``. Plain code held the loop, and the
        heartbeat task with it: a heartbeat that fell due meanwhile is sent here."""
        result = fn(*args)
        if type(result) is CoroutineType or inspect.isawaitable(result):
            return await result
        if self._due:
            await self._beat_due()
        return result

    async def _beat_due(self) -> None:
        """Sends the heartbeats that fell due while plain user code held the loop."""
        now = asyncio.get_running_loop().time()
        for entry in list(self._due.values()):
            if entry[1] <= now:
                await self._beat_once(entry)

    async def script(self, call: ScriptCall) -> Any:
        if call.before:
            return (await self.pipeline((call,)))[0]
        if self._lines:
            line = self._lines.get(asyncio.current_task())  # type: ignore[arg-type]
            if line is not None:
                return await line.script(call)
        return await _evalsha(self.client, call)

    async def reads(self, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
        if self._lines:
            line = self._lines.get(asyncio.current_task())  # type: ignore[arg-type]
            if line is not None:
                return await line.reads(commands)
        return await _reads(self.client, commands)

    async def pipeline(self, calls: tuple[ScriptCall, ...]) -> list[Any]:
        replies = PipelineReplies(calls)
        while replies.todo:
            pipe = self.client.pipeline(transaction=False)
            for call in replies.pending_calls():
                pipe.execute_command(*call)
            for script in replies.take(await pipe.execute(raise_on_error=False)):
                await self.client.script_load(script.source)
        return replies.replies

    async def call_each(
        self,
        effect: CallEach,
        room: asyncio.Future[None] | None = None,
        shared: _Lanes | None = None,
    ) -> list[Exception | None]:
        """CallEach with up to ``concurrency`` calls in flight, outcomes in order.

        ``concurrency`` lanes take the next record as soon as they are free, so
        a call costs the same whatever the number in flight; the lanes
        (``shared``) are shared with the calls of a flow running alongside. ``room`` is set
        once the last wave is under way (fewer calls left to start than
        lanes): lanes are about to fall idle, time to start the next batch. An
        interruption is raised as ``Interrupted`` with the outcomes of the
        longest prefix of calls that finished."""
        args, fn = effect.args, effect.fn
        size = len(args)
        outcomes: list[Exception | None] = [None] * size  # args: indexable
        finished = [False] * size
        started = 0
        stop = False
        shared = shared or _Lanes(self.concurrency)
        last_wave = size - self.concurrency  # once more than this started
        if room is None:
            room = asyncio.get_running_loop().create_future()

        def more() -> bool:
            return not stop and started < size

        # A lane takes one of the shared lanes (a flow alongside may hold them
        # all for its last records) and keeps it while there are records to start.
        async def lane() -> None:
            nonlocal started, stop
            if shared.free > 0:
                shared.free -= 1
            elif not await shared.wait(more):
                return
            try:
                while not stop and started < size:
                    if not effect.may_start():
                        stop = True
                        return
                    index, started = started, started + 1
                    if started > last_wave and not room.done():
                        room.set_result(None)
                    try:  # the body of _call, spared a coroutine per record
                        result = fn(*args[index])
                        if type(result) is CoroutineType or inspect.isawaitable(result):
                            await result
                        elif self._due:
                            await self._beat_due()
                    except Exception as exc:
                        outcomes[index] = exc
                        if effect.stop_on_error:
                            stop = True
                    finished[index] = True
            finally:
                shared.give()

        lanes = min(self.concurrency, size)
        try:
            if lanes <= 1:
                await lane()
            else:
                await asyncio.gather(*(lane() for _ in range(lanes)))
        except BaseException as exc:
            if isinstance(exc, Exception):
                raise
            stop = True
            done = finished.index(False) if False in finished[:started] else started
            raise Interrupted(exc, outcomes[:done]) from None
        return outcomes[:started]

    def _heartbeat(self, lease: Lease) -> asyncio.Task[None]:
        """Starts heartbeating a lease: a task, and an entry plain calls look at."""
        entry = [lease, asyncio.get_running_loop().time() + lease.interval, True]
        self._due[id(lease)] = entry
        return asyncio.ensure_future(self._beat(entry))

    def forget(self, lease: Lease) -> None:
        """Stops heartbeating a lease (its task ends at its next step)."""
        entry = self._due.pop(id(lease), None)
        if entry is not None:
            entry[2] = False

    async def _beat(self, entry: list[Any]) -> None:
        lease: Lease = entry[0]
        loop = asyncio.get_running_loop()
        while entry[2] and not lease.lost:
            wait = entry[1] - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                # A cancellation that lands in the client may come out as a
                # connection error: the held flag, not only CancelledError, ends this.
                await self._beat_once(entry)

    async def _beat_once(self, entry: list[Any]) -> None:
        lease: Lease = entry[0]
        entry[1] = asyncio.get_running_loop().time() + lease.interval
        try:
            reply = await self.script(lease.heartbeat)
        except redis.exceptions.RedisError as exc:
            log.warning("heartbeat failed (will retry): %s", exc)
            return
        lease.heard(reply)

    async def run(self, flow: Flow[T], gate: CancelGate | None = None) -> T:
        """Runs a flow to its end. With a ``gate`` (``handle_signals``), a SIGTERM
        cancels at once inside user code and waits, else before the next one."""
        task = asyncio.current_task()
        line = None
        if self._lines is not None and task is not None and task not in self._lines:
            line = self._lines[task] = _Line(self.client)  # not a run inside a run
        try:
            return await self._run(flow, gate, _Held(self, gate, _Lanes(self.concurrency)))
        finally:
            if line is not None:
                del self._lines[task]  # type: ignore[arg-type, union-attr]
                await line.end()

    async def _run(self, flow: Flow[T], gate: CancelGate | None, held: _Held) -> T:
        steps = FlowSteps(flow, held.leases)
        try:
            while True:
                done, effect = steps.next()
                if done:
                    return effect  # type: ignore[no-any-return]
                try:
                    if gate is None:
                        steps.send = await self._perform(effect, held)
                    else:
                        steps.send = await self._perform_gated(effect, held, gate)
                except BaseException as exc:
                    steps.failed(exc)
        finally:
            flow.close()
            await held.close()

    async def _perform_gated(self, effect: Any, held: _Held, gate: CancelGate) -> Any:
        """A pending SIGTERM stops the worker before user code, a wait or a new
        claim: never between a claim and its heartbeat, nor before a commit."""
        mode = gate_mode(effect)
        if mode is not GateMode.OPEN:
            if mode is GateMode.CHECK:
                gate.check()
            return await self._perform(effect, held)
        gate.open = True
        try:
            gate.check()
            return await self._perform(effect, held)
        finally:
            gate.open = False

    async def _wait(self, effect: Sleep) -> None:
        """A ``Sleep``: blocked on its stream, where it wakes on one and the run
        has a line, then asleep for what is left if no entry came and the reads
        could not block."""
        clock = asyncio.get_running_loop().time
        end = clock() + effect.seconds
        line = None
        if effect.wake_on is not None and effect.lease is None and self._blocking_waits:
            line = self._lines.get(asyncio.current_task()) if self._lines else None  # type: ignore[arg-type]
        while line is not None and effect.wake_on is not None and clock() < end:
            try:
                woke = await line.wait_for_entry(effect.wake_on, end - clock())
            except redis.exceptions.RedisError as exc:
                if refuses_blocking(exc):
                    self._blocking_waits = False
                break
            if woke:
                return
            if woke is None:
                break
        effect = Sleep(max(0.0, end - clock()), effect.lease)
        for pause in effect.pauses(clock):
            await asyncio.sleep(pause)

    async def _perform(self, effect: Any, held: _Held) -> Any:
        """Performs one effect; returns what the flow is sent back."""
        if isinstance(effect, CallEach):
            return await self.call_each(effect, held.room, held.lanes)
        if isinstance(effect, Call):
            return await self._call(effect.fn, effect.args)
        if isinstance(effect, ScriptCall):
            return await self.script(effect)
        if isinstance(effect, Pipeline):
            return await self.pipeline(effect.calls)
        if isinstance(effect, Command):
            return await self.client.execute_command(*effect.args, **(effect.options or {}))  # type: ignore[no-untyped-call]
        if isinstance(effect, Reads):
            return await self.reads(effect.commands)
        if isinstance(effect, Background):
            return asyncio.ensure_future(self.pipeline(effect.pipeline.calls))
        if isinstance(effect, Wait):
            return await effect.ticket
        if isinstance(effect, ReadItems):
            return await asyncio.to_thread(effect.read)
        if isinstance(effect, Sleep):
            await self._wait(effect)
        elif isinstance(effect, StartHeartbeat):
            held.start(effect.lease, self._heartbeat(effect.lease))
        elif isinstance(effect, StopHeartbeat):
            await held.stop(effect.lease)
        elif isinstance(effect, Spawn):
            return held.spawn(effect.flow)
        elif isinstance(effect, Join):
            return await held.join(effect.handle, effect.early)
        else:  # pragma: no cover - a new effect type without a driver branch
            raise TypeError(f"unknown effect {effect!r}")
        return None


class _Held:
    """The batches one ``run`` holds, the tasks heartbeating them, and the
    flows it spawned (each a ``_Held`` of its own, run by a task, sharing its
    ``lanes`` and its line). ``room`` is set once this run's calls are in
    their last wave (``call_each``)."""

    def __init__(self, driver: AsyncDriver, gate: CancelGate | None, lanes: _Lanes) -> None:
        self.driver = driver
        self.gate = gate
        self.lanes = lanes
        self.beats: dict[int, tuple[Lease, asyncio.Task[None]]] = {}
        self.room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.spawned: dict[asyncio.Task[Any], _Held] = {}
        self.task: asyncio.Task[Any] | None = None

    def spawn(self, flow: Flow[Any]) -> _Held:
        """Starts running ``flow`` in a task of its own; its ``_Held`` is the handle."""
        gate = None if self.gate is None else self.gate.branch()
        child = _Held(self.driver, gate, self.lanes)
        child.task = task = asyncio.ensure_future(self.driver._run(flow, gate, child))
        lines = self.driver._lines
        line = lines.get(asyncio.current_task()) if lines else None  # type: ignore[arg-type]
        if line is not None:  # the spawned flow's calls go on the run's line too
            lines[task] = line  # type: ignore[index]
            task.add_done_callback(lambda done: lines.pop(done, None))  # type: ignore[union-attr]
        if gate is not None:
            gate.task = child.task
        self.spawned[child.task] = child
        return child

    async def join(self, child: _Held, early: bool) -> tuple[bool, Any]:
        """``(True, value)`` once the spawned flow ended (its exception raised);
        with ``early``, ``(False, None)`` once its calls are in their last wave."""
        task = child.task
        assert task is not None
        if early and not task.done():
            await asyncio.wait((task, child.room), return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                return False, None
        try:
            return True, await task
        finally:
            if task.done():
                self.spawned.pop(task, None)

    def start(self, lease: Lease, beat: asyncio.Task[None]) -> None:
        self.beats[id(lease)] = (lease, beat)

    async def stop(self, lease: Lease) -> None:
        """Cancels the lease's heartbeat task and waits for it to end. The lease
        counts as held until then: an interruption during the wait reaches the
        flow (``FlowSteps``), which may still have a batch to settle or report."""
        held = self.beats.get(id(lease))
        self.driver.forget(lease)
        if held is not None:
            await _ended(held[1])
            self.beats.pop(id(lease), None)

    def leases(self) -> list[Lease]:
        """The leases held now."""
        return [lease for lease, _ in self.beats.values()]

    async def close(self) -> None:
        """Stops the flows it spawned (each commits what it finished and hands
        the rest back) and waits for them; ends the heartbeat tasks; gives
        back a batch still held (its flow died)."""
        for task, child in self.spawned.items():
            if task.done():
                continue
            if child.gate is not None and self.gate is not None and self.gate.fired:
                child.gate.on_signal(self.gate.fired[0])  # stops where its flow may stop
            else:
                task.cancel()
        if self.spawned:
            await asyncio.wait(self.spawned)
            for task in self.spawned:
                if not task.cancelled() and task.exception() is not None:
                    log.debug("a batch run alongside ended with %r", task.exception())
            self.spawned.clear()
        for lease, beat in self.beats.values():
            self.driver.forget(lease)
            await _ended(beat)
        if self.beats:
            await self.driver.run(release_held(self.leases()))


async def _ended(task: asyncio.Task[None]) -> None:
    """Cancels a heartbeat task and waits (a bounded time) for it to end."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=_END_WAIT)
    if not done:
        log.debug("a heartbeat task is still ending after %s s", _END_WAIT)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("heartbeat task failed: %r", task.exception())

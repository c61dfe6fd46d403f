"""The sync driver: performs a flow's effects with a redis-py client.

Heartbeats run on one daemon thread per driver.
"""

from __future__ import annotations

import logging
import threading
import time
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
    Lease,
    Pipeline,
    ReadItems,
    Sleep,
    StartHeartbeat,
    StopHeartbeat,
    Wait,
)
from ._scripts import PipelineReplies, ScriptCall

__all__ = ["SyncDriver"]

T = TypeVar("T")
log = logging.getLogger("redisbatch")


def _call_each(effect: CallEach) -> list[Exception | None]:
    """CallEach, one call after the other."""
    fn, lease, deadline = effect.fn, effect.lease, effect.deadline
    outcomes: list[Exception | None] = []
    append = outcomes.append
    for args in effect.args:
        if (lease is not None and lease.lost) or (
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
    return outcomes


class _Sent:
    """A pipeline written to a pooled connection, its replies read by ``result``."""

    def __init__(self, driver: SyncDriver, calls: tuple[ScriptCall, ...]) -> None:
        self.driver = driver
        self.replies = PipelineReplies(calls)
        self.pool = driver.client.connection_pool
        self.connection = self.pool.get_connection()
        try:
            self.connection.send_packed_command(
                self.connection.pack_commands(self.replies.pending_calls())  # type: ignore[no-untyped-call]
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
            for _ in self.replies.todo:
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


class _Heartbeats:
    """One daemon thread per driver heartbeating every lease it holds.

    Adding and removing a lease is a dict operation under a condition, so a
    batch costs no thread start or join.
    """

    def __init__(self, driver: SyncDriver) -> None:
        self._driver = driver
        self._due: dict[int, tuple[Lease, float]] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, lease: Lease) -> None:
        with self._changed:
            self._due[id(lease)] = (lease, time.monotonic() + lease.interval)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="redisbatch-heartbeat", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def remove(self, lease: Lease) -> None:
        with self._changed:
            self._due.pop(id(lease), None)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due:
                    self._changed.wait()
                now = time.monotonic()
                next_due = min(due for _, due in self._due.values())
                if next_due > now:
                    self._changed.wait(next_due - now)
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
        self.heartbeats = _Heartbeats(self)

    def script(self, call: ScriptCall) -> Any:
        script = call.script
        try:
            return self.client.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
        except redis.exceptions.NoScriptError:
            self.client.script_load(script.source)
            return self.client.evalsha(script.sha, len(call.keys), *call.keys, *call.args)

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

    def run(self, flow: Flow[T]) -> T:
        leases: list[Lease] = []
        send: Any = None
        throw: BaseException | None = None
        try:
            while True:
                try:
                    effect = flow.throw(throw) if throw is not None else flow.send(send)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                send, throw = None, None
                try:
                    if isinstance(effect, CallEach):
                        send = _call_each(effect)
                    elif isinstance(effect, Call):
                        send = effect.fn(*effect.args)
                    elif isinstance(effect, ScriptCall):
                        send = self.script(effect)
                    elif isinstance(effect, Pipeline):
                        send = self.pipeline(effect.calls)
                    elif isinstance(effect, Command):
                        send = self.client.execute_command(*effect.args)  # type: ignore[no-untyped-call]
                    elif isinstance(effect, Background):
                        send = self.send(effect.pipeline.calls)
                    elif isinstance(effect, Wait):
                        ticket = effect.ticket
                        send = ticket.result() if isinstance(ticket, _Sent) else ticket
                    elif isinstance(effect, ReadItems):
                        send = effect.read()
                    elif isinstance(effect, Sleep):
                        time.sleep(effect.seconds)
                    elif isinstance(effect, StartHeartbeat):
                        leases.append(effect.lease)
                        self.heartbeats.add(effect.lease)
                    elif isinstance(effect, StopHeartbeat):
                        self.heartbeats.remove(effect.lease)
                        leases.remove(effect.lease)
                    else:  # pragma: no cover - a new effect type without a driver branch
                        raise TypeError(f"unknown effect {effect!r}")
                except Exception as exc:
                    throw = exc
        finally:
            for lease in leases:
                self.heartbeats.remove(lease)
            flow.close()

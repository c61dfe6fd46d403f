"""The async driver: performs a flow's effects with a ``redis.asyncio`` client.

The same flows as the sync driver (``_sync``); user code may be ``async
def`` or plain, ``CallEach`` runs up to ``concurrency`` calls at once, and
each held batch is heartbeated by a task.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import redis.asyncio
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

__all__ = ["AsyncDriver"]

T = TypeVar("T")
log = logging.getLogger("redisbatch")


async def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class AsyncDriver:
    """Runs flows against one ``redis.asyncio`` client."""

    def __init__(self, client: redis.asyncio.Redis, concurrency: int = 1) -> None:
        self.client = client
        self.concurrency = concurrency

    async def script(self, call: ScriptCall) -> Any:
        script = call.script
        try:
            return await self.client.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
        except redis.exceptions.NoScriptError:
            await self.client.script_load(script.source)
            return await self.client.evalsha(script.sha, len(call.keys), *call.keys, *call.args)

    async def pipeline(self, calls: tuple[ScriptCall, ...]) -> list[Any]:
        replies = PipelineReplies(calls)
        while replies.todo:
            pipe = self.client.pipeline(transaction=False)
            for call in replies.pending_calls():
                pipe.execute_command(*call)
            for script in replies.take(await pipe.execute(raise_on_error=False)):
                await self.client.script_load(script.source)
        return replies.replies

    async def call_each(self, effect: CallEach) -> list[Exception | None]:
        """CallEach with up to ``concurrency`` calls in flight, outcomes in order.

        ``concurrency`` lanes take the next record as soon as they are free, so
        a call costs the same whatever the number in flight."""
        args, fn = effect.args, effect.fn
        outcomes: list[Exception | None] = [None] * len(args)  # args: indexable
        started = 0
        stop = False

        async def lane() -> None:
            nonlocal started, stop
            while not stop and started < len(args):
                if not effect.may_start():
                    stop = True
                    return
                index = started
                started += 1
                try:
                    await _call(fn, args[index])
                except Exception as exc:
                    outcomes[index] = exc
                    if effect.stop_on_error:
                        stop = True

        lanes = min(self.concurrency, len(args))
        if lanes <= 1:
            await lane()
        else:
            await asyncio.gather(*(lane() for _ in range(lanes)))
        return outcomes[:started]

    async def _beat(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(lease.interval)
            try:
                reply = await self.script(lease.heartbeat)
            except redis.exceptions.RedisError as exc:
                log.warning("heartbeat failed (will retry): %s", exc)
                continue
            if not lease.heard(reply):
                return

    async def run(self, flow: Flow[T]) -> T:
        beats: dict[int, asyncio.Task[None]] = {}
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
                        send = await self.call_each(effect)
                    elif isinstance(effect, Call):
                        send = await _call(effect.fn, effect.args)
                    elif isinstance(effect, ScriptCall):
                        send = await self.script(effect)
                    elif isinstance(effect, Pipeline):
                        send = await self.pipeline(effect.calls)
                    elif isinstance(effect, Command):
                        send = await self.client.execute_command(*effect.args)  # type: ignore[no-untyped-call]
                    elif isinstance(effect, Background):
                        send = asyncio.ensure_future(self.pipeline(effect.pipeline.calls))
                    elif isinstance(effect, Wait):
                        send = await effect.ticket
                    elif isinstance(effect, ReadItems):
                        send = await asyncio.to_thread(effect.read)
                    elif isinstance(effect, Sleep):
                        await asyncio.sleep(effect.seconds)
                    elif isinstance(effect, StartHeartbeat):
                        beats[id(effect.lease)] = asyncio.ensure_future(self._beat(effect.lease))
                    elif isinstance(effect, StopHeartbeat):
                        beat = beats.pop(id(effect.lease), None)
                        if beat is not None:
                            beat.cancel()
                    else:  # pragma: no cover - a new effect type without a driver branch
                        raise TypeError(f"unknown effect {effect!r}")
                except Exception as exc:
                    throw = exc
        finally:
            for beat in beats.values():
                beat.cancel()
            flow.close()

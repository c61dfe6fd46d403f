"""Runs AsyncDistributedImport behind the sync API, so that one test suite
drives both facades: each coroutine runs on an event loop in a background
thread and the calling thread waits for its result."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

from redisbatch import AsyncDistributedImport, BatchProcessor


class EventLoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class _Driver:
    def __init__(self, runner: EventLoopThread, driver: Any) -> None:
        self._runner, self._driver = runner, driver

    def run(self, flow: Any) -> Any:
        return self._runner.run(self._driver.run(flow))


class SyncFacade:
    """The sync API over an AsyncDistributedImport."""

    def __init__(self, runner: EventLoopThread, make: Callable[[], AsyncDistributedImport]) -> None:
        self._runner = runner
        self._async = runner.run(_build(make))
        self._core = self._async._core
        self._driver = _Driver(runner, self._async._driver)

    def failed_records(self, job_id: str) -> Iterator[Any]:
        async def collect() -> list[Any]:
            return [r async for r in self._async.failed_records(job_id)]

        return iter(self._runner.run(collect()))

    def process_worker_batch(self, job_id: str, processor: Any, *args: Any, **kw: Any) -> Any:
        return self._runner.run(
            self._async.process_worker_batch(job_id, _in_thread(processor), *args, **kw)
        )

    def run_worker(self, job_id: str, processor: Any, *args: Any, **kw: Any) -> Any:
        return self._runner.run(self._async.run_worker(job_id, _in_thread(processor), *args, **kw))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._async, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(attribute(*args, **kwargs))

        return call


def _in_thread(processor: Any) -> Any:
    """The suite's plain processors (some sleep) as async ones, as an asyncio
    program would write them: the event loop, and so the heartbeat, keeps running.
    Plain processors called inline are tested in test_async.py."""
    if isinstance(processor, BatchProcessor) or inspect.iscoroutinefunction(processor):
        return processor

    async def in_thread(record: Any, ctx: Any) -> Any:
        return await asyncio.to_thread(processor, record, ctx)

    return in_thread


async def _build(make: Callable[[], AsyncDistributedImport]) -> AsyncDistributedImport:
    return make()

"""The sync driver's heartbeat thread: every held lease is beaten within its
interval, and registering a lease wakes the thread only when it must."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from redisbatch import DistributedImport, IterableSource
from redisbatch._effects import Lease
from redisbatch._sync import _Heartbeats

Make = Callable[..., DistributedImport]


class FakeDriver:
    """Answers every heartbeat "OK" and records which lease it was for."""

    def __init__(self) -> None:
        self.beaten: list[Any] = []
        self.heard = threading.Condition()

    def script(self, call: Any) -> Any:
        with self.heard:
            self.beaten.append(call)
            self.heard.notify_all()
        return [b"OK"]

    def wait_for(self, call: Any, times: int = 1, timeout: float = 20.0) -> bool:
        with self.heard:
            return self.heard.wait_for(lambda: self.beaten.count(call) >= times, timeout)


def waiting_until(beats: _Heartbeats) -> float:
    """The end of the thread's timed wait, once it is in one (polls up to 20 s)."""
    if not hasattr(beats, "_wake"):  # a thread that does not say: give it time to wait
        time.sleep(0.5)
        return math.inf
    for _ in range(2000):
        with beats._changed:
            if math.isfinite(beats._wake):
                return beats._wake
        time.sleep(0.01)
    raise AssertionError("the heartbeat thread never waited")


def counting_notifies(beats: _Heartbeats) -> list[int]:
    woken: list[int] = []
    notify = beats._changed.notify

    def counted(n: int = 1) -> None:
        woken.append(n)
        notify(n)

    beats._changed.notify = counted  # type: ignore[method-assign]
    return woken


def test_a_lease_due_after_the_next_wake_up_does_not_wake_the_thread() -> None:
    """With one lease held, adding leases of the same interval (a worker's next
    batches) never notifies the heartbeat thread; a lease due sooner does."""
    driver = FakeDriver()
    beats = _Heartbeats(driver)  # type: ignore[arg-type]
    try:
        first = Lease(heartbeat="first", interval=60.0)  # type: ignore[arg-type]
        beats.add(first)
        waiting_until(beats)
        woken = counting_notifies(beats)
        for n in range(20):
            beats.remove(first)
            first = Lease(heartbeat=f"batch {n}", interval=60.0)  # type: ignore[arg-type]
            beats.add(first)
        assert woken == []
        soon = Lease(heartbeat="soon", interval=0.05)  # type: ignore[arg-type]
        beats.add(soon)
        assert woken == [1]
        assert driver.wait_for("soon")
    finally:
        beats.close()
    assert not beats._thread.is_alive()


def test_a_lease_added_while_another_is_held_is_still_beaten() -> None:
    """A lease added during the thread's wait for an earlier one (not woken for
    it) is beaten again and again, as is the one already held, until removed."""
    driver = FakeDriver()
    beats = _Heartbeats(driver)  # type: ignore[arg-type]
    try:
        held = Lease(heartbeat="held", interval=0.1)  # type: ignore[arg-type]
        beats.add(held)
        waiting_until(beats)
        later = Lease(heartbeat="later", interval=0.15)  # type: ignore[arg-type]
        beats.add(later)
        assert driver.wait_for("later", times=3)
        assert driver.wait_for("held", times=3)
        beats.remove(held)
        beats.remove(later)
        again = Lease(heartbeat="again", interval=0.1)  # type: ignore[arg-type]
        beats.add(again)  # the thread may be waiting with no lease at all: woken
        assert driver.wait_for("again", times=2)
    finally:
        beats.close()
    assert not beats._thread.is_alive()


def test_batches_each_longer_than_the_stale_timeout_are_never_reclaimed(
    make_import: Make,
) -> None:
    """One worker runs three batches, each held longer than the stale timeout, while
    another process keeps reclaiming stale batches: every batch stays heartbeaten
    (none reclaimed), and each record is processed once."""
    di = make_import(batch_size=2, stale_batch_timeout=1.5)
    job = di.prepare(IterableSource({"n": i} for i in range(6))).job_id
    seen: list[int] = []
    reclaimed: list[int] = []
    done = threading.Event()

    def slow(record: Any, ctx: Any) -> None:
        seen.append(ctx.record_index)
        time.sleep(0.9)  # two records: 1.8 s per batch, beyond the 1.5 s timeout

    def reclaimer() -> None:
        while not done.is_set():
            reclaimed.append(di.reclaim_stale_batches(job))
            time.sleep(0.05)

    watcher = threading.Thread(target=reclaimer, name=f"reclaimer-{uuid.uuid4().hex[:4]}")
    watcher.start()
    try:
        result = di.run_worker(job, slow)
    finally:
        done.set()
        watcher.join()
    assert sum(reclaimed) == 0
    assert sorted(seen) == list(range(6))
    assert result.state == "COMPLETED"

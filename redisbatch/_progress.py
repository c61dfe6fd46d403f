"""The command line's progress display: one line on stderr, rewritten in place
on a terminal, else printed every few seconds.

Rate and ETA come from the snapshot itself (``JobStatus.rate``/``eta``,
computed from the job's commits: every watcher sees the same figures); a
``prepare`` measures its storing rate from successive snapshots instead.
Standard library only: one line of counts needs no drawing library, and the
core install stays dependency-free.
"""

from __future__ import annotations

import collections
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final, TextIO

from ._results import JobStatus

__all__ = ["Progress", "Rate", "describe_eta", "following", "settled"]

_BAR: Final = 24


def settled(status: JobStatus) -> int:
    """Records done either way (processed or failed)."""
    return status.processed_records + status.failed_records


def describe_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Rate:
    """Units per second over a sliding window of (time, count) samples."""

    def __init__(self, window: float = 30.0) -> None:
        self.window = window
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, count: int, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        first_time, first_count = samples[0]
        if now - first_time <= 0 or len(samples) < 2:
            return None
        return max(0.0, (count - first_count) / (now - first_time))


class Progress:
    """Shows job snapshots on ``stream`` (stderr): live on a terminal, a plain
    line every ``every`` seconds otherwise."""

    def __init__(
        self,
        mode: str,
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        every: float = 5.0,
    ) -> None:
        self.mode = mode  # "prepare" counts stored records, else settled ones
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.every = every
        self._rate = Rate()
        self._last_plain = -float("inf")
        self._width = 0

    def line(self, status: JobStatus, rate: float | None, eta: float | None) -> str:
        total = status.total_records
        if self.mode == "prepare":
            text = (
                f"{status.state:<10} {total:,} records stored in {status.total_batches:,} batches"
            )
            if rate is not None:
                text += f", {rate:,.0f}/s"
            return text
        done = settled(status)
        share = done / total if total else (1.0 if status.is_complete else 0.0)
        text = f"{status.state:<10} "
        if self.live:
            filled = round(share * _BAR)
            text += "[" + "#" * filled + "-" * (_BAR - filled) + "] "
        text += f"{done:,}/{total:,} ({share:.0%})  failed {status.failed_records:,}"
        text += f"  {'?' if rate is None else f'{rate:,.0f}'}/s  ETA {describe_eta(eta)}"
        if status.workers:
            text += f"  workers {status.workers}"
        if status.attempt > 1:
            text += f"  attempt {status.attempt}"
        return text

    def measure(self, status: JobStatus) -> tuple[float | None, float | None]:
        """(rate, ETA) for this snapshot."""
        count = status.total_records if self.mode == "prepare" else settled(status)
        rate = self._rate.add(count)
        if self.mode != "prepare" and status.rate is not None:
            rate = status.rate  # from the job's commits, whoever watches
        if status.is_complete:
            return rate, 0.0
        if self.mode != "prepare" and status.eta is not None:
            return rate, status.eta
        if self.mode == "prepare" or status.state == "PREPARING" or not rate:
            return rate, None
        return rate, max(0, status.total_records - count) / rate

    def update(self, status: JobStatus, *, final: bool = False) -> None:
        rate, eta = self.measure(status)
        text = self.line(status, rate, eta)
        now = time.monotonic()
        if self.live:
            pad = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + pad + ("\n" if final else ""))
            self._width = 0 if final else len(text)
        elif final or now - self._last_plain >= self.every:
            self.stream.write(text + "\n")
            self._last_plain = now
        self.stream.flush()

    def clear(self) -> None:
        """Ends a live line (before other output)."""
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


@contextlib.contextmanager
def following(
    progress: Progress | None, snapshot: Callable[[], JobStatus | None], interval: float = 0.5
) -> Iterator[None]:
    """While inside, a daemon thread shows ``snapshot()`` every ``interval``
    seconds (errors reading it are skipped: the display is best effort)."""
    if progress is None:
        yield
        return
    done = threading.Event()

    def show() -> None:
        while not done.wait(interval):
            try:
                status = snapshot()
            except Exception:
                continue
            if status is not None:
                progress.update(status)

    thread = threading.Thread(target=show, name="redisbatch-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)  # a status call stuck on a dead server is not waited for

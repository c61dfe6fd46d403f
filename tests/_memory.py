"""Peak memory of a piece of work, for tests that hold a parser to bounded memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def with_peak(work: Callable[[], T]) -> tuple[T, int]:
    """``work()``'s result and the peak bytes Python allocated while it ran."""
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

"""A record in flight between the pipeline's phases (see ``_pipeline``): where
it sits in its batch (``Row``), and, once it passed steps 1 to 9, what it
carries to the processor and on to the settling (``Ready``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._codec import ReceivedBatch, raw_record
from ._events import RecordRetried
from ._fastpath import as_record
from ._results import ProcessedRecord, ProcessingContext, ValidationError

__all__ = ["Contexts", "Ready", "Row", "contexts_of", "hook_failed", "is_invalid", "ready_of"]


class Contexts:
    """The ``ProcessingContext`` of each record of one claimed batch, by the
    number the pipeline gives (``first_index + position``); a redriven batch
    maps that number to the record's source index through ``indexes``.
    ``span`` makes a run of them at once, without a Python call per record."""

    __slots__ = ("batch_id", "batch_index", "indexes", "job_id", "total", "worker_id")

    def __init__(
        self,
        job_id: str,
        batch_id: str,
        batch_index: int,
        total: int,
        worker_id: str,
        indexes: tuple[int, ...] = (),
    ) -> None:
        self.job_id = job_id
        self.batch_id = batch_id
        self.batch_index = batch_index
        self.total = total
        self.worker_id = worker_id
        self.indexes = indexes

    def __call__(self, number: int) -> ProcessingContext:
        index = self.indexes[number] if self.indexes else number
        job_id = self.job_id
        return ProcessingContext(
            job_id,
            self.batch_id,
            self.batch_index,
            index,
            self.total,
            self.worker_id,
            f"{job_id}:{index}",
        )

    def span(self, first: int, count: int) -> list[ProcessingContext]:
        """The contexts of numbers ``first`` to ``first + count - 1``, in order."""
        numbers = range(first, first + count)
        indexes = map(self.indexes.__getitem__, numbers) if self.indexes else numbers
        job_id, batch_id, batch_index = self.job_id, self.batch_id, self.batch_index
        total, worker_id = self.total, self.worker_id
        # Positional: this runs once per record.
        return [
            ProcessingContext(
                job_id, batch_id, batch_index, index, total, worker_id, f"{job_id}:{index}"
            )
            for index in indexes
        ]


def contexts_of(
    contexts: Callable[[int], ProcessingContext], first: int, count: int
) -> list[ProcessingContext]:
    """``contexts(n)`` for ``n`` from ``first`` on, ``count`` of them."""
    if isinstance(contexts, Contexts):
        return contexts.span(first, count)
    return list(map(contexts, range(first, first + count)))


def is_invalid(errors: Sequence[ValidationError]) -> bool:
    """Whether any of the errors has severity ``"error"``."""
    return any(e.severity == "error" for e in errors)


@dataclass(slots=True)
class Ready:
    """A record that passed steps 1 to 9 and waits for the processor."""

    position: int
    parsed: Any
    ctx: ProcessingContext
    errors: Sequence[ValidationError]
    retried: list[RecordRetried] | None = None  # events, emitted in phase C
    error: str | None = None  # the processor's last error, once it has given up
    attempts: int = 0

    def note_retry(self, event: RecordRetried) -> None:
        if self.retried is None:
            self.retried = []
        self.retried.append(event)


class Row:
    """Where a record sits in its batch; its raw dict is decoded only if needed."""

    __slots__ = ("batch", "columns", "position")

    def __init__(self, batch: ReceivedBatch, columns: list[str], position: int) -> None:
        self.batch = batch
        self.columns = columns
        self.position = position

    def raw(self) -> dict[str, Any]:
        failure = self.batch.failures.get(self.position)
        if failure is not None:
            return failure[1]
        return raw_record(self.columns, self.batch.row(self.position))


def ready_of(position: int, entry: tuple[ProcessingContext, Any]) -> Ready:
    """The ``Ready`` of a settled entry (its context and a dict, a record or a ``Ready``)."""
    ctx, item = entry
    return item if isinstance(item, Ready) else Ready(position, as_record(item), ctx, ())


def hook_failed(
    index: int, raw: dict[str, Any], parsed: Any, hook: str, exc: Exception, retries: int = 0
) -> ProcessedRecord:
    """The failed record of a hook that raised."""
    return ProcessedRecord(
        index=index,
        raw=raw,
        parsed=parsed,
        status="failed",
        errors=[],
        processing_error=f"{hook} hook failed: {exc}",
        retry_count=retries,
    )

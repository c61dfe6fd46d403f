"""A record in flight between the pipeline's phases (see ``_pipeline``): where
it sits in its batch (``Row``), and, once it passed steps 1 to 9, what it
carries to the processor and on to the settling (``Ready``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._codec import ReceivedBatch, raw_record
from ._events import RecordRetried
from ._fastpath import as_record
from ._results import ProcessedRecord, ProcessingContext, ValidationError

__all__ = ["Ready", "Row", "hook_failed", "is_invalid", "ready_of"]


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

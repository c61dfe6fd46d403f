"""The public types a user passes in around the processor: ``Hooks``, the
``DuplicateChecker`` and its ``DuplicateResult``, ``BatchProcessor`` and its
``batch_processor`` decorator, and the ``Processor`` alias.

They are plain values; ``_pipeline`` runs them (steps 3 and 7 to 11 of its
docstring).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from ._results import BatchContext, ProcessedRecord, ProcessingContext

__all__ = [
    "BatchProcessor",
    "DuplicateChecker",
    "DuplicateResult",
    "Hooks",
    "Processor",
    "batch_processor",
]

Processor = Callable[[Any, ProcessingContext], Any]


@dataclass(frozen=True, slots=True)
class Hooks:
    """Optional hooks around each record, given as ``DistributedImport(hooks=...)``.

    Each is a callable ``(x, ctx)`` with ``ctx`` the record's
    ``ProcessingContext``; all default to None (no hook). On
    ``AsyncDistributedImport`` they may be ``async def``.

    - ``before_validate(record, ctx) -> dict``: gets the raw record (a dict,
      aliases resolved) and returns the record to validate (e.g. to fix or
      rename columns).
    - ``after_validate(processed_record, ctx) -> ProcessedRecord``: gets the
      ``ProcessedRecord`` after validation, uniqueness and the duplicate
      checker, and returns it, possibly with errors added or removed (e.g.
      with ``msgspec.structs.replace``); the status is then re-derived from
      the errors (any of severity ``"error"`` makes it invalid).
    - ``before_process(record, ctx) -> record``: gets a valid record's parsed
      value and returns what the processor receives.
    - ``after_process(processed_record, ctx)``: called after the processor
      succeeded, with the ``ProcessedRecord`` (status ``"processed"``); its
      return value is ignored. With a batch processor it runs per succeeded
      record.

    A hook that raises fails the record with ``processing_error``
    ``"<hook_name> hook failed: <message>"`` (an ``after_process`` failure
    turns the processed record into a failed one).
    """

    before_validate: Callable[[dict[str, Any], ProcessingContext], Any] | None = None
    after_validate: Callable[[ProcessedRecord, ProcessingContext], Any] | None = None
    before_process: Callable[[Any, ProcessingContext], Any] | None = None
    after_process: Callable[[ProcessedRecord, ProcessingContext], Any] | None = None


class DuplicateResult(msgspec.Struct, frozen=True):
    """What a ``duplicate_checker`` may return instead of a plain bool.

    ``is_duplicate``: the record already exists elsewhere (it is then invalid
    with code ``EXTERNAL_DUPLICATE``). ``existing_id``: optionally, the id of
    the existing record, put in the error's ``metadata``.
    """

    is_duplicate: bool
    existing_id: Any = None


class DuplicateChecker(Protocol):
    """The type of ``DistributedImport(duplicate_checker=...)``: a callable
    ``(record, ctx) -> bool | DuplicateResult``.

    Called for each record still valid after validation and
    ``unique_fields`` with its parsed value and ``ProcessingContext``; it
    answers whether the record already exists elsewhere (say, in your
    database). True (or ``DuplicateResult(True, existing_id)``) makes the
    record invalid with code ``EXTERNAL_DUPLICATE``; an exception in it does
    too, with the message "Duplicate check failed: ...". On the async facade
    it may be ``async def``. Any function of that shape will do: this
    Protocol is only for type annotations.
    """

    def __call__(self, record: Any, ctx: ProcessingContext) -> bool | DuplicateResult: ...


class BatchProcessor:
    """A processor called once per batch: what ``batch_processor`` returns.

    ``BatchProcessor(fn)`` (or ``@batch_processor``) wraps
    ``fn(records, ctx)``; pass it wherever a processor goes. Calling it calls
    ``fn``. ``fn`` is kept as the ``fn`` attribute.
    """

    __slots__ = ("__wrapped__", "fn")

    def __init__(self, fn: Callable[[list[Any], BatchContext], Any]) -> None:
        if not callable(fn):
            raise TypeError("batch_processor decorates a callable")
        self.fn = fn
        self.__wrapped__ = fn

    def __call__(self, records: list[Any], ctx: BatchContext) -> Any:
        return self.fn(records, ctx)


def batch_processor(fn: Callable[[list[Any], BatchContext], Any]) -> BatchProcessor:
    """Decorator: makes ``fn(records, ctx)`` a processor called once per batch
    rather than once per record, for bulk writes (``executemany``, ``COPY``,
    ``insert_many``).

    ``records`` are the batch's valid records in source order (after
    ``before_process``), ``ctx`` a ``BatchContext`` (its ``record_indexes``
    give each record's source index; its ``idempotency_key`` is stable
    across redeliveries). ``fn`` returns None when every record succeeded,
    or a mapping ``{record_index: error message}`` of the records that
    failed. An exception fails the whole call: it is retried ``max_retries``
    times with backoff, then every record in it fails with that message.
    ``after_process`` still runs per succeeded record. Returns a
    ``BatchProcessor``; on the async facade ``fn`` may be ``async def``."""
    return BatchProcessor(fn)

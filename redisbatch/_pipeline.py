"""The record pipeline: one batch's records through aliases, hooks, validation,
uniqueness, the duplicate checker, the processor with retries, and back.

The steps, per record (other modules refer to them by number):

1. skip rows whose every value is empty (``skip_empty_rows``; done when the
   source is read, so skipped rows are never records);
2. resolve ``aliases`` to field names;
3. ``hooks.before_validate``;
4. transforms: array split, ``transform``, ``default``;
5. validation and coercion (``strict`` rejects unknown columns);
6. ``unique_fields`` across the job (first occurrence in source order wins);
7. the ``duplicate_checker``, for records still valid;
8. ``hooks.after_validate``, after which the status is re-derived;
9. invalid records are stored as failed; valid ones go to
   ``hooks.before_process``;
10. the processor, retried ``max_retries`` times with backoff;
11. ``hooks.after_process``.

It is a flow (see ``_effects``): user code runs through ``Call``/``CallEach``
effects and backoff waits are ``Sleep`` effects, so the sync and async
facades run this same code. A batch goes through three phases:

A. per record, in source order: steps 1 to 9 (validation — the whole batch
   at once where no ``before_validate`` hook needs each record first —,
   hooks, uniqueness, the duplicate checker, ``before_process``);
B. the processor over every record still valid: one ``CallEach`` (which an
   async driver may run concurrently) or one batch processor call, then
   retries with backoff for the records that failed;
C. in source order: ``after_process``, events, the outcome to commit.

A deadline (the worker's time budget), a lost lease or an interruption (the
worker being stopped: ``Interrupted`` thrown in by the driver) stops the
batch between records or retries; what is not done is handed back
(``BatchOutcome.done``). The record whose call was interrupted is not done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from ._codec import ReceivedBatch, raw_record
from ._effects import Call, CallEach, Flow, Interrupted, Lease, Sleep
from ._events import EventEmitter, RecordFailed, RecordProcessed, RecordRetried
from ._fastpath import Checked, PassThrough, as_record
from ._results import BatchContext, ProcessedRecord, ProcessingContext, ValidationError
from ._schema import Schema
from ._validate import Validator, error

__all__ = [
    "BatchOutcome",
    "DuplicateChecker",
    "DuplicateResult",
    "Hooks",
    "RecordPipeline",
    "batch_id_of",
    "batch_processor",
]

log = logging.getLogger("redisbatch")

Processor = Callable[[Any, ProcessingContext], Any]

#: Duplicates found at prepare time: batch position -> [(field, first index), ...].
Duplicates = dict[int, list[tuple[str, int]]]


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


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What processing one batch produced, ready to commit.

    ``done`` records (a prefix of the batch) are settled; the rest, when
    ``done < size`` and the batch did not fail, is handed back to the queue.
    """

    processed: int
    failed: list[ProcessedRecord]
    state: str  # "COMPLETED" or "FAILED"
    error: str | None
    done: int
    size: int


def batch_id_of(batch_index: int) -> str:
    return f"batch-{batch_index}"


def _is_invalid(errors: Sequence[ValidationError]) -> bool:
    return any(e.severity == "error" for e in errors)


@dataclass(slots=True)
class _Ready:
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


class _Calls(Sequence[tuple[Any, ProcessingContext]]):
    """The processor's arguments for ready records, each record's dict made
    only when its call comes (so a batch's dicts are not all alive at once)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: list[tuple[ProcessingContext, Any]]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: Any) -> Any:
        ctx, item = self._entries[index]
        return (item.parsed if isinstance(item, _Ready) else as_record(item), ctx)

    def __iter__(self) -> Iterator[tuple[Any, ProcessingContext]]:
        as_dict = msgspec.structs.asdict
        for ctx, item in self._entries:
            if type(item) is dict:
                yield (item, ctx)
            elif isinstance(item, _Ready):
                yield (item.parsed, ctx)
            else:
                yield (as_dict(item), ctx)


class _Row:
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


class RecordPipeline:
    """One schema, hooks, checker and retry policy, compiled once; ``run`` per batch."""

    def __init__(
        self,
        schema: Schema | None,
        *,
        hooks: Hooks | None,
        duplicate_checker: DuplicateChecker | None = None,
        continue_on_error: bool,
        max_retries: int,
        retry_delay: float,
        emitter: EventEmitter,
    ) -> None:
        self.schema = schema
        self.validator = Validator(schema) if schema is not None else None
        self._pass_through = PassThrough()
        self.hooks = hooks or Hooks()
        self.duplicate_checker = duplicate_checker
        self.continue_on_error = continue_on_error
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.emitter = emitter
        self.record_type = None if schema is None else schema.record_type
        self._struct_fields: tuple[str, ...] = (
            ()
            if self.record_type is None
            else tuple(f.encode_name for f in msgspec.structs.fields(self.record_type))
        )
        hooks = self.hooks
        self._plain = (
            hooks.before_validate is None
            and hooks.after_validate is None
            and hooks.before_process is None
            and duplicate_checker is None
            and self.record_type is None
        )

    # ------------------------------------------------------------ pure steps

    def check(self, index: int, raw: dict[str, Any]) -> ProcessedRecord:
        """Steps 2, 4 and 5 for one record, without hooks (``preview`` uses it)."""
        if self.validator is None:
            return self._record(index, raw, (raw, []))
        return self._record(index, raw, self.validator.validate(self.validator.resolve_record(raw)))

    def _record(self, index: int, raw: dict[str, Any], checked: Checked) -> ProcessedRecord:
        parsed, errors = checked
        invalid = _is_invalid(errors)
        if not invalid and self.record_type is not None:
            try:
                parsed = self.to_struct(parsed)
            except msgspec.ValidationError as exc:
                errors = [*errors, error("_record", "TYPE_MISMATCH", str(exc), None)]
                invalid = True
        return ProcessedRecord(
            index=index,
            raw=raw,
            parsed=parsed,
            status="invalid" if invalid else "valid",
            errors=list(errors),
            processing_error=None,
            retry_count=0,
        )

    def to_struct(self, parsed: dict[str, Any]) -> Any:
        """A valid record as the schema's Struct (``Schema.from_struct``)."""
        return msgspec.convert(
            {name: parsed.get(name) for name in self._struct_fields}, self.record_type
        )

    # ------------------------------------------------------------ one batch

    def run(
        self,
        batch: ReceivedBatch,
        columns: list[str],
        contexts: Callable[[int], ProcessingContext],
        processor: Processor | BatchProcessor,
        lease: Lease | None,
        duplicates: Duplicates | None = None,
        deadline: float | None = None,
    ) -> Flow[BatchOutcome]:
        """Processes a batch: phases A, B and C of the module docstring."""
        size = len(batch)

        def stopped() -> bool:
            return (lease is not None and lease.stopped) or (
                deadline is not None and time.monotonic() >= deadline
            )

        if stopped():
            return BatchOutcome(0, [], "COMPLETED", None, 0, size)

        # Phase A: steps 1 to 9, in source order.
        checked = self._check_batch(batch, columns)
        # Per position: its context and a dict (valid, nothing more to run before
        # the processor: the hot path allocates nothing else), a _Ready, or the
        # ProcessedRecord of a record that already failed.
        settled: list[tuple[ProcessingContext, dict[str, Any] | ProcessedRecord | _Ready]] = []
        plain = self._plain and not duplicates
        first = batch.first_index
        for position in range(size):
            pre = None if checked is None else checked[position]
            if plain and pre is not None and not pre[1]:
                # Valid and nothing to run before the processor: no checks here,
                # the stop conditions are looked at between non-trivial records.
                settled.append((contexts(first + position), pre[0]))
                continue
            if stopped():
                break
            ctx = contexts(first + position)
            dups = None if duplicates is None else duplicates.get(position)
            try:
                item = yield from self._prepare(_Row(batch, columns, position), pre, dups, ctx)
            except Interrupted:
                break  # the lease is marked: phase B starts nothing
            settled.append((ctx, item))
            if not self.continue_on_error and isinstance(item, ProcessedRecord):
                break

        # Phase B: the processor over every ready record.
        ready = [p for p, (_, item) in enumerate(settled) if not isinstance(item, ProcessedRecord)]
        troubled: dict[int, _Ready] = {}  # positions whose processor call failed at least once
        if isinstance(processor, BatchProcessor):
            records = [self._ready(position, settled[position]) for position in ready]
            troubled = {r.position: r for r in records}
            attempted = yield from self._call_batch(processor, records, stopped, lease)
        else:
            attempted = yield from self._call_each(
                processor, settled, ready, troubled, lease, deadline
            )
        if attempted < len(ready):  # the time budget ran out or the lease was lost
            del settled[ready[attempted] :]

        # Phase C: after_process, events and the outcome, in source order.
        return (yield from self._settle(batch, columns, settled, troubled, size))

    @staticmethod
    def _ready(position: int, entry: tuple[ProcessingContext, Any]) -> _Ready:
        ctx, item = entry
        return item if isinstance(item, _Ready) else _Ready(position, as_record(item), ctx, ())

    def _check_batch(self, batch: ReceivedBatch, columns: list[str]) -> list[Checked | None] | None:
        """Step 5 for the whole batch at once (without a schema: the records
        decoded at once), unless a before_validate hook must see each record first."""
        if self.hooks.before_validate is not None:
            return None
        failures = batch.failures
        positions = [p for p in range(len(batch)) if p not in failures]
        checked: list[Checked | None] = [None] * len(batch)
        raw_rows = [batch.raw_rows[p] for p in positions]
        if self.validator is None:
            results = self._pass_through.check(columns, raw_rows)
        else:
            results = self.validator.check_raw_rows(columns, raw_rows)
        for position, result in zip(positions, results, strict=True):
            checked[position] = result
        return checked

    def _prepare(
        self,
        row: _Row,
        pre: Checked | None,
        duplicates: list[tuple[str, int]] | None,
        ctx: ProcessingContext,
    ) -> Flow[ProcessedRecord | _Ready]:
        """Steps 2 to 9 for one record: invalid/failed, or ready for the processor."""
        index, hooks = ctx.record_index, self.hooks
        failure = row.batch.failures.get(row.position)
        if failure is not None:
            message, raw = failure
            return ProcessedRecord(
                index=index,
                raw=raw,
                parsed=raw,
                status="invalid",
                errors=[error("_row", "PARSE_ERROR", message, None)],
                processing_error=None,
                retry_count=0,
            )
        raw = row.raw()
        if pre is None:
            validator = self.validator
            record = raw if validator is None else validator.resolve_record(raw)
            if hooks.before_validate is not None:
                try:
                    record = yield Call(hooks.before_validate, (record, ctx))
                except Exception as exc:
                    return _hook_failed(index, raw, raw, "before_validate", exc)
            pre = (record, []) if validator is None else validator.validate(record)
        parsed, errors = as_record(pre[0]), pre[1]
        if duplicates:
            errors = [
                *errors,
                *(
                    error(field, "DUPLICATE_VALUE", f"{field} duplicates record {first}",
                          parsed.get(field))
                    for field, first in duplicates
                ),
            ]  # fmt: skip
        if self.duplicate_checker is not None and not _is_invalid(errors):
            errors = yield from self._check_duplicate(parsed, errors, ctx)
        result = self._record(index, raw, (parsed, errors))
        if hooks.after_validate is not None:
            try:
                result = yield Call(hooks.after_validate, (result, ctx))
            except Exception as exc:
                return _hook_failed(index, raw, result.parsed, "after_validate", exc)
            status = "invalid" if _is_invalid(result.errors) else "valid"
            if status != result.status:
                result = msgspec.structs.replace(result, status=status)
        if result.status == "invalid":
            return result
        parsed = result.parsed
        if hooks.before_process is not None:
            try:
                parsed = yield Call(hooks.before_process, (parsed, ctx))
            except Exception as exc:
                return _hook_failed(index, raw, parsed, "before_process", exc)
        return _Ready(row.position, parsed, ctx, result.errors)

    def _check_duplicate(
        self, parsed: Any, errors: Sequence[ValidationError], ctx: ProcessingContext
    ) -> Flow[Sequence[ValidationError]]:
        """Step 7: asks the duplicate checker about a record that is still valid."""
        assert self.duplicate_checker is not None
        record = self.to_struct(parsed) if self.record_type is not None else parsed
        try:
            outcome = yield Call(self.duplicate_checker, (record, ctx))
        except Exception as exc:
            return [
                *errors,
                error("_record", "EXTERNAL_DUPLICATE", f"Duplicate check failed: {exc}", None),
            ]
        if isinstance(outcome, DuplicateResult):
            duplicate, existing = outcome.is_duplicate, outcome.existing_id
        else:
            duplicate, existing = bool(outcome), None
        if not duplicate:
            return errors
        message = "Duplicate of an existing record"
        if existing is not None:
            message += f" ({existing})"
        return [
            *errors,
            error(
                "_record",
                "EXTERNAL_DUPLICATE",
                message,
                None,
                metadata=None if existing is None else {"existing_id": existing},
            ),
        ]

    # ------------------------------------------------------------ phase B

    def _call_each(
        self,
        processor: Processor,
        settled: list[tuple[ProcessingContext, Any]],
        ready: list[int],
        troubled: dict[int, _Ready],
        lease: Lease | None,
        deadline: float | None,
    ) -> Flow[int]:
        """The processor once per ready record, then retries for the failures
        (recorded in ``troubled``). Returns how many ready records were
        attempted (a prefix of ``ready``)."""
        attempted = 0
        stop_on_error = not self.continue_on_error
        while attempted < len(ready):
            pending = ready[attempted:]
            try:
                outcomes = yield CallEach(
                    processor,
                    _Calls([settled[position] for position in pending]),
                    lease,
                    stop_on_error=stop_on_error,
                    deadline=deadline,
                )
            except Interrupted:  # before any outcome could be reported
                break
            if not outcomes:
                break  # out of time, or the lease is gone
            raised = False
            for offset, exc in enumerate(outcomes):
                if exc is None:
                    continue
                raised = True
                position = pending[offset]
                record = self._ready(position, settled[position])
                record.attempts = 1
                troubled[position] = record
                try:
                    finished = yield from self._retry(record, exc, processor, lease)
                except Interrupted:
                    finished = False
                if not finished:  # the lease is lost or the worker stopping
                    return attempted + offset
                if record.error is not None and stop_on_error:
                    return attempted + offset + 1
            attempted += len(outcomes)
            if len(outcomes) < len(pending) and not raised:
                break  # out of time, or the lease is gone
        return attempted

    def _call_batch(
        self,
        processor: BatchProcessor,
        ready: list[_Ready],
        stopped: Callable[[], bool],
        lease: Lease | None,
    ) -> Flow[int]:
        """One batch processor call for every ready record, with retries;
        0 when it was stopped (the lease lost, the worker interrupted)."""
        if not ready:
            return 0
        if stopped():
            return 0
        first_ctx = ready[0].ctx
        batch_ctx = BatchContext(
            job_id=first_ctx.job_id,
            batch_id=first_ctx.batch_id,
            batch_index=first_ctx.batch_index,
            worker_id=first_ctx.worker_id,
            total_records=first_ctx.total_records,
            record_indexes=[r.ctx.record_index for r in ready],
            idempotency_key=f"{first_ctx.job_id}:batch:{first_ctx.batch_index}",
        )
        records = [r.parsed for r in ready]
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1 and lease is not None and lease.stopped:
                return 0
            try:
                failures = yield Call(processor.fn, (records, batch_ctx))
                break
            except Interrupted:
                return 0
            except Exception as exc:
                message = str(exc) or type(exc).__name__
                if attempt > self.max_retries:
                    for record in ready:
                        record.error, record.attempts = message, attempt
                    return len(ready)
                for record in ready:
                    record.note_retry(self._retried_event(record.ctx, attempt, message))
                try:
                    yield from self._backoff(attempt, lease)
                except Interrupted:
                    return 0
        by_index = {r.ctx.record_index: r for r in ready}
        if isinstance(failures, Mapping):
            for index, message in failures.items():
                target = by_index.get(index)
                if target is None:
                    log.warning("batch processor named record %r, not in its batch", index)
                    continue
                target.error = str(message)
        elif failures is not None:
            log.warning("batch processor returned %r; expected a mapping or None", failures)
        for record in ready:
            record.attempts = attempt
        return len(ready)

    def _retry(
        self, record: _Ready, first_error: Exception, processor: Processor, lease: Lease | None
    ) -> Flow[bool]:
        """Retries a failed call with exponential backoff; sets ``record.error``
        when every retry failed. False (the record not done) when the lease
        stopped first: lost, or its worker stopping."""
        error_text = str(first_error) or type(first_error).__name__
        while record.attempts <= self.max_retries:
            if lease is not None and lease.stopped:
                return False
            record.note_retry(self._retried_event(record.ctx, record.attempts, error_text))
            yield from self._backoff(record.attempts, lease)
            if lease is not None and lease.stopped:
                return False
            record.attempts += 1
            try:
                yield Call(processor, (record.parsed, record.ctx))
                return True
            except Exception as exc:
                error_text = str(exc) or type(exc).__name__
        record.error = error_text
        return True

    def _backoff(self, retry: int, lease: Lease | None) -> Flow[None]:
        """Retry k waits retry_delay * 2**(k-1) (less if the lease stops meanwhile)."""
        if self.retry_delay > 0:
            yield Sleep(self.retry_delay * 2 ** (retry - 1), lease)

    def _retried_event(self, ctx: ProcessingContext, attempt: int, message: str) -> RecordRetried:
        return RecordRetried(
            job_id=ctx.job_id,
            timestamp=time.time(),
            batch_id=ctx.batch_id,
            record_index=ctx.record_index,
            attempt=attempt,
            max_retries=self.max_retries,
            error=message,
        )

    # ------------------------------------------------------------ phase C

    def _settle(
        self,
        batch: ReceivedBatch,
        columns: list[str],
        settled: list[tuple[ProcessingContext, Any]],
        troubled: dict[int, _Ready],
        size: int,
    ) -> Flow[BatchOutcome]:
        processed = 0
        failed: list[ProcessedRecord] = []
        after = self.hooks.after_process
        want_processed = self.emitter.wants(RecordProcessed.type)
        for position, (ctx, item) in enumerate(settled):
            result: ProcessedRecord | None
            if isinstance(item, ProcessedRecord):
                result = item
            else:
                record = troubled.get(position)
                if record is None and isinstance(item, _Ready):
                    record = item
                result = None
                if record is not None and record.retried:
                    for event in record.retried:
                        self.emitter.emit(event)
                if record is not None and record.error is not None:
                    result = ProcessedRecord(
                        index=ctx.record_index,
                        raw=_Row(batch, columns, position).raw(),
                        parsed=record.parsed,
                        status="failed",
                        errors=list(record.errors),
                        processing_error=record.error,
                        retry_count=max(0, record.attempts - 1),
                    )
                elif after is not None:
                    try:
                        result = yield from self._after_process(
                            after,
                            record or self._ready(position, (ctx, item)),
                            _Row(batch, columns, position),
                        )
                    except Interrupted:  # this record and the rest go back
                        return BatchOutcome(processed, failed, "COMPLETED", None, position, size)
                if result is None:
                    processed += 1
                    if want_processed:
                        self._emit_processed(ctx)
                    continue
            if batch.lines:  # the source line, so that the user can find the row
                result = msgspec.structs.replace(result, line=batch.line_of(position))
            failed.append(result)
            message = self._emit_failed(result, ctx)
            if not self.continue_on_error:
                return BatchOutcome(processed, failed, "FAILED", message, position + 1, size)
        return BatchOutcome(processed, failed, "COMPLETED", None, len(settled), size)

    def _after_process(
        self, hook: Callable[..., Any], item: _Ready, row: _Row
    ) -> Flow[ProcessedRecord | None]:
        done = ProcessedRecord(
            index=item.ctx.record_index,
            raw=row.raw(),
            parsed=item.parsed,
            status="processed",
            errors=list(item.errors),
            processing_error=None,
            retry_count=max(0, item.attempts - 1),
        )
        try:
            yield Call(hook, (done, item.ctx))
        except Exception as exc:
            return _hook_failed(
                done.index, done.raw, item.parsed, "after_process", exc, done.retry_count
            )
        return None

    def _emit_processed(self, ctx: ProcessingContext) -> None:
        self.emitter.emit(
            RecordProcessed(
                job_id=ctx.job_id,
                timestamp=time.time(),
                batch_id=ctx.batch_id,
                record_index=ctx.record_index,
            )
        )

    def _emit_failed(self, result: ProcessedRecord, ctx: ProcessingContext) -> str:
        """Emits record:failed; returns the record's failure message."""
        message = _failure_message(result)
        if self.emitter.wants(RecordFailed.type):
            self.emitter.emit(
                RecordFailed(
                    job_id=ctx.job_id,
                    timestamp=time.time(),
                    batch_id=ctx.batch_id,
                    record_index=result.index,
                    error=message,
                    record=result,
                )
            )
        return message


def _hook_failed(
    index: int, raw: dict[str, Any], parsed: Any, hook: str, exc: Exception, retries: int = 0
) -> ProcessedRecord:
    return ProcessedRecord(
        index=index,
        raw=raw,
        parsed=parsed,
        status="failed",
        errors=[],
        processing_error=f"{hook} hook failed: {exc}",
        retry_count=retries,
    )


def _failure_message(record: ProcessedRecord) -> str:
    if record.processing_error is not None:
        return record.processing_error
    return "; ".join(e.message for e in record.errors if e.severity == "error") or "invalid"

"""The record pipeline (API contract, section 3): one batch's records through
aliases, hooks, validation, uniqueness, the duplicate checker, the processor
with retries, and back.

It is a flow (see ``_effects``): user code is called through ``Call``
effects and backoff waits are ``Sleep`` effects, so the sync and async
facades run this same code. What the schema alone decides is compiled once,
in ``RecordPipeline.__init__``; without a ``before_validate`` hook a whole
batch is validated at once (``Validator.check_rows``), and a valid record
with no hooks costs one context and one processor call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from ._codec import ReceivedBatch, raw_record
from ._effects import Call, CallEach, Flow, Lease, Sleep
from ._events import EventEmitter, RecordFailed, RecordProcessed, RecordRetried
from ._fastpath import Checked
from ._results import ProcessedRecord, ProcessingContext, ValidationError
from ._schema import Schema
from ._validate import Validator, error

__all__ = [
    "BatchOutcome",
    "DuplicateChecker",
    "DuplicateResult",
    "Hooks",
    "RecordPipeline",
    "batch_id_of",
]

Processor = Callable[[Any, ProcessingContext], Any]

#: Duplicates found at prepare time: batch position -> [(field, first index), ...].
Duplicates = dict[int, list[tuple[str, int]]]


@dataclass(frozen=True, slots=True)
class Hooks:
    """Optional hooks around each record (API contract, section 3)."""

    before_validate: Callable[[dict[str, Any], ProcessingContext], Any] | None = None
    after_validate: Callable[[ProcessedRecord, ProcessingContext], Any] | None = None
    before_process: Callable[[Any, ProcessingContext], Any] | None = None
    after_process: Callable[[ProcessedRecord, ProcessingContext], Any] | None = None


class DuplicateResult(msgspec.Struct, frozen=True):
    """What a duplicate checker may return instead of a plain bool."""

    is_duplicate: bool
    existing_id: Any = None


class DuplicateChecker(Protocol):
    """``(record, ctx) -> bool | DuplicateResult``: is this record already stored elsewhere?"""

    def __call__(self, record: Any, ctx: ProcessingContext) -> bool | DuplicateResult: ...


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What processing one batch produced, ready to commit."""

    processed: int
    failed: list[ProcessedRecord]
    state: str  # "COMPLETED" or "FAILED"
    error: str | None


def batch_id_of(batch_index: int) -> str:
    return f"batch-{batch_index}"


def _is_invalid(errors: Sequence[ValidationError]) -> bool:
    return any(e.severity == "error" for e in errors)


class _Record:
    """Where a record sits in its batch; its raw dict is decoded only if needed."""

    __slots__ = ("batch", "columns", "position")

    def __init__(self, batch: ReceivedBatch, columns: list[str], position: int) -> None:
        self.batch = batch
        self.columns = columns
        self.position = position

    def raw(self) -> dict[str, Any]:
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
            and hooks.after_process is None
            and duplicate_checker is None
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
        processor: Processor,
        lease: Lease | None,
        duplicates: Duplicates | None = None,
    ) -> Flow[BatchOutcome]:
        """Processes a batch's records until done, until one fails with
        ``continue_on_error=False``, or until the lease is lost."""
        failures, first = batch.failures, batch.first_index
        checked: list[Checked | None] | None = None
        if self.validator is not None and self.hooks.before_validate is None:
            positions = [p for p in range(len(batch)) if p not in failures]
            checked = [None] * len(batch)
            raw_rows = batch.raw_rows
            for position, checked_row in zip(
                positions,
                self.validator.check_raw_rows(columns, [raw_rows[p] for p in positions]),
                strict=True,
            ):
                checked[position] = checked_row
        plain = self._plain and not duplicates and self.record_type is None
        emitter = self.emitter
        processed = 0
        failed: list[ProcessedRecord] = []
        size = len(batch)

        def is_hot(position: int) -> bool:
            """Valid, no hooks, no checker, no duplicates: the processor is all there is."""
            return (
                plain and position not in failures and (checked is None or not checked[position][1])  # type: ignore[index]
            )

        position = 0
        while position < size:
            if lease is not None and lease.lost:
                break
            if is_hot(position):
                end = position + 1
                while end < size and is_hot(end):
                    end += 1
                calls = [
                    (
                        _Record(batch, columns, p).raw() if checked is None else checked[p][0],  # type: ignore[index]
                        contexts(first + p),
                    )
                    for p in range(position, end)
                ]
                done, exc = yield CallEach(processor, calls, lease)
                processed += done
                self._emit_processed(calls[:done])
                position += done
                if exc is None:
                    if position < end:
                        break  # the lease was lost
                    continue
                parsed, ctx = calls[done]
                result = yield from self._process(
                    first + position, _Record(batch, columns, position), parsed, (), ctx,
                    processor, first_error=exc,
                )  # fmt: skip
            else:
                ctx = contexts(first + position)
                dups = None if duplicates is None else duplicates.get(position)
                pre = None if checked is None else checked[position]
                result = yield from self._single(
                    batch, columns, position, pre, dups, ctx, processor
                )
            position += 1
            if result is None:
                processed += 1
                self._emit_processed([(None, ctx)])
                continue
            failed.append(result)
            message = _failure_message(result)
            if emitter.wants(RecordFailed.type):
                emitter.emit(
                    RecordFailed(
                        job_id=ctx.job_id,
                        timestamp=time.time(),
                        batch_id=ctx.batch_id,
                        record_index=result.index,
                        error=message,
                        record=result,
                    )
                )
            if not self.continue_on_error:
                return BatchOutcome(processed, failed, "FAILED", message)
        return BatchOutcome(processed, failed, "COMPLETED", None)

    def _single(
        self,
        batch: ReceivedBatch,
        columns: list[str],
        position: int,
        pre: Checked | None,
        duplicates: list[tuple[str, int]] | None,
        ctx: ProcessingContext,
        processor: Processor,
    ) -> Flow[ProcessedRecord | None]:
        """One record that is not on the hot path: a parse failure, or one with
        hooks, a duplicate checker, duplicates or errors."""
        failure = batch.failures.get(position)
        if failure is not None:
            message, raw = failure
            return ProcessedRecord(
                index=ctx.record_index,
                raw=raw,
                parsed=raw,
                status="invalid",
                errors=[error("_row", "PARSE_ERROR", message, None)],
                processing_error=None,
                retry_count=0,
            )
        return (
            yield from self._one(
                ctx.record_index, _Record(batch, columns, position), pre, duplicates, ctx, processor
            )
        )

    def _emit_processed(self, calls: list[tuple[Any, ProcessingContext]]) -> None:
        if not calls or not self.emitter.wants(RecordProcessed.type):
            return
        now = time.time()
        for _, ctx in calls:
            self.emitter.emit(
                RecordProcessed(
                    job_id=ctx.job_id,
                    timestamp=now,
                    batch_id=ctx.batch_id,
                    record_index=ctx.record_index,
                )
            )

    def _one(
        self,
        index: int,
        record_of: _Record,
        pre: Checked | None,
        duplicates: list[tuple[str, int]] | None,
        ctx: ProcessingContext,
        processor: Processor,
    ) -> Flow[ProcessedRecord | None]:
        """Steps 3 to 11 for one record; None when it was processed."""
        hooks = self.hooks
        raw = record_of.raw()
        if pre is None:
            validator = self.validator
            record = raw if validator is None else validator.resolve_record(raw)
            if hooks.before_validate is not None:
                try:
                    record = yield Call(hooks.before_validate, (record, ctx))
                except Exception as exc:
                    return _hook_failed(index, raw, raw, "before_validate", exc)
            pre = (record, []) if validator is None else validator.validate(record)
        parsed, errors = pre
        if duplicates:
            errors = [
                *errors,
                *(
                    error(
                        field,
                        "DUPLICATE_VALUE",
                        f"{field} duplicates record {first_index}",
                        parsed.get(field),
                    )
                    for field, first_index in duplicates
                ),
            ]
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
        return (
            yield from self._process(index, record_of, result.parsed, result.errors, ctx, processor)
        )

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

    def _process(
        self,
        index: int,
        record_of: _Record,
        parsed: Any,
        errors: Sequence[ValidationError],
        ctx: ProcessingContext,
        processor: Processor,
        first_error: Exception | None = None,
    ) -> Flow[ProcessedRecord | None]:
        """Steps 9 to 11: before_process, the processor with retries, after_process.
        ``first_error``: the first attempt already ran (in a CallEach) and raised it."""
        hooks = self.hooks
        if hooks.before_process is not None and first_error is None:
            try:
                parsed = yield Call(hooks.before_process, (parsed, ctx))
            except Exception as exc:
                return _hook_failed(index, record_of.raw(), parsed, "before_process", exc)
        retries = 0
        while True:
            try:
                if first_error is not None:
                    failure, first_error = first_error, None
                    raise failure
                yield Call(processor, (parsed, ctx))
                break
            except Exception as exc:
                message = str(exc) or type(exc).__name__
                if retries >= self.max_retries:
                    return ProcessedRecord(
                        index=index,
                        raw=record_of.raw(),
                        parsed=parsed,
                        status="failed",
                        errors=list(errors),
                        processing_error=message,
                        retry_count=retries,
                    )
                retries += 1
                if self.emitter.wants(RecordRetried.type):
                    self.emitter.emit(
                        RecordRetried(
                            job_id=ctx.job_id,
                            timestamp=time.time(),
                            batch_id=ctx.batch_id,
                            record_index=index,
                            attempt=retries,
                            max_retries=self.max_retries,
                            error=message,
                        )
                    )
                if self.retry_delay > 0:
                    yield Sleep(self.retry_delay * 2 ** (retries - 1))
        if hooks.after_process is None:
            return None
        done = ProcessedRecord(
            index=index,
            raw=record_of.raw(),
            parsed=parsed,
            status="processed",
            errors=list(errors),
            processing_error=None,
            retry_count=retries,
        )
        try:
            yield Call(hooks.after_process, (done, ctx))
        except Exception as exc:
            return _hook_failed(index, done.raw, parsed, "after_process", exc, retries)
        return None


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

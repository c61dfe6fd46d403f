"""The record pipeline (API contract, section 3): one batch's records through
aliases, hooks, validation, the processor with retries, and back.

It is a flow (see ``_effects``): user code is called through ``Call``
effects and backoff waits are ``Sleep`` effects, so the sync and async
facades run this same code. Everything decided by the schema alone is
compiled once, in ``RecordPipeline.__init__``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from ._effects import Call, Flow, Lease, Sleep
from ._events import EventEmitter, RecordFailed, RecordProcessed, RecordRetried
from ._results import ProcessedRecord, ProcessingContext, ValidationError
from ._schema import Schema
from ._validate import Validator, error

__all__ = ["BatchOutcome", "Hooks", "RecordPipeline", "batch_id_of"]

Processor = Callable[[Any, ProcessingContext], Any]


@dataclass(frozen=True, slots=True)
class Hooks:
    """Optional hooks around each record (API contract, section 3)."""

    before_validate: Callable[[dict[str, Any], ProcessingContext], Any] | None = None
    after_validate: Callable[[ProcessedRecord, ProcessingContext], Any] | None = None
    before_process: Callable[[Any, ProcessingContext], Any] | None = None
    after_process: Callable[[ProcessedRecord, ProcessingContext], Any] | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What processing one batch produced, ready to commit."""

    processed: int
    failed: list[ProcessedRecord]
    state: str  # "COMPLETED" or "FAILED"
    error: str | None


def batch_id_of(batch_index: int) -> str:
    return f"batch-{batch_index}"


def _is_invalid(errors: list[ValidationError]) -> bool:
    return any(e.severity == "error" for e in errors)


class RecordPipeline:
    """One schema, hooks and retry policy, compiled once; ``run`` per batch."""

    def __init__(
        self,
        schema: Schema | None,
        *,
        hooks: Hooks | None,
        continue_on_error: bool,
        max_retries: int,
        retry_delay: float,
        emitter: EventEmitter,
    ) -> None:
        self.schema = schema
        self.validator = Validator(schema) if schema is not None else None
        self.hooks = hooks or Hooks()
        self.continue_on_error = continue_on_error
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.emitter = emitter

    # ------------------------------------------------------------ pure steps

    def check(self, index: int, raw: dict[str, Any]) -> ProcessedRecord:
        """Steps 2, 4 and 5 for a record without hooks (``preview`` uses it)."""
        record = self.validator.resolve_record(raw) if self.validator else raw
        return self._validated(index, raw, record)

    def _validated(
        self, index: int, raw: dict[str, Any], record: dict[str, Any]
    ) -> ProcessedRecord:
        if self.validator is None:
            parsed, errors = record, list[ValidationError]()
        else:
            parsed, errors = self.validator.validate(record)
        return ProcessedRecord(
            index=index,
            raw=raw,
            parsed=parsed,
            status="invalid" if _is_invalid(errors) else "valid",
            errors=errors,
            processing_error=None,
            retry_count=0,
        )

    # ------------------------------------------------------------ one batch

    def run(
        self,
        records: Iterator[tuple[int, dict[str, Any], str | None]],
        contexts: Callable[[int], ProcessingContext],
        processor: Processor,
        lease: Lease | None,
    ) -> Flow[BatchOutcome]:
        """Processes records until done, until one fails with
        ``continue_on_error=False``, or until the lease is lost."""
        processed = 0
        failed: list[ProcessedRecord] = []
        emitter = self.emitter
        for index, raw, parse_error in records:
            if lease is not None and lease.lost:
                break
            ctx = contexts(index)
            result = yield from self._one(index, raw, parse_error, ctx, processor)
            if result.status == "processed":
                processed += 1
                if emitter.wants(RecordProcessed.type):
                    emitter.emit(
                        RecordProcessed(
                            job_id=ctx.job_id,
                            timestamp=time.time(),
                            batch_id=ctx.batch_id,
                            record_index=index,
                        )
                    )
                continue
            failed.append(result)
            message = _failure_message(result)
            if emitter.wants(RecordFailed.type):
                emitter.emit(
                    RecordFailed(
                        job_id=ctx.job_id,
                        timestamp=time.time(),
                        batch_id=ctx.batch_id,
                        record_index=index,
                        error=message,
                        record=result,
                    )
                )
            if not self.continue_on_error:
                return BatchOutcome(processed, failed, "FAILED", message)
        return BatchOutcome(processed, failed, "COMPLETED", None)

    def _one(
        self,
        index: int,
        raw: dict[str, Any],
        parse_error: str | None,
        ctx: ProcessingContext,
        processor: Processor,
    ) -> Flow[ProcessedRecord]:
        if parse_error is not None:
            return ProcessedRecord(
                index=index,
                raw=raw,
                parsed=raw,
                status="invalid",
                errors=[error("_row", "PARSE_ERROR", parse_error, None)],
                processing_error=None,
                retry_count=0,
            )
        hooks = self.hooks
        record = self.validator.resolve_record(raw) if self.validator else raw
        if hooks.before_validate is not None:
            try:
                record = yield Call(hooks.before_validate, (record, ctx))
            except Exception as exc:
                return _hook_failed(index, raw, raw, "before_validate", exc)
        result = self._validated(index, raw, record)
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
        retries = 0
        while True:
            try:
                yield Call(processor, (parsed, ctx))
                break
            except Exception as exc:
                message = str(exc) or type(exc).__name__
                if retries >= self.max_retries:
                    return ProcessedRecord(
                        index=index,
                        raw=raw,
                        parsed=parsed,
                        status="failed",
                        errors=result.errors,
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
        done = ProcessedRecord(
            index=index,
            raw=raw,
            parsed=parsed,
            status="processed",
            errors=result.errors,
            processing_error=None,
            retry_count=retries,
        )
        if hooks.after_process is not None:
            try:
                yield Call(hooks.after_process, (done, ctx))
            except Exception as exc:
                return _hook_failed(index, raw, parsed, "after_process", exc, retries)
        return done


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

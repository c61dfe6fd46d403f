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

This module holds the flow of a batch and phase A; phase B is in
``_processing``, phase C in ``_settle``, what a record carries between them in
``_inflight``, and the public types users pass in (hooks, duplicate checker,
batch processor) in ``_hooks``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import is_not, itemgetter
from typing import Any

import msgspec

from ._codec import ReceivedBatch
from ._effects import Call, Flow, Interrupted, Lease
from ._events import EventEmitter
from ._fastpath import NO_ERRORS, Checked, PassThrough, as_record
from ._hooks import BatchProcessor, DuplicateChecker, DuplicateResult, Hooks, Processor
from ._inflight import Ready, Row, hook_failed, is_invalid, ready_of
from ._inflight import contexts_of as batch_contexts
from ._processing import Processing
from ._results import ProcessedRecord, ProcessingContext, ValidationError
from ._schema import Schema
from ._settle import BatchOutcome, Settler
from ._validate import Validator, error

__all__ = ["Duplicates", "RecordPipeline", "batch_id_of"]


#: Duplicates found at prepare time: batch position -> [(field, first index), ...].
Duplicates = dict[int, list[tuple[str, int]]]

#: A record after phase A, by position: its context and its values (a dict or
#: the fast path's row Struct: valid, nothing to run before the processor), a
#: ``Ready``, or the ``ProcessedRecord`` of a record that already failed.
Settled = tuple[ProcessingContext, Any]


def _value_of(pre: Checked | None) -> Any:
    return None if pre is None else pre[0]


def _odd_positions(checked: list[Checked | None], failures: bool) -> list[int]:
    """Positions of the records the fast path did not accept as they are: parse
    failures (None; ``failures`` says whether there are any) and rows checked
    field by field (errors other than the fast path's ``NO_ERRORS``). Found
    without a Python step per record: a batch has few of them."""
    errors_of: Callable[[Any], Any] = _errors_of if failures else itemgetter(1)
    errors = map(errors_of, checked)
    flags = list(map(is_not, errors, repeat(NO_ERRORS)))
    odd: list[int] = []
    position = -1
    try:
        while True:
            position = flags.index(True, position + 1)
            odd.append(position)
    except ValueError:
        return odd


def _errors_of(pre: Checked | None) -> Any:
    return None if pre is None else pre[1]


def _without(count: int, rejected: list[int]) -> list[int]:
    """The positions up to ``count`` less the (few, ascending) ``rejected`` ones."""
    positions: list[int] = []
    start = 0
    for position in rejected:
        positions += range(start, position)
        start = position + 1
    positions += range(start, count)
    return positions


def batch_id_of(batch_index: int) -> str:
    return f"batch-{batch_index}"


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
        self._processing = Processing(
            continue_on_error=continue_on_error, max_retries=max_retries, retry_delay=retry_delay
        )
        self._settler = Settler(
            self.hooks.after_process, emitter, continue_on_error=continue_on_error
        )
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
        invalid = is_invalid(errors)
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
        if self._plain and not duplicates and checked is not None:
            settled, rejected = yield from self._prepare_plain(
                batch, columns, checked, contexts, stopped
            )
        else:
            settled, rejected = yield from self._prepare_each(
                batch, columns, checked, contexts, stopped, duplicates
            )

        # Phase B: the processor over every ready record.
        ready = _without(len(settled), rejected)
        troubled: dict[int, Ready] = {}  # positions whose processor call failed at least once
        if isinstance(processor, BatchProcessor):
            records = [ready_of(position, settled[position]) for position in ready]
            troubled = {r.position: r for r in records}
            attempted = yield from self._processing.call_batch(processor, records, stopped, lease)
        else:
            attempted = yield from self._processing.call_each(
                processor, settled, ready, troubled, lease, deadline
            )
        if attempted < len(ready):  # the time budget ran out or the lease was lost
            del settled[ready[attempted] :]

        # Phase C: after_process, events and the outcome, in source order.
        return (yield from self._settler.settle(batch, columns, settled, troubled, size, rejected))

    def _prepare_plain(
        self,
        batch: ReceivedBatch,
        columns: list[str],
        checked: list[Checked | None],
        contexts: Callable[[int], ProcessingContext],
        stopped: Callable[[], bool],
    ) -> Flow[tuple[list[Settled], list[int]]]:
        """Phase A where nothing runs before the processor (no hooks, checker
        or duplicates): the records the fast path accepted are ready as they
        are, with no work per record in Python; the others (parse failures,
        invalid or warned rows) go through ``_prepare`` one by one, the stop
        conditions looked at before each. Returns the settled entries and the
        positions of the failed ones."""
        first = batch.first_index
        contexts_of = batch_contexts(contexts, first, len(checked))
        odd = _odd_positions(checked, bool(batch.failures))
        value_of: Callable[[Any], Any] = _value_of if batch.failures else itemgetter(0)
        settled: list[Settled] = list(zip(contexts_of, map(value_of, checked)))  # noqa: B905
        rejected: list[int] = []
        for position in odd:
            if stopped():
                del settled[position:]
                break
            ctx = contexts_of[position]
            try:
                item = yield from self._prepare(
                    Row(batch, columns, position), checked[position], None, ctx
                )
            except Interrupted:
                del settled[position:]
                break  # the lease is marked: phase B starts nothing
            settled[position] = (ctx, item)
            if isinstance(item, ProcessedRecord):
                rejected.append(position)
                if not self.continue_on_error:
                    del settled[position + 1 :]
                    break
        return settled, rejected

    def _prepare_each(
        self,
        batch: ReceivedBatch,
        columns: list[str],
        checked: list[Checked | None] | None,
        contexts: Callable[[int], ProcessingContext],
        stopped: Callable[[], bool],
        duplicates: Duplicates | None,
    ) -> Flow[tuple[list[Settled], list[int]]]:
        """Phase A record by record (hooks, a checker or duplicates to run);
        returns the settled entries and the positions of the failed ones."""
        settled: list[Settled] = []
        rejected: list[int] = []
        first = batch.first_index
        for position in range(len(batch)):
            if stopped():
                break
            pre = None if checked is None else checked[position]
            ctx = contexts(first + position)
            dups = None if duplicates is None else duplicates.get(position)
            try:
                item = yield from self._prepare(Row(batch, columns, position), pre, dups, ctx)
            except Interrupted:
                break  # the lease is marked: phase B starts nothing
            settled.append((ctx, item))
            if isinstance(item, ProcessedRecord):
                rejected.append(position)
                if not self.continue_on_error:
                    break
        return settled, rejected

    def _check_batch(self, batch: ReceivedBatch, columns: list[str]) -> list[Checked | None] | None:
        """Step 5 for the whole batch at once (without a schema: the records
        decoded at once), unless a before_validate hook must see each record first."""
        if self.hooks.before_validate is not None:
            return None
        failures = batch.failures
        positions = [p for p in range(len(batch)) if p not in failures] if failures else None
        raw_rows = batch.raw_rows if positions is None else [batch.raw_rows[p] for p in positions]
        if self.validator is None:
            results = self._pass_through.check(columns, raw_rows)
        else:
            results = self.validator.check_raw_rows(columns, raw_rows)
        if positions is None:
            return list(results)
        checked: list[Checked | None] = [None] * len(batch)
        for position, result in zip(positions, results, strict=True):
            checked[position] = result
        return checked

    def _prepare(
        self,
        row: Row,
        pre: Checked | None,
        duplicates: list[tuple[str, int]] | None,
        ctx: ProcessingContext,
    ) -> Flow[ProcessedRecord | Ready]:
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
                    return hook_failed(index, raw, raw, "before_validate", exc)
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
        if self.duplicate_checker is not None and not is_invalid(errors):
            errors = yield from self._check_duplicate(parsed, errors, ctx)
        result = self._record(index, raw, (parsed, errors))
        if hooks.after_validate is not None:
            try:
                result = yield Call(hooks.after_validate, (result, ctx))
            except Exception as exc:
                return hook_failed(index, raw, result.parsed, "after_validate", exc)
            status = "invalid" if is_invalid(result.errors) else "valid"
            if status != result.status:
                result = msgspec.structs.replace(result, status=status)
        if result.status == "invalid":
            return result
        parsed = result.parsed
        if hooks.before_process is not None:
            try:
                parsed = yield Call(hooks.before_process, (parsed, ctx))
            except Exception as exc:
                return hook_failed(index, raw, parsed, "before_process", exc)
        return Ready(row.position, parsed, ctx, result.errors)

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

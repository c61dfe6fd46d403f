"""The record pipeline: processor, retries, hooks, continue_on_error, events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redisbatch import (
    DistributedImport,
    Field,
    Hooks,
    IterableSource,
    ProcessedRecord,
    ProcessingContext,
    Schema,
)
from redisbatch._codec import StoredBatch, decode_batch, encode_batch
from redisbatch._effects import Call, CallEach, Sleep
from redisbatch._events import EventEmitter
from redisbatch._inflight import Contexts, contexts_of
from redisbatch._pipeline import RecordPipeline
from redisbatch._sync import _call_each

Make = Callable[..., DistributedImport]


def drive(flow: Any) -> tuple[Any, list[float]]:
    """Runs a pipeline flow by hand: calls user code, records sleeps instead of sleeping."""
    sleeps: list[float] = []
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            effect = flow.throw(throw) if throw else flow.send(send)
        except StopIteration as stop:
            return stop.value, sleeps
        send, throw = None, None
        if isinstance(effect, Sleep):
            sleeps.append(effect.seconds)
        elif isinstance(effect, CallEach):
            send = _call_each(effect)
        elif isinstance(effect, Call):
            try:
                send = effect.fn(*effect.args)
            except Exception as exc:
                throw = exc
        else:
            raise AssertionError(f"unexpected effect {effect}")


one_record = decode_batch(encode_batch(StoredBatch(0, [[1]])))


def context(index: int) -> ProcessingContext:
    return ProcessingContext("j", "batch-0", 0, index, 1, "w", f"j:{index}")


def test_retries_back_off_exponentially_without_real_sleeps() -> None:
    """Attempt k waits retry_delay * 2**(k-1); retried events carry attempt numbers."""
    emitter = EventEmitter()
    retried: list[Any] = []
    emitter.on("record:retried", retried.append)
    pipeline = RecordPipeline(
        None, hooks=None, continue_on_error=True, max_retries=3, retry_delay=0.5, emitter=emitter
    )
    calls = 0

    def flaky(record: Any, ctx: ProcessingContext) -> None:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionError(f"try {calls}")

    outcome, sleeps = drive(pipeline.run(one_record, ["a"], context, flaky, None))
    assert sleeps == [0.5, 1.0, 2.0]
    assert outcome.processed == 1 and outcome.failed == []
    assert [(e.attempt, e.max_retries, e.error) for e in retried] == [
        (1, 3, "try 1"),
        (2, 3, "try 2"),
        (3, 3, "try 3"),
    ]


def test_exhausted_retries_fail_the_record() -> None:
    """After max_retries the record fails with processing_error and its retry count."""
    pipeline = RecordPipeline(
        None,
        hooks=None,
        continue_on_error=True,
        max_retries=2,
        retry_delay=1.0,
        emitter=EventEmitter(),
    )

    def always(record: Any, ctx: ProcessingContext) -> None:
        raise ValueError("db down")

    outcome, sleeps = drive(pipeline.run(one_record, ["a"], context, always, None))
    assert sleeps == [1.0, 2.0]
    [failed] = outcome.failed
    assert (failed.status, failed.processing_error, failed.retry_count) == ("failed", "db down", 2)


def test_processor_receives_coerced_records_and_context(make_import: Make) -> None:
    """The processor gets the coerced record and a context naming job, batch and index."""
    schema = Schema([Field("n", "integer", required=True), Field("ok", "boolean")])
    di = make_import(schema, batch_size=2)
    job = di.prepare(IterableSource([{"n": "1", "ok": "yes"}, {"n": 2}, {"n": "3"}])).job_id
    seen: list[tuple[Any, ProcessingContext]] = []
    di.run_worker(job, lambda r, c: seen.append((r, c)), "worker-1")
    assert [r for r, _ in seen] == [
        {"n": 1, "ok": True},
        {"n": 2, "ok": None},
        {"n": 3, "ok": None},
    ]
    ctx = seen[2][1]
    assert (ctx.job_id, ctx.batch_index, ctx.record_index, ctx.total_records) == (job, 1, 2, 3)
    assert (ctx.worker_id, ctx.idempotency_key, ctx.batch_id) == ("worker-1", f"{job}:2", "batch-1")


def test_continue_on_error_false_stops_the_batch(make_import: Make) -> None:
    """The first failure fails its batch; later records of it are skipped; others go on."""
    di = make_import(Schema([Field("n", "integer")]), batch_size=3, continue_on_error=False)
    job = di.prepare(IterableSource({"n": v} for v in ["1", "x", "3", "4", "5", "6"])).job_id
    processed: list[int] = []
    failed_events: list[Any] = []
    di.on("batch:failed", failed_events.append)
    di.run_worker(job, lambda r, c: processed.append(r["n"]))
    assert processed == [1, 4, 5, 6]
    status = di.status(job)
    assert status is not None
    assert (status.state, status.processed_records, status.failed_records) == ("FAILED", 4, 1)
    assert [e.batch_index for e in failed_events] == [0]
    assert "n must be an integer" in failed_events[0].error
    [record] = di.failed_records(job)
    assert (record.index, record.status, record.errors[0].code) == (1, "invalid", "TYPE_MISMATCH")


def test_hooks_run_in_order_and_shape_the_record(make_import: Make) -> None:
    """before_validate, after_validate, before_process, after_process see and change records."""
    order: list[str] = []

    def before_validate(record: dict[str, Any], ctx: Any) -> dict[str, Any]:
        order.append("before_validate")
        return {**record, "n": record["n"].strip()}

    def after_validate(result: ProcessedRecord, ctx: Any) -> ProcessedRecord:
        order.append("after_validate")
        return result

    def before_process(record: dict[str, Any], ctx: Any) -> dict[str, Any]:
        order.append("before_process")
        return {**record, "tag": "x"}

    def after_process(result: ProcessedRecord, ctx: Any) -> None:
        order.append(f"after_process:{result.status}")

    hooks = Hooks(before_validate, after_validate, before_process, after_process)
    di = make_import(Schema([Field("n", "integer")]), hooks=hooks)
    job = di.prepare(IterableSource([{"n": " 5 "}])).job_id
    got: list[Any] = []

    def processor(record: Any, ctx: Any) -> None:
        order.append("processor")
        got.append(record)

    di.run_worker(job, processor)
    assert got == [{"n": 5, "tag": "x"}]
    assert order == [
        "before_validate",
        "after_validate",
        "before_process",
        "processor",
        "after_process:processed",
    ]


@pytest.mark.parametrize(
    "hook", ["before_validate", "after_validate", "before_process", "after_process"]
)
def test_a_failing_hook_fails_the_record(make_import: Make, hook: str) -> None:
    """A hook that raises fails the record with '<hook> hook failed: <message>'."""

    def boom(*args: Any) -> Any:
        raise RuntimeError("kaput")

    di = make_import(hooks=Hooks(**{hook: boom}))
    job = di.prepare(IterableSource([{"n": 1}])).job_id
    summary = di.run_worker(job, lambda r, c: None)
    assert (summary.processed, summary.failed) == (0, 1)
    [record] = di.failed_records(job)
    assert record.status == "failed"
    assert record.processing_error == f"{hook} hook failed: kaput"


def test_after_validate_can_invalidate_a_record(make_import: Make) -> None:
    """after_validate may add errors; the status is re-derived from them."""
    from redisbatch._validate import error

    def reject(result: ProcessedRecord, ctx: Any) -> ProcessedRecord:
        extra = error("n", "CUSTOM_VALIDATION", "not today", result.parsed["n"])
        import msgspec

        return msgspec.structs.replace(result, errors=[*result.errors, extra])

    di = make_import(hooks=Hooks(after_validate=reject))
    job = di.prepare(IterableSource([{"n": 1}])).job_id
    assert di.run_worker(job, lambda r, c: None).failed == 1
    [record] = di.failed_records(job)
    assert record.status == "invalid" and record.errors[0].message == "not today"


def test_events_of_a_batch(make_import: Make) -> None:
    """A batch emits claimed, started, per-record events and completed, in that order."""
    di = make_import(Schema([Field("n", "integer")]), batch_size=3)
    job = di.prepare(IterableSource({"n": v} for v in ["1", "x", "3"])).job_id
    events: list[Any] = []
    di.on_any(events.append)
    di.process_worker_batch(job, lambda r, c: None, "w")
    assert [e.type for e in events] == [
        "batch:claimed",
        "batch:started",
        "record:processed",
        "record:failed",
        "record:processed",
        "batch:completed",
        "job:completed",
    ]
    completed = events[5]
    assert (completed.processed_count, completed.failed_count, completed.total_count) == (2, 1, 3)
    summary = events[6].summary
    assert (summary.total, summary.processed, summary.failed, summary.skipped) == (3, 2, 1, 0)
    assert summary.state == "COMPLETED" and summary.elapsed_ms >= 0
    assert events[3].record.errors[0].code == "TYPE_MISMATCH"
    di.off_any(events.append)


def test_a_raising_event_handler_does_not_break_processing(make_import: Make) -> None:
    """Handlers that raise are ignored."""
    di = make_import()

    def bad(event: Any) -> None:
        raise RuntimeError("handler bug")

    di.on("record:processed", bad).on("job:completed", bad)
    job = di.prepare(IterableSource([{"n": 1}])).job_id
    assert di.run_worker(job, lambda r, c: None).processed == 1


def test_without_a_schema_records_pass_through_as_given(make_import: Make) -> None:
    """No schema: each record reaches the processor with exactly its own keys."""
    di = make_import(batch_size=10)
    rows = [{"a": 1}, {"b": "x", "a": None}, {"c": [1, 2]}, {"a": 2, "b": "y", "c": 3}]
    job = di.prepare(IterableSource(rows)).job_id
    seen: list[dict[str, Any]] = []
    assert di.run_worker(job, lambda r, c: seen.append(r)).processed == 4
    assert seen == rows


PLAIN_SCHEMA = Schema(
    [
        Field("email", "email", required=True),
        Field("n", "integer"),
        Field("tags", "array", separator=";"),
    ]
)


@st.composite
def plain_batches(draw: st.DrawFn) -> tuple[StoredBatch, set[int], bool, int]:
    """A batch of mostly valid rows with invalid values, parse failures and
    empty arrays anywhere; which records the processor fails on; the policy."""
    count = draw(st.integers(1, 80))
    rows: list[list[Any]] = []
    failures: dict[int, tuple[str, dict[str, Any]]] = {}
    for i in range(count):
        kind = draw(st.sampled_from(["ok", "ok", "ok", "bad", "parse", "warn"]))
        tags = draw(st.sampled_from(["", "a;b", " c ", ";"]))
        if kind == "parse":
            failures[i] = ("2 columns, expected 3", {"email": f"u{i}@b.co"})
            rows.append([])
        elif kind == "bad":
            rows.append([f"u{i}.b.co", str(i), tags])
        elif kind == "warn":  # goes field by field, valid: " 7 " is not an integer for msgspec
            rows.append([f"u{i}@b.co", f" {i} ", tags])
        else:
            rows.append([f"u{i}@b.co", str(i), tags])
    fails = set(draw(st.lists(st.integers(0, count - 1), max_size=4)))
    return (
        StoredBatch(draw(st.integers(0, 10**6)), rows, failures, [3]),
        fails,
        draw(st.booleans()),
        draw(st.integers(0, 1)),
    )


@settings(max_examples=200, deadline=None)
@given(plain_batches())
def test_a_plain_batch_runs_as_the_record_by_record_pipeline(
    case: tuple[StoredBatch, set[int], bool, int],
) -> None:
    """Without hooks or listeners (the plain path), a batch gives the processor the
    same records and contexts, and the same outcome and failed events, as the
    record-by-record path (forced by an identity before_process hook and a
    record:processed listener)."""
    stored, fails, continue_on_error, max_retries = case
    batch = decode_batch(encode_batch(stored))

    def run(hooks: Hooks | None, listen: bool) -> tuple[Any, list[Any], list[Any]]:
        emitter = EventEmitter()
        failed: list[Any] = []
        emitter.on("record:failed", lambda e: failed.append((e.record_index, e.error, e.record)))
        if listen:
            emitter.on("record:processed", lambda e: None)
        pipeline = RecordPipeline(
            PLAIN_SCHEMA,
            hooks=hooks,
            continue_on_error=continue_on_error,
            max_retries=max_retries,
            retry_delay=0,
            emitter=emitter,
        )
        calls: list[Any] = []

        def processor(record: dict[str, Any], ctx: ProcessingContext) -> None:
            calls.append((dict(record), ctx))
            if ctx.record_index - batch.first_index in fails:
                raise ValueError(f"no {ctx.record_index}")

        def contexts(index: int) -> ProcessingContext:
            return ProcessingContext("j", "batch-3", 3, index, 10**7, "w", f"j:{index}")

        outcome, _ = drive(pipeline.run(batch, ["email", "n", "tags"], contexts, processor, None))
        return outcome, calls, failed

    plain = run(None, listen=False)
    each = run(Hooks(before_process=lambda record, ctx: record), listen=True)
    assert plain == each


@pytest.mark.parametrize("indexes", [(), (7, 3, 90, 4)])
def test_a_batch_contexts_made_one_by_one_or_at_once_agree(indexes: tuple[int, ...]) -> None:
    """A batch's contexts, one call per record or a span at once, carry the
    record's source index (a redriven batch's through its indexes) and its key."""
    contexts = Contexts("j", "batch-2", 2, 100, "w", indexes)
    first = 0 if indexes else 40
    expected = [
        ProcessingContext("j", "batch-2", 2, index, 100, "w", f"j:{index}")
        for index in (indexes or range(40, 44))
    ]
    assert [contexts(first + p) for p in range(4)] == expected
    assert contexts.span(first, 4) == expected
    assert contexts_of(contexts, first, 4) == expected
    assert contexts_of(contexts.__call__, first, 4) == expected

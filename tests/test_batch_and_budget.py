"""Batch processors and time budgets, on both facades."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from redisbatch import (
    BatchContext,
    DistributedImport,
    Field,
    Hooks,
    IterableSource,
    ProcessedRecord,
    Schema,
    batch_processor,
)

Make = Callable[..., DistributedImport]
SCHEMA = Schema([Field("n", "integer", required=True)])


def numbers(count: int, bad: tuple[int, ...] = ()) -> IterableSource:
    return IterableSource({"n": "x" if i in bad else str(i)} for i in range(count))


def test_batch_processor_gets_valid_records_once_per_batch(make_import: Make) -> None:
    """One call per batch with the valid records in order; a mapping fails some of them."""
    calls: list[tuple[list[int], BatchContext]] = []

    @batch_processor
    def save(records: list[dict[str, Any]], ctx: BatchContext) -> dict[int, str] | None:
        calls.append(([r["n"] for r in records], ctx))
        return {ctx.record_indexes[0]: "constraint violated"} if ctx.batch_index == 1 else None

    di = make_import(SCHEMA, batch_size=4)
    job = di.prepare(numbers(10, bad=(2,))).job_id
    summary = di.run_worker(job, save)
    assert [c[0] for c in calls] == [[0, 1, 3], [4, 5, 6, 7], [8, 9]]
    ctx = calls[1][1]
    assert (ctx.batch_index, ctx.record_indexes, ctx.total_records) == (1, [4, 5, 6, 7], 10)
    assert ctx.idempotency_key == f"{job}:batch:1" and ctx.job_id == job
    assert (summary.processed, summary.failed) == (8, 2)
    failed = {r.index: r for r in di.failed_records(job)}
    assert failed[4].processing_error == "constraint violated" and failed[4].status == "failed"
    assert failed[2].errors[0].code == "TYPE_MISMATCH"


def test_batch_processor_retries_then_fails_every_record(make_import: Make) -> None:
    """An exception fails the call; it is retried max_retries times, then all its records fail."""
    attempts: list[int] = []
    retried: list[Any] = []

    @batch_processor
    def flaky(records: list[Any], ctx: BatchContext) -> None:
        attempts.append(len(records))
        if ctx.batch_index == 0 or len(attempts) < 3:
            raise ConnectionError("db away")

    di = make_import(SCHEMA, batch_size=3, max_retries=2)
    di.on("record:retried", retried.append)
    job = di.prepare(numbers(6)).job_id
    summary = di.run_worker(job, flaky)
    assert attempts == [3, 3, 3, 3]  # batch 0: three tries; batch 1 succeeds at once
    assert (summary.processed, summary.failed) == (3, 3)
    # Events come in source order: each record's retries, record after record.
    assert [(e.record_index, e.attempt) for e in retried] == [
        (0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2),
    ]  # fmt: skip
    assert {r.processing_error for r in di.failed_records(job)} == {"db away"}
    assert {r.retry_count for r in di.failed_records(job)} == {2}


def test_hooks_run_around_a_batch_processor(make_import: Make) -> None:
    """before_process runs per record before the call, after_process per succeeded record."""
    seen: list[str] = []

    def before(record: dict[str, Any], ctx: Any) -> dict[str, Any]:
        seen.append(f"before {record['n']}")
        return {**record, "tagged": True}

    def after(result: ProcessedRecord, ctx: Any) -> None:
        seen.append(f"after {result.parsed['n']}")

    @batch_processor
    def save(records: list[dict[str, Any]], ctx: BatchContext) -> dict[int, str]:
        seen.append(f"call {[r['n'] for r in records]} {all(r['tagged'] for r in records)}")
        return {1: "no"}

    di = make_import(SCHEMA, batch_size=3, hooks=Hooks(before_process=before, after_process=after))
    job = di.prepare(numbers(3)).job_id
    di.run_worker(job, save)
    assert seen == ["before 0", "before 1", "before 2", "call [0, 1, 2] True", "after 0", "after 2"]


def test_batch_processor_with_continue_on_error_false(make_import: Make) -> None:
    """The first failed record fails the batch; the records after it are skipped."""

    @batch_processor
    def save(records: list[dict[str, Any]], ctx: BatchContext) -> dict[int, str]:
        return {ctx.record_indexes[1]: "bad row"} if ctx.batch_index == 0 else {}

    di = make_import(SCHEMA, batch_size=4, continue_on_error=False)
    job = di.prepare(numbers(8)).job_id
    di.run_worker(job, save)
    status = di.status(job)
    assert status is not None
    assert status.state == "FAILED"
    assert (status.processed_records, status.failed_records) == (5, 1)  # 0, then 4-7
    assert [r.index for r in di.failed_records(job)] == [1]


def test_a_time_budget_hands_the_rest_of_a_batch_back(make_import: Make) -> None:
    """Budgets ending mid-batch twice, then a worker without one: exact counts, each
    record in exactly one committed batch, hand-backs not counted as attempts."""
    calls: list[int] = []

    def slow(record: dict[str, Any], ctx: Any) -> None:
        calls.append(ctx.record_index)
        time.sleep(0.02)

    di = make_import(SCHEMA, batch_size=40, max_batch_attempts=1)
    job = di.prepare(numbers(40, bad=(30,))).job_id
    first = di.process_worker_batch(job, slow, "lambda-1", time_budget=0.2)
    assert first.claimed and first.accepted and not first.job_complete
    assert 0 < first.processed_count < 40
    second = di.process_worker_batch(job, slow, "lambda-2", time_budget=0.2)
    assert second.accepted and second.batch_index == 0 and not second.job_complete
    status = di.status(job)
    assert status is not None and status.state == "PROCESSING"
    assert status.processed_records == first.processed_count + second.processed_count
    rest = di.run_worker(job, slow, "container")
    assert rest.finalized
    status = di.status(job)
    assert status is not None
    assert (status.state, status.processed_records, status.failed_records) == ("COMPLETED", 39, 1)
    assert (status.completed_batches, status.failed_batches) == (1, 0)
    assert sorted(calls) == [i for i in range(40) if i != 30], "each record processed once"
    [bad] = di.failed_records(job)
    assert bad.index == 30


def test_run_worker_stops_claiming_when_the_budget_is_spent(make_import: Make) -> None:
    """run_worker with a budget returns once it is spent, leaving the rest for others."""
    di = make_import(SCHEMA, batch_size=5)
    job = di.prepare(numbers(200)).job_id
    started = time.monotonic()
    summary = di.run_worker(job, lambda r, c: time.sleep(0.005), time_budget=0.3)
    assert time.monotonic() - started < 2.0
    assert 0 < summary.processed < 200 and not summary.finalized
    rest = di.run_worker(job, lambda r, c: None)
    assert summary.processed + rest.processed == 200 and rest.finalized


def test_invalid_time_budget_is_refused(make_import: Make) -> None:
    di = make_import()
    with pytest.raises(ValueError, match="time_budget"):
        di.process_worker_batch("j", lambda r, c: None, "w", time_budget=-1)

"""Exercises the public API for the type checker: ``mypy tests/typing`` must pass.

Not collected by pytest (no test functions); CI type-checks it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec
import redis
import redis.asyncio

from redisbatch import (
    AsyncDistributedImport,
    BatchContext,
    BatchResult,
    BytesSource,
    CsvParser,
    DistributedImport,
    DuplicateResult,
    Field,
    FieldCheck,
    FileSource,
    Hooks,
    IterableSource,
    JobNotFoundError,
    JobStatus,
    PrepareResult,
    PreviewResult,
    ProcessedRecord,
    ProcessingContext,
    Schema,
    WorkerSummary,
    batch_processor,
    generate_template,
)


class User(msgspec.Struct):
    email: str
    age: int = 0


def positive(value: Any) -> FieldCheck:
    return FieldCheck(value > 0, "must be positive", severity="warning")


def save(record: dict[str, Any], ctx: ProcessingContext) -> None:
    print(ctx.idempotency_key, record)


async def save_async(record: dict[str, Any], ctx: ProcessingContext) -> None:
    await asyncio.sleep(0)


@batch_processor
def save_many(records: list[dict[str, Any]], ctx: BatchContext) -> Mapping[int, str] | None:
    return {ctx.record_indexes[0]: "rejected"} if not records else None


def not_seen(record: Any, ctx: ProcessingContext) -> DuplicateResult:
    return DuplicateResult(False)


def sync_api(client: redis.Redis) -> None:
    schema = Schema(
        [Field("email", "email", required=True), Field("age", "integer", validator=positive)],
        unique_fields=["email"],
    )
    di = DistributedImport(
        client,
        schema,
        batch_size=500,
        max_retries=2,
        hooks=Hooks(before_process=lambda record, ctx: record),
        duplicate_checker=not_seen,
    )
    job: PrepareResult = di.prepare(FileSource("users.csv"), CsvParser(delimiter=";"))
    di.prepare(IterableSource([{"email": "a@b.co"}]), job_id="fixed")
    result: BatchResult = di.process_worker_batch(job.job_id, save, "w1", time_budget=30.0)
    summary: WorkerSummary = di.run_worker(job.job_id, save_many, wait=False)
    try:
        done = di.run_worker("maybe", save, wait_for_job=30.0, handle_signals=True)
    except JobNotFoundError as exc:
        missing: str = exc.job_id
        print(missing)
    else:
        final_state: str | None = done.state
        print(final_state == "COMPLETED")
    status: JobStatus | None = di.status(job.job_id)
    failed: list[ProcessedRecord] = list(di.failed_records(job.job_id))
    preview: PreviewResult = di.preview(BytesSource(b"email\na@b.co\n"), CsvParser())
    count: int = di.count(BytesSource("email\n"), CsvParser())
    flags: list[bool] = [di.pause("j"), di.resume("j"), di.abort("j"), di.delete("j")]
    di.on("job:completed", lambda event: print(event.summary)).on_any(print)
    DistributedImport(client, Schema.from_struct(User))
    print(result, summary, status, failed, preview, count, flags, generate_template(schema, 2))


async def async_api(client: redis.asyncio.Redis) -> None:
    di = AsyncDistributedImport(client, None, concurrency=50, batch_size=100)
    job = await di.prepare(IterableSource([{"n": 1}]))
    summary: WorkerSummary = await di.run_worker(job.job_id, save_async, time_budget=10)
    waited: WorkerSummary = await di.run_worker(
        job.job_id, save, wait_for_job=5, handle_signals=True
    )
    state: str | None = waited.state
    lookup: type[LookupError] = JobNotFoundError
    print(state, lookup)
    batch: BatchResult = await di.process_worker_batch(job.job_id, save, "w2")
    failed = [record async for record in di.failed_records(job.job_id)]
    status: JobStatus | None = await di.status(job.job_id)
    released: bool = await di.release_batch(job.job_id, "batch-0", "w2")
    print(summary, batch, failed, status, released, await di.reclaim_stale_batches(job.job_id))

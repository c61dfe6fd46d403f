"""Exercises ``redisbatch.testing`` for the type checker, as a user's tests use it.

Not collected by pytest (no test functions); CI type-checks it.
"""

from __future__ import annotations

from typing import Any

from redisbatch import (
    BatchContext,
    DistributedImport,
    Field,
    JobStatus,
    ProcessedRecord,
    ProcessingContext,
    Schema,
    batch_processor,
)
from redisbatch.testing import Crash, ImportFactory, JobRun, fake_redis, run_job

schema = Schema([Field("email", "email", required=True)])


def save(record: dict[str, Any], ctx: ProcessingContext) -> None:
    pass


@batch_processor
def save_all(records: list[dict[str, Any]], ctx: BatchContext) -> dict[int, str] | None:
    return None


def uses_the_fixture(redisbatch_import: ImportFactory) -> int:
    di: DistributedImport = redisbatch_import(schema, batch_size=10)
    status: JobStatus | None = di.status("job")
    return 0 if status is None else status.processed_records


def uses_run_job() -> str:
    rows = [{"email": "a@example.com"}]
    run: JobRun = run_job(save, rows, schema=schema, workers=2, crashes=[Crash(batch=0, after=1)])
    failed: list[ProcessedRecord] = run.failed
    calls: dict[int, int] = run.calls
    again = run_job(save_all, rows, client=fake_redis(), batch_size=5, max_retries=1)
    return f"{run.state} {len(failed)} {calls} {again.status.state} {run.crashes}"

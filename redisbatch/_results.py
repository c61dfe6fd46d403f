"""Immutable result and record types returned to users (API contract, section 2)."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "BatchContext",
    "BatchResult",
    "JobStatus",
    "JobSummary",
    "PrepareResult",
    "PreviewResult",
    "ProcessedRecord",
    "ProcessingContext",
    "ValidationError",
    "WorkerSummary",
]


class PrepareResult(msgspec.Struct, frozen=True):
    """What ``prepare`` stored."""

    job_id: str
    total_records: int
    total_batches: int


class BatchResult(msgspec.Struct, frozen=True):
    """The outcome of one ``process_worker_batch`` call."""

    claimed: bool
    job_id: str
    batch_id: str | None
    batch_index: int | None
    processed_count: int
    failed_count: int
    job_complete: bool
    accepted: bool
    reason: str | None


class WorkerSummary(msgspec.Struct, frozen=True):
    """What one ``run_worker`` call did; counts only accepted batches.

    ``state`` is the job's state when the worker returned (``"COMPLETED"``,
    ``"FAILED"``, ``"ABORTED"``, or, after ``wait=False`` or a spent time
    budget, ``"PROCESSING"``/``"PREPARING"``/``"PAUSED"``); None if the job
    was deleted meanwhile (or lost by a Redis restart without persistence).
    ``finalized`` is True for the one worker whose commit finished the job.
    """

    worker_id: str
    batches: int
    processed: int
    failed: int
    finalized: bool
    state: str | None = None


class JobStatus(msgspec.Struct, frozen=True):
    """A consistent snapshot of a job."""

    job_id: str
    state: str
    total_records: int
    total_batches: int
    pending_batches: int
    processing_batches: int
    completed_batches: int
    failed_batches: int
    processed_records: int
    failed_records: int
    is_complete: bool
    created_at: float
    started_at: float | None
    completed_at: float | None
    error: str | None
    attempt: int = 1  # 1 for the first run; retry_failed starts the next
    rate: float | None = None  # records settled per second over the last minute of commits
    eta: float | None = None  # seconds; None while unknown, 0.0 once the job is final
    workers: int = 0  # workers heard of (claim, heartbeat, commit) within the stale timeout


class JobSummary(msgspec.Struct, frozen=True):
    """The totals carried by ``job:completed``."""

    total: int
    processed: int
    failed: int
    skipped: int
    elapsed_ms: float
    state: str


class ValidationError(msgspec.Struct, frozen=True):
    """One problem with one field of one record."""

    field: str
    message: str
    code: str
    category: str
    value: Any
    severity: str = "error"
    suggestion: str | None = None
    metadata: dict[str, Any] | None = None


class ProcessedRecord(msgspec.Struct, frozen=True):
    """A record and what became of it."""

    index: int
    raw: dict[str, Any]
    parsed: Any
    status: str
    errors: list[ValidationError]
    processing_error: str | None
    retry_count: int
    line: int | None = None  # the source line the record starts on (CSV, NDJSON), 1-based


class PreviewResult(msgspec.Struct, frozen=True):
    """The first records of a source, validated without storing anything."""

    valid_records: list[ProcessedRecord]
    invalid_records: list[ProcessedRecord]
    total_sampled: int
    columns: list[str]


class ProcessingContext(msgspec.Struct, frozen=True, gc=False):
    """Given to the processor and to every hook, once per record."""

    job_id: str
    batch_id: str
    batch_index: int
    record_index: int
    total_records: int
    worker_id: str
    idempotency_key: str


class BatchContext(msgspec.Struct, frozen=True):
    """Given to a batch processor, once per batch."""

    job_id: str
    batch_id: str
    batch_index: int
    worker_id: str
    total_records: int
    record_indexes: list[int]
    idempotency_key: str

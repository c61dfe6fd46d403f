"""Immutable result and record types returned to users (msgspec Structs, attribute access)."""

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
    """What ``prepare`` stored.

    ``job_id``: the job's id (the one given, else a new uuid4 hex).
    ``total_records``: records stored (after ``skip_empty_rows``); fewer than
    the source holds when the job was aborted while preparing.
    ``total_batches``: batches stored.
    """

    job_id: str
    total_records: int
    total_batches: int


class BatchResult(msgspec.Struct, frozen=True):
    """The outcome of one ``process_worker_batch`` call.

    ``claimed``: a batch was claimed. When False, ``reason`` says why:
    ``"NO_PENDING_BATCHES"`` (nothing claimable now), ``"JOB_NOT_FOUND"``, or
    ``"JOB_NOT_PROCESSING"`` (paused, aborted, finished or failed), and
    ``batch_id``/``batch_index`` are None.
    ``job_id``: the job asked for. ``batch_id``/``batch_index``: the batch
    claimed (indexes are 0-based).
    ``processed_count``/``failed_count``: records of the batch that succeeded
    and that failed (invalid or failed in processing).
    ``accepted``: the commit counted. False when the batch was taken from
    this worker (reclaimed as stale, or released) before it committed: its
    counts were discarded and nothing was counted twice. Always False when
    ``claimed`` is False.
    ``job_complete``: this call's commit finalized the job; True for exactly
    one call across all workers of a job.
    ``reason``: see ``claimed``; for a claimed batch whose commit was refused,
    why it was; None when the batch counted.
    """

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

    ``worker_id``: the id the worker ran under. ``batches``: batches it
    committed and that counted. ``processed``/``failed``: their records that
    succeeded and that failed.

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
    """A consistent snapshot of a job, as ``status(job_id)`` returns it.

    ``job_id``: the job. ``state``: one of ``"PREPARING"`` (``prepare`` is
    still storing batches; workers may already run), ``"PROCESSING"``,
    ``"PAUSED"``, ``"COMPLETED"``, ``"FAILED"`` (a batch failed, a failure
    threshold was crossed, or the source could not be read), ``"ABORTED"``.
    ``total_records``/``total_batches``: what the job holds (while
    PREPARING, what has been stored so far).
    ``pending_batches``, ``processing_batches``, ``completed_batches``,
    ``failed_batches``: batches waiting to be claimed, held by a worker,
    committed, and failed (``continue_on_error=False`` or dead-lettered).
    ``processed_records``/``failed_records``: records that succeeded and
    that failed (invalid or failed in processing).
    ``is_complete``: True in COMPLETED, FAILED and ABORTED.
    ``created_at``, ``started_at`` (first claim) and ``completed_at`` (when it
    became final): float epoch seconds; the last two None until then.
    ``error``: why the job FAILED when it was not a batch (e.g. the source
    could not be read), else None.
    ``attempt``: 1 for the first run, one more per ``retry_failed``.
    ``rate``: records settled per second over the last minute of commits;
    None before the first commit. ``eta``: estimated seconds to the end;
    None while unknown, 0.0 once the job is final. ``workers``: workers
    heard of (claim, heartbeat, commit) within the stale timeout; 0 when
    none is active.
    """

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
    """The totals carried by the ``job:completed`` event (``JobCompleted.summary``).

    ``total``: the job's records. ``processed``/``failed``: records that
    succeeded and that failed (invalid or failed in processing).
    ``skipped``: ``total - processed - failed``: records never settled (left
    after a failing record with ``continue_on_error=False``, or by an abort).
    ``elapsed_ms``: milliseconds from the job's creation to its end.
    ``state``: the job's final state (``"COMPLETED"`` or ``"FAILED"``).
    """

    total: int
    processed: int
    failed: int
    skipped: int
    elapsed_ms: float
    state: str


class ValidationError(msgspec.Struct, frozen=True):
    """One problem with one field of one record (an item of ``ProcessedRecord.errors``).

    ``field``: the field's name (the column's for ``UNKNOWN_FIELD``; ``"_row"``
    for a ``PARSE_ERROR``). ``message``: what is wrong, for people.
    ``code``: ``REQUIRED``, ``TYPE_MISMATCH``, ``PATTERN_MISMATCH``,
    ``INVALID_CHOICE``, ``OUT_OF_RANGE``, ``INVALID_LENGTH``,
    ``CUSTOM_VALIDATION``, ``UNKNOWN_FIELD``, ``DUPLICATE_VALUE``,
    ``EXTERNAL_DUPLICATE`` or ``PARSE_ERROR``. ``category``: the code's
    family: ``VALIDATION``, ``FORMAT`` (type and pattern), ``CUSTOM``,
    ``DUPLICATE`` or ``PARSE``. ``value``: the offending value.
    ``severity``: ``"error"`` (the record is invalid) or ``"warning"`` (it
    stays valid). ``suggestion``/``metadata``: optional extras, as a
    ``FieldCheck`` returned by a validator gives them.
    """

    field: str
    message: str
    code: str
    category: str
    value: Any
    severity: str = "error"
    suggestion: str | None = None
    metadata: dict[str, Any] | None = None


class ProcessedRecord(msgspec.Struct, frozen=True):
    """A record and what became of it (``failed_records``, ``preview``, hooks).

    ``index``: the 0-based position in the source, counted after empty rows
    are skipped. ``raw``: the record as the source gave it.
    ``parsed``: the record after aliases, transforms and coercion (a dict, or
    a Struct instance with ``Schema.from_struct``).
    ``status``: ``"pending"``, ``"valid"``, ``"invalid"`` (a validation
    error), ``"processed"`` or ``"failed"`` (in processing).
    ``errors``: its ``ValidationError`` list, warnings included.
    ``processing_error``: the processor's or a hook's last error message
    (``"<hook_name> hook failed: ..."`` for a hook), else None.
    ``retry_count``: processor retries spent on it.
    ``line``: the 1-based source line the record starts on, for CSV and
    NDJSON sources; None where the source has no lines.
    """

    index: int
    raw: dict[str, Any]
    parsed: Any
    status: str
    errors: list[ValidationError]
    processing_error: str | None
    retry_count: int
    line: int | None = None  # the source line the record starts on (CSV, NDJSON), 1-based


class PreviewResult(msgspec.Struct, frozen=True):
    """The first records of a source, validated without storing anything.

    ``valid_records``/``invalid_records``: the sampled records by outcome.
    ``total_sampled``: how many records were read (at most ``max_records``).
    ``columns``: the source's column names, after alias resolution.
    """

    valid_records: list[ProcessedRecord]
    invalid_records: list[ProcessedRecord]
    total_sampled: int
    columns: list[str]


class ProcessingContext(msgspec.Struct, frozen=True, gc=False):
    """Given to the processor and to every hook, once per record.

    ``job_id``, ``batch_id``, ``batch_index`` (0-based): where the record
    sits. ``record_index``: its 0-based position in the source.
    ``total_records``: the job's total (not the batch's size).
    ``worker_id``: the worker running it.
    ``idempotency_key``: ``f"{job_id}:{record_index}"``, the same across
    retries and redeliveries. A record may be processed more than once (a
    worker can die after processing and before committing): key the
    processor's writes on it to make them idempotent.
    """

    job_id: str
    batch_id: str
    batch_index: int
    record_index: int
    total_records: int
    worker_id: str
    idempotency_key: str


class BatchContext(msgspec.Struct, frozen=True):
    """Given to a batch processor (see ``batch_processor``), once per batch.

    ``job_id``, ``batch_id``, ``batch_index`` (0-based): the batch.
    ``worker_id``: the worker running it. ``total_records``: the job's
    total. ``record_indexes``: the source indexes of the records passed, in
    the same order (the keys the processor's error mapping uses).
    ``idempotency_key``: ``f"{job_id}:batch:{batch_index}"``, the same
    across retries and redeliveries of the batch.
    """

    job_id: str
    batch_id: str
    batch_index: int
    worker_id: str
    total_records: int
    record_indexes: list[int]
    idempotency_key: str

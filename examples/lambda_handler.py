"""An AWS Lambda-style handler that re-invokes itself until the import is done.

The orchestrator prepares the job (see quickstart.py), then invokes the
function N times asynchronously with ``{"job_id": ...}``. Each invocation
works until its remaining time nears the limit (``time_budget``), then, if
the import is still running, invokes the function once more with the same
event and returns: N chains of invocations, none over the time limit, that
all end once the job is final. A chain never spins: an invocation that finds
the remaining batches held by other workers waits (polls) within its budget
instead of re-invoking at once.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any

import redis

from redisbatch import DistributedImport, ProcessingContext

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
NAMESPACE = os.environ.get("REDISBATCH_NAMESPACE", "example")
#: Seconds kept free at the end of each invocation for committing and re-invoking.
MARGIN = 20.0


@functools.cache
def importer() -> DistributedImport:
    """One facade per container, reused by warm invocations."""
    return DistributedImport(redis.Redis.from_url(REDIS_URL), namespace=NAMESPACE)


def save_record(record: dict[str, Any], ctx: ProcessingContext) -> None:
    """Stands in for your write; idempotent on ctx.idempotency_key (a batch may run twice)."""
    importer().redis.hset(f"{NAMESPACE}:saved", ctx.idempotency_key, repr(sorted(record.items())))


def invoke_async(function_name: str, event: dict[str, Any]) -> None:
    """Invokes the function again without waiting for it (boto3 is in the Lambda runtime)."""
    import boto3  # type: ignore[import-not-found]

    boto3.client("lambda").invoke(
        FunctionName=function_name, InvocationType="Event", Payload=json.dumps(event).encode()
    )


def handler(
    event: dict[str, Any],
    context: Any,
    invoke: Callable[[str, dict[str, Any]], None] = invoke_async,
) -> dict[str, Any]:
    remaining = context.get_remaining_time_in_millis() / 1000.0
    di = importer()
    summary = di.run_worker(event["job_id"], save_record, time_budget=max(1.0, remaining - MARGIN))
    status = di.status(event["job_id"])
    again = status is not None and not status.is_complete
    if again:
        invoke(context.function_name, event)
    return {
        "batches": summary.batches,
        "processed": summary.processed,
        "finalized": summary.finalized,
        "state": None if status is None else status.state,
        "reinvoked": again,
    }

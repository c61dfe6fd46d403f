"""Prepare a CSV and process it with one worker.

python examples/quickstart.py            # REDIS_URL, else redis://localhost:6379/0
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import redis

from redisbatch import CsvParser, DistributedImport, Field, FileSource, ProcessingContext, Schema

schema = Schema(
    [
        Field("email", "email", required=True),
        Field("name", required=True),
        Field("age", "integer", min=0, max=130),
    ],
    unique_fields=["email"],
)


def save_user(record: dict[str, Any], ctx: ProcessingContext) -> None:
    # A real import writes here, keyed by ctx.idempotency_key so a redelivery is harmless.
    print(f"{ctx.idempotency_key}: {record}")


def main() -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    di = DistributedImport(client, schema, batch_size=2, namespace="example")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "users.csv"
        path.write_text(
            "email,name,age\nada@example.org,Ada,36\nnot-an-email,Bob,40\n"
            "ADA@example.org,Ada again,36\ngrace@example.org,Grace,200\n"
        )
        job = di.prepare(FileSource(path), CsvParser())
    summary = di.run_worker(job.job_id, save_user)
    print(summary)
    for record in di.failed_records(job.job_id):
        print(f"record {record.index}: {[e.message for e in record.errors]}")
    di.delete(job.job_id)


if __name__ == "__main__":
    main()

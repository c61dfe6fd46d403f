"""Quick start: an orchestrator prepares a CSV; workers, given the job id, process it.

python examples/quickstart.py                  # prepare, start 2 workers, wait for the end
python examples/quickstart.py worker JOB_ID    # one more worker on a job (another terminal)

The Redis is REDIS_URL, else redis://localhost:6379/0.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from redisbatch import (
    CsvParser,
    DistributedImport,
    Field,
    FileSource,
    ProcessingContext,
    Schema,
)

schema = Schema(
    [
        Field("email", "email", required=True),
        Field("name", required=True),
        Field("age", "integer", min=0, max=130),
    ],
    unique_fields=["email"],
)

USERS = """email,name,age
ada@example.org,Ada,36
not-an-email,Bob,40
ADA@example.org,Ada again,36
grace@example.org,Grace,200
linus@example.org,Linus,55
margaret@example.org,Margaret,33
"""


def facade() -> DistributedImport:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    return DistributedImport(client, schema, batch_size=2, namespace="example")


def save_user(record: dict[str, Any], ctx: ProcessingContext) -> None:
    # A real import writes here, keyed by ctx.idempotency_key so a redelivery is harmless.
    print(f"  saved {ctx.idempotency_key}: {record['email']}")


def worker(job_id: str) -> int:
    """A worker: it learns the job id from its command line (or an environment
    variable, a queue message, an id both sides agreed on)."""
    logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("redisbatch").setLevel(logging.INFO)  # stale batches, dead letters
    di = facade()
    # Local events fire in the process that emits them: job:completed fires in the one
    # worker whose commit finished the job.
    di.on("job:completed", lambda event: print(f"job:completed {event.summary}"))
    summary = di.run_worker(job_id, save_user)  # returns once the job is final
    status = di.status(job_id)
    state = status.state if status else "deleted"
    print(f"worker {summary.worker_id}: {summary.processed} processed, job {state}")
    if summary.finalized:  # exactly one worker of the job sees this
        print("this worker finished the job")
    return 0 if state == "COMPLETED" else 1


def orchestrator() -> int:
    di = facade()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "users.csv"
        path.write_text(USERS)
        # job_id="users-2026-12" would choose the id; by default it is a new uuid.
        job = di.prepare(FileSource(path), CsvParser())
    print(f"prepared job {job.job_id}: {job.total_records} records")

    # Workers learn the job id: here, as an argument of the processes we start.
    workers = [subprocess.Popen([sys.executable, __file__, "worker", job.job_id]) for _ in range(2)]

    # Whoever needs to know when the job is done asks for its status.
    while (status := di.status(job.job_id)) is not None and not status.is_complete:
        time.sleep(0.2)
    for process in workers:
        process.wait()
    assert status is not None
    print(f"{status.state}: {status.processed_records} processed, {status.failed_records} failed")
    for record in di.failed_records(job.job_id):
        print(f"  record {record.index}: {'; '.join(e.message for e in record.errors)}")
    di.delete(job.job_id)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "worker":
        return worker(argv[1])
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    return orchestrator()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

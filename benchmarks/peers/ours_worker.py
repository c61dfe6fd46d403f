"""One redisbatch worker process of the standard job, driven by run.py.

    python ours_worker.py JOB_ID NAMESPACE BATCH_SIZE   (BENCH_REDIS_URL names the server)

Prints ``ready`` once its client and facade exist, starts on a ``go`` line on
stdin (sent just before the orchestrator's ``prepare``), waits for the job to
appear (``run_worker(wait_for_job=...)`` where the library has it, else by
polling ``status``), runs ``run_worker`` with a no-op processor, prints its
``WorkerSummary`` as JSON, and exits at EOF on stdin (so run.py can read its
CPU first). The worker that finalizes the job pushes the job's summary to
``<namespace>:<job>:done`` from its ``job:completed`` handler.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from typing import Any

import redis
from standard_job import SCHEMA

from redisbatch import DistributedImport


def noop(record: Any, ctx: Any) -> None:
    pass


def make_client(url: str) -> redis.Redis:
    """The client; BENCH_PARSER=python forces redis-py's pure-Python reply parser."""
    if os.environ.get("BENCH_PARSER") == "python":
        from redis._parsers import _RESP2Parser, _RESP3Parser
        from redis.utils import DEFAULT_RESP_VERSION

        parser = _RESP3Parser if DEFAULT_RESP_VERSION == 3 else _RESP2Parser
        return redis.Redis.from_url(url, parser_class=parser)
    return redis.Redis.from_url(url)


def main() -> None:
    job_id, namespace, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = make_client(os.environ["BENCH_REDIS_URL"])
    di = DistributedImport(client, SCHEMA, batch_size=batch_size, namespace=namespace)
    done_key = f"{namespace}:{job_id}:done"

    def completed(event: Any) -> None:
        summary = event.summary
        client.rpush(
            done_key,
            json.dumps(
                {"processed": summary.processed, "failed": summary.failed, "state": summary.state}
            ),
        )

    di.on("job:completed", completed)
    client.ping()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    if "wait_for_job" in inspect.signature(DistributedImport.run_worker).parameters:
        summary = di.run_worker(job_id, noop, wait_for_job=120.0)  # type: ignore[call-arg]
    else:
        deadline = time.monotonic() + 120.0
        while di.status(job_id) is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job_id} did not appear")
            time.sleep(0.005)
        summary = di.run_worker(job_id, noop)
    print(
        json.dumps(
            {
                "batches": summary.batches,
                "processed": summary.processed,
                "failed": summary.failed,
                "finalized": summary.finalized,
                "state": getattr(summary, "state", None),
            }
        ),
        flush=True,
    )
    sys.stdin.read()


if __name__ == "__main__":
    main()

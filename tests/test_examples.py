"""The quick start runs as the README says: workers get the job id, the end is noticed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_quickstart_hands_the_job_id_to_workers_and_sees_the_end(
    real_url: str, real_client: redis.Redis
) -> None:
    """quickstart.py prepares, starts two workers with the job id, waits for the final
    state: exactly one worker finishes the job, the bad rows are listed."""
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env={**os.environ, "REDIS_URL": real_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout.splitlines()
    job_id = out[0].split()[2].rstrip(":")
    assert out[0] == f"prepared job {job_id}: 6 records"
    assert sum(line.startswith("worker ") and "job COMPLETED" in line for line in out) == 2
    assert out.count("this worker finished the job") == 1
    assert sum(line.startswith("job:completed") for line in out) == 1
    assert "COMPLETED: 3 processed, 3 failed" in out
    assert [line.split(":")[0] for line in out if line.startswith("  record")] == [
        "  record 1",
        "  record 2",
        "  record 3",
    ]
    assert real_client.keys(f"example:{{{job_id}}}:*") == []  # deleted at the end

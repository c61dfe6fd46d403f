"""The ``redisbatch`` command line through its real entry point
(``python -m redisbatch``), against the real server the tests start."""

from __future__ import annotations

import contextlib
import csv
import functools
import http.server
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from redisbatch import JobStatus

SCHEMA = {
    "fields": [
        {"name": "email", "type": "email", "required": True},
        {"name": "name", "required": True},
        {"name": "age", "type": "integer", "min": 0, "max": 130},
    ],
    "unique_fields": ["email"],
}
TRICKY = 'Doe, "JJ"\nsecond line'
PROCESSORS = '''
import asyncio, os, time
import redis

_client = None


def _redis():
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["CLI_TEST_URL"])
    return _client


def save(record, ctx):
    """Counts each delivery of a record and keeps its name."""
    r = _redis()
    key = os.environ["CLI_TEST_KEY"]
    r.hincrby(key + ":seen", ctx.record_index, 1)
    r.hset(key + ":names", ctx.record_index, record["name"])
    delay = float(os.environ.get("CLI_TEST_DELAY", "0"))
    if delay:
        time.sleep(delay)


def flaky(record, ctx):
    """save, but every fourth record fails while CLI_TEST_OUTAGE is set."""
    if os.environ.get("CLI_TEST_OUTAGE") and ctx.record_index % 4 == 0:
        raise ConnectionError("API down")
    save(record, ctx)


async def save_async(record, ctx):
    await asyncio.sleep(0)
    save(record, ctx)
'''
STRUCT_MODULE = """
from typing import Annotated
import msgspec

class User(msgspec.Struct):
    email: str
    name: str
    age: Annotated[int, msgspec.Meta(ge=0, le=60)] | None = None
"""
JOB_STATUS_FIELDS = set(JobStatus.__struct_fields__)


def users(count: int, *, bad: tuple[int, ...] = ()) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", "age"])
    for i in range(count):
        email = f"user{i}.example.com" if i in bad else f"user{i}@example.com"
        writer.writerow([email, f"User {i}", 20 + i % 50])
    return out.getvalue()


@dataclass
class Cli:
    """Runs ``python -m redisbatch`` in a scratch folder on one namespace."""

    url: str
    namespace: str
    folder: Path
    env: dict[str, str]

    def args(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "redisbatch", *args]

    def redis_args(self) -> list[str]:
        return ["--url", self.url, "--namespace", self.namespace]

    def __call__(self, *args: str, timeout: float = 120, **kw: Any) -> Any:
        kw.setdefault("env", self.env)
        return subprocess.run(
            self.args(*args),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.folder,
            **kw,
        )

    def on(self, command: str, *args: str, **kw: Any) -> Any:
        """A command that talks to Redis: --url and --namespace added."""
        return self(command, *args, *self.redis_args(), **kw)

    def popen(self, command: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
        kw.setdefault("env", self.env)
        return subprocess.Popen(
            self.args(command, *args, *self.redis_args()), text=True, cwd=self.folder, **kw
        )

    def write(self, name: str, text: str) -> str:
        (self.folder / name).write_text(text, encoding="utf-8")
        return name

    def prepare(self, name: str, *args: str) -> str:
        done = self.on("prepare", name, "--schema", "schema.json", *args)
        assert done.returncode == 0, done.stderr
        return str(done.stdout.strip())

    def status(self, job_id: str) -> dict[str, Any]:
        done = self.on("status", job_id, "--json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))


@pytest.fixture
def cli(real_url: str, tmp_path: Path) -> Iterator[Cli]:
    namespace = f"cli{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(CLI_TEST_URL=real_url, CLI_TEST_KEY=namespace, PYTHONPATH=str(tmp_path))
    runner = Cli(real_url, namespace, tmp_path, env)
    runner.write("schema.json", json.dumps(SCHEMA))
    runner.write("procs.py", PROCESSORS)
    yield runner


@contextlib.contextmanager
def _serving(folder: Path) -> Iterator[str]:
    """An HTTP server on loopback serving ``folder``; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _one_line_error(done: Any, text: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert text in done.stderr, done.stderr


def test_version_and_usage(cli: Cli) -> None:
    """--version prints the package version; bad usage exits 2."""
    from redisbatch._cli import _version

    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"redisbatch {_version()}"
    assert cli("frobnicate").returncode == 2
    assert cli("worker", "job").returncode == 2  # --processor is required


def test_validate(cli: Cli) -> None:
    """validate counts by error code and lists the first errors; exit 1 when any is invalid."""
    cli.write("good.csv", users(50))
    done = cli("validate", "good.csv", "--schema", "schema.json")
    assert done.returncode == 0, done.stderr
    assert "good.csv: 50 records, 50 valid, 0 invalid" in done.stdout
    text = users(50, bad=(3, 9)) + "user4@example.com,Again,33\nshort,row\n"
    cli.write("bad.csv", text)
    done = cli("validate", "bad.csv", "--schema", "schema.json")
    assert done.returncode == 1
    assert "52 records, 48 valid, 4 invalid" in done.stdout
    assert re.search(r"TYPE_MISMATCH\s+2", done.stdout)
    assert "row 50: email: email duplicates record 4" in done.stdout
    assert "row 3: email: email must be a valid email address" in done.stdout
    done = cli("validate", "bad.csv", "--schema", "schema.json", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert set(report) == {
        "source", "total_records", "valid_records", "invalid_records", "warnings",
        "errors_by_code", "first_errors", "elapsed",
    }  # fmt: skip
    assert report["errors_by_code"] == {"TYPE_MISMATCH": 2, "DUPLICATE_VALUE": 1, "PARSE_ERROR": 1}
    assert report["first_errors"][0] == {
        "row": 3, "field": "email", "code": "TYPE_MISMATCH",
        "message": "email must be a valid email address", "value": "user3.example.com",
    }  # fmt: skip
    cli.write("bad_schema.json", json.dumps({"fields": [{"name": "a", "typ": "string"}]}))
    _one_line_error(
        cli("validate", "good.csv", "--schema", "bad_schema.json"),
        "bad_schema.json: fields[0] ('a'): unknown option 'typ' (did you mean 'type'?)",
    )
    cli.write("models.py", STRUCT_MODULE)
    done = cli.on("validate", "bad.csv", "--schema", "models:User")  # --url: accepted, unused
    assert done.returncode == 1
    # A str email is not checked; Meta(le=60) is: ages 61..69 of rows 41..49.
    assert "52 records, 42 valid, 10 invalid" in done.stdout
    assert re.search(r"OUT_OF_RANGE\s+9", done.stdout) and "PARSE_ERROR" in done.stdout
    with _serving(cli.folder) as base:
        done = cli("validate", f"{base}/bad.csv", "--schema", "schema.json", "--show", "1")
        assert done.returncode == 1
        assert "52 records, 48 valid, 4 invalid" in done.stdout and "first error:" in done.stdout
        _one_line_error(cli("validate", f"{base}/gone.csv", "--schema", "schema.json"), "404")
    _one_line_error(cli("validate", "nope.csv", "--schema", "schema.json"), "nope.csv")
    _one_line_error(
        cli("validate", "good.data", "--schema", "schema.json"), "cannot tell the format"
    )


def test_prepare_status_and_jobs(cli: Cli) -> None:
    """prepare prints the job id alone; status and jobs print JobStatus fields, --json too."""
    cli.write("users.csv", users(120))
    first = cli.prepare("users.csv", "--batch-size", "50")
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    second = cli.prepare("users.csv", "--job-id", "import-2")
    assert second == "import-2"
    done = cli.on("status", first)
    assert done.returncode == 0
    assert "state    PROCESSING" in done.stdout
    assert "records  120 total, 0 processed, 0 failed" in done.stdout
    assert "batches  3 total: 3 pending" in done.stdout
    status = cli.status(first)
    assert set(status) >= JOB_STATUS_FIELDS
    assert status["total_records"] == 120 and isinstance(status["created_at"], float)
    done = cli.on("jobs", "--json")
    listed = json.loads(done.stdout)
    assert [j["job_id"] for j in listed] == ["import-2", first]
    assert all(set(j) >= JOB_STATUS_FIELDS for j in listed)
    done = cli.on("jobs")
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["JOB", "STATE", "DONE", "FAILED"]
    assert lines[1].startswith("import-2") and "0/120" in lines[1]
    again = cli.on("prepare", "users.csv", "--schema", "schema.json", "--job-id", "import-2")
    _one_line_error(again, "already exists")


def test_errors_exit_2_in_one_line(cli: Cli) -> None:
    """Unknown job, unreachable Redis, bad processor module: exit 2, one line, no traceback."""
    for command in ("status", "watch", "failed", "pause", "resume", "abort", "delete"):
        _one_line_error(cli.on(command, "nope"), f"no job 'nope' in namespace '{cli.namespace}'")
    _one_line_error(cli.on("worker", "nope", "--processor", "procs:save"), "no job 'nope'")
    unreachable = cli("status", "x", "--url", "redis://127.0.0.1:1/0")
    _one_line_error(unreachable, "cannot reach Redis at redis://127.0.0.1:1/0")
    _one_line_error(cli("jobs", "--url", "redis://127.0.0.1:1/0"), "cannot reach Redis")
    cli.write("users.csv", users(5))
    job_id = cli.prepare("users.csv")
    _one_line_error(
        cli.on("worker", job_id, "--processor", "no_such_mod:save"), "cannot import 'no_such_mod'"
    )
    _one_line_error(
        cli.on("worker", job_id, "--processor", "procs:nothing"), "has no attribute 'nothing'"
    )
    _one_line_error(cli.on("prepare", "missing.csv", "--schema", "schema.json"), "missing.csv")


def test_worker_exit_statuses(cli: Cli) -> None:
    """worker exits 0 when the job ends COMPLETED, even with failed records; 1 when ABORTED."""
    cli.write("users.csv", users(300, bad=(5, 50)))
    job_id = cli.prepare("users.csv", "--batch-size", "40")
    done = cli.on("worker", job_id, "--processor", "procs:save", "--schema", "schema.json")
    assert done.returncode == 0, done.stderr
    assert "COMPLETED: 298 processed, 2 failed" in done.stderr
    assert done.stdout == ""
    status = cli.status(job_id)
    assert (status["state"], status["processed_records"], status["failed_records"]) == (
        "COMPLETED", 298, 2,
    )  # fmt: skip
    async_job = cli.prepare("users.csv", "--batch-size", "40")
    done = cli.on(
        "worker", async_job, "--processor", "procs:save_async", "--schema", "schema.json",
        "--concurrency", "8",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert cli.status(async_job)["processed_records"] == 298
    aborted = cli.prepare("users.csv")
    assert cli.on("abort", aborted).returncode == 0
    done = cli.on("worker", aborted, "--processor", "procs:save")
    assert done.returncode == 1 and "ABORTED" in done.stderr


def test_control_commands(cli: Cli) -> None:
    """pause/resume/abort/delete say what they did; exit 1 when they changed nothing."""
    cli.write("users.csv", users(10))
    job_id = cli.prepare("users.csv")
    done = cli.on("pause", job_id)
    assert (done.returncode, done.stdout) == (0, f"paused job {job_id}\n")
    assert cli.status(job_id)["state"] == "PAUSED"
    assert cli.on("resume", job_id).stdout == f"resumed job {job_id}\n"
    assert cli.on("abort", job_id).returncode == 0
    again = cli.on("abort", job_id)
    assert again.returncode == 1 and "is ABORTED: not aborted" in again.stderr
    assert cli.on("delete", job_id).stdout == f"deleted job {job_id}\n"
    assert cli.on("status", job_id).returncode == 2


def _read_tty(fd: int, proc: subprocess.Popen[str], timeout: float) -> str:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks).decode()


def test_watch_across_three_worker_processes(cli: Cli) -> None:
    """watch on a terminal: monotone progress of 3 worker processes, then the final state."""
    cli.write("users.csv", users(3000, bad=(7,)))
    job_id = cli.prepare("users.csv", "--batch-size", "50")
    env = dict(cli.env, CLI_TEST_DELAY="0.001")
    workers = cli.popen(
        "worker", job_id, "--processor", "procs:save", "--schema", "schema.json",
        "--processes", "3", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    primary, secondary = pty.openpty()
    watch = cli.popen("watch", job_id, "--interval", "0.2", stderr=secondary,
                      stdout=subprocess.PIPE)  # fmt: skip
    os.close(secondary)
    try:
        screen = _read_tty(primary, watch, 120)
        assert watch.wait(30) == 0
        assert workers.wait(120) == 0
    finally:
        os.close(primary)
        for proc in (workers, watch):
            if proc.poll() is None:
                proc.kill()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    frames = [f for f in re.split(r"[\r\n]+", screen) if f.strip()]
    done = [int(m.group(1).replace(",", "")) for f in frames
            if (m := re.search(r"\] ([\d,]+)/3,000", f))]  # fmt: skip
    assert len(done) >= 3, screen
    assert done == sorted(done), "progress must never go back"
    assert done[-1] == 3000 and frames[-1].startswith("COMPLETED")
    assert "failed 1" in frames[-1]
    assert sum(f.startswith("COMPLETED") for f in frames) == 1


def test_failed_export_fix_and_import_again(cli: Cli) -> None:
    """failed -o exports CSV; fixed rows import again with zero failures, text intact."""
    rows = users(40, bad=(2, 30)).splitlines()
    tricky = TRICKY.replace('"', '""')
    rows[2] = f'user1.example.com,"{tricky}",33'  # record 1: bad email, tricky name
    rows[5] = "user4@example.com,=HYPERLINK(1),44"
    rows[6] = "bad-email,=HYPERLINK(1),44"  # record 5
    cli.write("users.csv", "\n".join(rows) + "\n")
    job_id = cli.prepare("users.csv")
    done = cli.on("worker", job_id, "--processor", "procs:save", "--schema", "schema.json")
    assert done.returncode == 0
    done = cli.on("failed", job_id, "-o", "failed.csv")
    assert done.returncode == 0 and "wrote 4 failed records to failed.csv" in done.stderr
    exported = list(csv.DictReader(io.StringIO((cli.folder / "failed.csv").read_text())))
    assert [r["_row"] for r in exported] == ["1", "2", "5", "30"]
    assert exported[0]["name"] == TRICKY
    assert exported[2]["name"] == "'=HYPERLINK(1)"
    assert exported[2]["_error_codes"] == "TYPE_MISMATCH"
    for row in exported:
        row["email"] = f"fixed{row['_row']}@example.com"
        row["name"] = row["name"].removeprefix("'")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(exported[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(exported)
    cli.write("fixed.csv", out.getvalue())
    assert cli("validate", "fixed.csv", "--schema", "schema.json").returncode == 0
    fixed_job = cli.prepare("fixed.csv")
    done = cli.on("worker", fixed_job, "--processor", "procs:save", "--schema", "schema.json")
    assert done.returncode == 0, done.stderr
    status = cli.status(fixed_job)
    assert (status["processed_records"], status["failed_records"]) == (4, 0)
    names = redis.Redis.from_url(cli.url).hgetall(f"{cli.namespace}:names")
    assert TRICKY.encode() in names.values() and b"=HYPERLINK(1)" in names.values()
    jsonl = cli.on("failed", job_id, "--format", "jsonl")
    documents = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [d["_row"] for d in documents] == [1, 2, 5, 30]
    assert documents[2]["name"] == "=HYPERLINK(1)"


def _wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sigterm_stops_worker_processes_without_stale_batches(cli: Cli) -> None:
    """SIGTERM to worker --processes 3 mid-job hands every batch back; a second run finishes."""
    total = 3000
    cli.write("users.csv", users(total))
    job_id = cli.prepare("users.csv", "--batch-size", "100")
    env = dict(cli.env, CLI_TEST_DELAY="0.005")
    options = ("--processor", "procs:save", "--schema", "schema.json", "--stale-timeout", "60")
    workers = cli.popen("worker", job_id, "--processes", "3", *options, env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait_for(lambda: cli.status(job_id)["processed_records"] >= 200, 60)
        workers.send_signal(signal.SIGTERM)
        _, err = workers.communicate(timeout=30)
    finally:
        if workers.poll() is None:
            workers.kill()
            workers.communicate()
    assert workers.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    status = cli.status(job_id)
    assert status["state"] == "PROCESSING"
    assert status["processing_batches"] == 0, "a stopped worker left its batch to go stale"
    assert status["processed_records"] < total
    # No batch waits for the 60 s stale timeout: a second run finishes well within it.
    done = cli.on("worker", job_id, *options, timeout=45)
    assert done.returncode == 0, done.stderr
    status = cli.status(job_id)
    assert (status["state"], status["processed_records"], status["failed_records"]) == (
        "COMPLETED", total, 0,
    )  # fmt: skip
    seen = redis.Redis.from_url(cli.url).hgetall(f"{cli.namespace}:seen")
    assert len(seen) == total


def test_retry_failed_redrives_after_an_outage(cli: Cli) -> None:
    """retry-failed runs failed records as attempt 2; status and jobs show the new fields."""
    cli.write("users.csv", users(40, bad=(5,)))
    job_id = cli.prepare("users.csv", "--batch-size", "8")
    options = ("--processor", "procs:flaky", "--schema", "schema.json")
    done = cli.on("worker", job_id, *options, env=dict(cli.env, CLI_TEST_OUTAGE="1"))
    assert done.returncode == 0 and "COMPLETED: 29 processed, 11 failed" in done.stderr
    status = cli.status(job_id)
    assert (status["attempt"], status["eta"], status["workers"]) == (1, 0.0, 0)
    assert isinstance(status["rate"], float) and status["rate"] > 0
    _one_line_error(cli.on("retry-failed", "nope"), "no job 'nope'")
    done = cli.on("retry-failed", job_id)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout
        == f"redriving 10 records of job {job_id} (attempt 2); start workers to run them\n"
    )
    status = cli.status(job_id)
    assert (status["state"], status["attempt"], status["failed_records"]) == ("PROCESSING", 2, 1)
    assert "attempt  2" in cli.on("status", job_id).stdout
    busy = cli.on("retry-failed", job_id)
    assert busy.returncode == 1 and "PROCESSING" in busy.stderr and "Traceback" not in busy.stderr
    jobs = cli.on("jobs").stdout.splitlines()
    assert jobs[0].split()[4:8] == ["RATE/S", "ETA", "WORKERS", "ATTEMPT"]
    assert jobs[1].split()[7] == "2"
    done = cli.on("worker", job_id, *options)
    assert done.returncode == 0 and "COMPLETED: 39 processed, 1 failed" in done.stderr
    seen = redis.Redis.from_url(cli.url).hgetall(f"{cli.namespace}:seen")
    assert len(seen) == 39 and set(seen.values()) == {b"1"}  # each record saved once
    again = cli.on("retry-failed", job_id)
    assert again.returncode == 1 and "no failed records to retry" in again.stderr
    invalid = cli.on("retry-failed", job_id, "--include-invalid")
    assert invalid.returncode == 0 and "redriving 1 record of" in invalid.stdout
    assert cli.on("worker", job_id, *options).returncode == 0
    status = cli.status(job_id)
    assert (status["attempt"], status["processed_records"], status["failed_records"]) == (3, 39, 1)


def test_prepare_with_a_failure_threshold_stops_the_job(cli: Cli) -> None:
    """prepare --tolerated-failure-count: workers stop at it (exit 1); a redrive finishes."""
    cli.write("users.csv", users(80))
    job_id = cli.prepare("users.csv", "--batch-size", "10", "--tolerated-failure-count", "2")
    options = ("--processor", "procs:flaky", "--schema", "schema.json")
    done = cli.on("worker", job_id, *options, env=dict(cli.env, CLI_TEST_OUTAGE="1"))
    assert done.returncode == 1 and "FAILED: 7 processed, 3 failed" in done.stderr
    status = cli.status(job_id)
    assert status["error"].startswith("failure threshold crossed: 3 failed records")
    assert (status["completed_batches"], status["pending_batches"]) == (1, 7)
    assert cli.on("retry-failed", job_id).stdout.startswith("redriving 73 records of job")
    assert cli.on("worker", job_id, *options).returncode == 0
    status = cli.status(job_id)
    assert (status["state"], status["processed_records"], status["failed_records"]) == (
        "COMPLETED", 80, 0,
    )  # fmt: skip
    bad = cli.on("prepare", "users.csv", "--schema", "schema.json", "--tolerated-failure-count",
                 "-1")  # fmt: skip
    _one_line_error(bad, "tolerated_failure_count must be at least 0")

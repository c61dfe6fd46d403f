"""The test suite never writes to a Redis it did not create.

Each test here runs a small part of the suite in a child ``pytest`` against
a server this test started, holding keys that stand for someone's data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redisbatch._embedded import EmbeddedServer, find_server_binary
from tests.conftest import TEST_URL_VARIABLE, _no_server

ROOT = Path(__file__).resolve().parent.parent
#: A quick test that flushes the real server's database before it runs.
FLUSHING_TESTS = ["tests/test_facade.py::test_job_ids[sync-real]"]


@pytest.fixture
def someone_elses_server() -> Iterator[tuple[EmbeddedServer, dict[bytes, bytes]]]:
    """A server of its own whose database 0 holds 64 keys nobody may touch."""
    if find_server_binary() is None:
        _no_server("no server binary to start a scratch server with")
    with EmbeddedServer() as server, redis.Redis(port=server.port) as client:
        data = {f"customer:{i}".encode(): f"precious {i}".encode() for i in range(64)}
        client.mset(data)  # type: ignore[arg-type]
        yield server, data


def _contents(url: str) -> dict[bytes, bytes]:
    with redis.Redis.from_url(url) as client:
        keys = client.keys("*")
        return dict(zip(keys, client.mget(keys), strict=True)) if keys else {}


def _pytest(env_changes: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", TEST_URL_VARIABLE)}
    env.update(env_changes, REDISBATCH_REQUIRE_SERVER="1")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "-q",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_redis_url_is_left_untouched(
    someone_elses_server: tuple[EmbeddedServer, dict[bytes, bytes]],
) -> None:
    """With REDIS_URL naming a non-empty database, the suite leaves it as it was."""
    server, data = someone_elses_server
    run = _pytest({"REDIS_URL": server.url}, *FLUSHING_TESTS)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert _contents(server.url) == data


def test_a_non_empty_test_server_is_refused(
    someone_elses_server: tuple[EmbeddedServer, dict[bytes, bytes]],
) -> None:
    """REDISBATCH_TEST_URL naming a non-empty database makes the suite refuse, untouched."""
    server, data = someone_elses_server
    run = _pytest({TEST_URL_VARIABLE: server.url}, *FLUSHING_TESTS)
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert f"{TEST_URL_VARIABLE}={server.url} holds 64 keys: refusing" in run.stderr
    assert "passed" not in run.stdout
    assert _contents(server.url) == data


def test_an_empty_test_server_is_used_and_emptied(
    someone_elses_server: tuple[EmbeddedServer, dict[bytes, bytes]],
) -> None:
    """REDISBATCH_TEST_URL naming an empty database runs the real tests there, then
    empties it again; the server's other databases are untouched."""
    server, data = someone_elses_server
    scratch = f"redis://127.0.0.1:{server.port}/5"
    with redis.Redis(port=server.port) as client:
        flushes_before = client.info("commandstats").get("cmdstat_flushdb", {}).get("calls", 0)
        run = _pytest({TEST_URL_VARIABLE: scratch}, *FLUSHING_TESTS)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "1 passed" in run.stdout
        flushes = client.info("commandstats")["cmdstat_flushdb"]["calls"] - flushes_before
    assert flushes >= 2  # before the test, and at the end of the session
    assert _contents(scratch) == {}
    assert _contents(server.url) == data

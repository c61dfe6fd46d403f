"""The eviction-policy check: a server that may evict keys silently loses queue
state (a batch's records, a lease, a counter), so a facade on a server whose
``maxmemory-policy`` is not ``noeviction`` logs one warning on the
``redisbatch`` logger, once per server per process.

The sync facade checks at construction, the async one at its first call (it
cannot do I/O in ``__init__``). A server that refuses ``CONFIG GET`` (an ACL
without ``+config``, a managed service) or cannot be reached is not an error:
the check says so at DEBUG and the facade goes on.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, TypeVar

from ._async import AsyncDriver, CancelGate
from ._effects import Command, Flow

__all__ = ["CheckingAsyncDriver", "eviction_flow", "server_identity"]

T = TypeVar("T")
log = logging.getLogger("redisbatch")
_checked: set[str] = set()  # servers checked in this process
_lock = threading.Lock()


def server_identity(client: Any) -> str:
    """A name for the server (or cluster) a client talks to."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if isinstance(kwargs, dict):
        if "server" in kwargs:  # fakeredis: one in-process server object
            return f"fake:{id(kwargs['server'])}"
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"redis:{where}"
    nodes = getattr(client, "startup_nodes", None) or getattr(
        getattr(client, "nodes_manager", None), "startup_nodes", None
    )
    if nodes:
        return "cluster:" + ",".join(sorted(str(n) for n in nodes))
    return f"client:{id(client)}"


def _policies(reply: Any) -> set[str]:
    """Every maxmemory-policy value in a CONFIG GET reply (a map, a flat list,
    or, from a cluster client, one of those per node)."""
    found: set[str] = set()
    if isinstance(reply, dict):
        for key, value in reply.items():
            name = key.decode() if isinstance(key, bytes) else str(key)
            if name == "maxmemory-policy" and isinstance(value, bytes | str):
                found.add(value.decode() if isinstance(value, bytes) else value)
            else:
                found |= _policies(value)
    elif isinstance(reply, list | tuple):
        items = list(reply)
        for i in range(len(items) - 1):
            name = items[i].decode() if isinstance(items[i], bytes) else items[i]
            if name == "maxmemory-policy" and isinstance(items[i + 1], bytes | str):
                value = items[i + 1]
                found.add(value.decode() if isinstance(value, bytes) else value)
        for item in items:
            if isinstance(item, dict | list | tuple):
                found |= _policies(item)
    return found


def eviction_flow(client: Any) -> Flow[str | None]:
    """Checks the server's eviction policy once per server; returns the
    policy it warned about, or None."""
    identity = server_identity(client)
    with _lock:
        if identity in _checked:
            return None
        _checked.add(identity)
    try:
        reply = yield Command(("CONFIG", "GET", "maxmemory-policy"))
    except Exception as exc:  # refused under an ACL, or unreachable for now
        log.debug("could not read the server's maxmemory-policy (%s): not checked", exc)
        return None
    evicting = sorted(p for p in _policies(reply) if p != "noeviction")
    if not evicting:
        return None
    log.warning(
        "the Redis server's maxmemory-policy is %s, not noeviction: under memory pressure it "
        "may evict a job's keys and silently lose queued batches, leases and counts; set "
        "maxmemory-policy noeviction (or give the server enough memory)",
        ", ".join(evicting),
    )
    return evicting[0]


class CheckingAsyncDriver(AsyncDriver):
    """The async driver, checking the eviction policy before its first flow."""

    _eviction_checked = False

    async def run(self, flow: Flow[T], gate: CancelGate | None = None) -> T:
        if not self._eviction_checked:
            self._eviction_checked = True
            await super().run(eviction_flow(self.client))
        return await super().run(flow, gate)

"""What the driver-line tests look at on a client: connections checked out of
its pool, and script calls that went through the client itself."""

from __future__ import annotations

from typing import Any


def checked_out(client: Any) -> int:
    """Connections of the client's pool checked out now (sync or asyncio client)."""
    return len(client.connection_pool._in_use_connections)


def count_client_calls(client: Any) -> list[Any]:
    """Records the sha of every ``client.evalsha`` call from now on (sync or asyncio)."""
    calls: list[Any] = []
    original = client.evalsha

    def evalsha(*args: Any) -> Any:
        calls.append(args[0])
        return original(*args)

    client.evalsha = evalsha
    return calls

"""``redisbatch dashboard``: a live web page of a namespace's jobs, and
``/metrics`` (Prometheus text, see ``redisbatch.metrics``). Needs the ``web`` extra
(``pip install 'redisbatch[web]'``: Starlette and uvicorn).

``_reads`` holds the Redis reads (flows), ``_views`` what the pages show and
the HTML, ``_app`` the routes and their security, ``static/`` the page's CSS
and script; ``serve`` here runs it all under uvicorn.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from typing import Any, Final

__all__ = ["LOOPBACK_HOSTS", "TOKEN_VARIABLE", "serve"]

TOKEN_VARIABLE: Final = "REDISBATCH_DASHBOARD_TOKEN"
#: Host names a loopback-bound dashboard answers to (anything else: 400).
LOOPBACK_HOSTS: Final = ("127.0.0.1", "localhost", "[::1]", "::1")


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    url: str,
    namespace: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    allow_actions: bool = False,
    interval: float = 1.0,
    out: Any = None,
) -> None:
    """Serves the dashboard until interrupted. Prints its address (the port
    actually bound: ``port=0`` picks a free one) and, with ``allow_actions``,
    the token actions need (``$REDISBATCH_DASHBOARD_TOKEN``, else a new one)."""
    import redis.asyncio
    import uvicorn

    from ._app import create_app

    out = out or sys.stdout
    token = None
    if allow_actions:
        token = os.environ.get(TOKEN_VARIABLE) or secrets.token_urlsafe(24)
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    # A loopback dashboard answers only to loopback names: a web page elsewhere
    # cannot read it through a DNS name rebound to 127.0.0.1.
    allowed = (*LOOPBACK_HOSTS, host) if _is_loopback(host) else None
    app = create_app(
        lambda: redis.asyncio.Redis.from_url(url, socket_connect_timeout=5),
        namespace=namespace,
        actions=allow_actions,
        token=token,
        interval=interval,
        allowed_hosts=allowed,
    )
    shown = f"[{host}]" if ":" in host else host
    print(f"redisbatch dashboard of namespace {namespace!r}: http://{shown}:{bound}/", file=out)
    if token is not None and os.environ.get(TOKEN_VARIABLE):
        print(f"actions allowed with the token in ${TOKEN_VARIABLE}", file=out)
    elif token is not None:
        print(f"actions token: {token}", file=out)
    if not _is_loopback(host):
        print(f"warning: listening on {host}, not only on this machine", file=out)
    out.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])

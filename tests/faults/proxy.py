"""A loopback TCP proxy that cuts connections at random.

It sits between clients and one Redis server on 127.0.0.1. Each chunk that
crosses it may end the connection instead of being forwarded:

- a chunk from the client (a command) is dropped before the server sees it;
- a chunk from the server (a reply) is dropped after the server ran the
  command: the client's command took effect and its reply is lost, which is
  what a retrying client must survive by sending the same call again;
- the first reply that holds given bytes (``cut_reply_containing``) is
  dropped for sure: with ``b"COMPLETED"`` that is the reply to the call that
  finalized the job.

Threads, one pair per connection, bounded by ``max_connections``.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading

__all__ = ["CuttingProxy"]


class CuttingProxy:
    """``with CuttingProxy(port, cut_reply=0.02) as proxy: proxy.port``."""

    def __init__(
        self,
        upstream_port: int,
        *,
        cut_request: float = 0.0,
        cut_reply: float = 0.0,
        seed: int | None = None,
        max_connections: int = 256,
        cut_reply_containing: bytes | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.cut_request = cut_request
        self.cut_reply = cut_reply
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.cuts = {"request": 0, "reply": 0}
        self.connections = 0
        self.enabled = True
        #: The first reply holding these bytes is cut (e.g. b"COMPLETED": the
        #: reply of the call that finalized the job), whatever the odds.
        self.cut_reply_containing = cut_reply_containing
        self._slots = threading.BoundedSemaphore(max_connections)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name="cutting-proxy", daemon=True)

    @property
    def faults(self) -> int:
        with self.lock:
            return sum(self.cuts.values())

    def start(self) -> CuttingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        with self.lock:
            opened = list(self._open)
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> CuttingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(timeout=5):
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                self._slots.release()
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self.lock:
                self.connections += 1
                self._open.update((client, server))
            pair = _Pair(self, client, server)
            threading.Thread(
                target=pair.pump, args=(client, server, "request"), daemon=True
            ).start()
            threading.Thread(target=pair.pump, args=(server, client, "reply"), daemon=True).start()

    def _cut(self, direction: str, data: bytes) -> bool:
        if not self.enabled:
            return False
        marker = self.cut_reply_containing
        if direction == "reply" and marker is not None and marker in data:
            with self.lock:
                self.cut_reply_containing = None
                self.cuts["marked"] = 1
            return True
        chance = self.cut_request if direction == "request" else self.cut_reply
        with self.lock:
            if self.random.random() < chance:
                self.cuts[direction] += 1
                return True
        return False


class _Pair:
    """One proxied connection: both sockets close together, once."""

    def __init__(self, proxy: CuttingProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self._closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        with self.proxy.lock:
            self.proxy._open.difference_update((self.client, self.server))
        self.proxy._slots.release()

    def pump(self, source: socket.socket, target: socket.socket, direction: str) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or self.proxy._cut(direction, data):
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            self.close()

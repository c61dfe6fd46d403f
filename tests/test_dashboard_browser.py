"""The dashboard in a real browser: headless Chromium, driven over the DevTools
protocol, watches a job that 3 worker processes run (``redisbatch worker
--processes 3``), served by ``redisbatch dashboard`` on a real server.

Skipped only outside CI when Chromium is missing; with ``CI`` set a missing
Chromium fails (``.ci/run`` installs Debian's ``chromium``).
With ``REDISBATCH_SCREENSHOT=path.png`` the test keeps its screenshot of the
running page there (the README's ``docs/dashboard.png`` is one).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from base64 import b64decode
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from redisbatch import DistributedImport, Field, IterableSource, Schema

try:
    from websockets.sync.client import ClientConnection, connect
except ImportError as exc:  # pragma: no cover - websockets is in the test extra
    if os.environ.get("CI"):
        raise
    pytest.skip(f"websockets is not installed: {exc}", allow_module_level=True)

TOKEN = "browser-test-token"
SCRIPT = "<script>window.pwned=1</script>"
IMG = '<img src=x onerror="window.pwned=1">'
PROCESSOR = """
import time


def save(record, ctx):
    time.sleep(0.004)
    if record["name"].startswith("fail"):
        raise RuntimeError("refused <b>" + record["name"] + "</b>")
"""
SCHEMA_FILE = {"fields": [{"name": "email", "type": "email", "required": True}, {"name": "name"}]}
SCHEMA = Schema([Field("email", "email", required=True), Field("name")])


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is required in CI (.ci/run installs Debian's chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


class DevTools:
    """One DevTools protocol connection: commands answered in order, events kept aside."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def send(self, method: str, timeout: float = 30, **params: Any) -> Any:
        ask = next(self.ids)
        self.ws.send(json.dumps({"id": ask, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ask:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str) -> Any:
        reply = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait(self, expression: str, seconds: float = 30) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            value = self.js(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"never true: {expression}"
            time.sleep(0.1)


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[tuple[DevTools, DevTools]]:
    """(a page, the browser) of a headless Chromium with its own profile."""
    process = subprocess.Popen(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",  # tests run as root in CI
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1280,1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its helper processes end with it (killpg below)
    )
    port_file = profile / "DevToolsActivePort"
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            assert process.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port, browser_path = port_file.read_text().splitlines()[:2]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            targets = json.load(reply)
        page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        browser_url = f"ws://127.0.0.1:{port}{browser_path}"
        with (
            connect(page_url, max_size=None, open_timeout=10) as page,
            connect(browser_url, max_size=None, open_timeout=10) as browser,
        ):
            yield DevTools(page), DevTools(browser)
    finally:
        # The whole process group: a renderer or crash handler left behind
        # would keep writing into the profile while it is removed.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@contextlib.contextmanager
def dashboard(url: str, namespace: str) -> Iterator[str]:
    """``redisbatch dashboard --allow-actions`` on a free loopback port; its address."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "redisbatch", "dashboard", "--port", "0", "--allow-actions"),
            *("--interval", "0.2", "--url", url, "--namespace", namespace),
        ],
        env={**os.environ, "REDISBATCH_DASHBOARD_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+)/$", process.stdout.readline().strip())
        assert match, "the dashboard printed no address"
        yield match[1]
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def _rows(count: int) -> list[dict[str, str]]:
    rows = []
    for i in range(count):
        row = {"email": f"user{i}@example.com", "name": f"User {i}"}
        if i % 400 == 7:
            row["name"] = f"fail {i}"
        if i % 700 == 3:
            row["email"] = SCRIPT
        rows.append(row)
    rows[1] = {"email": "not-an-email", "name": IMG}
    return rows


def test_the_page_follows_three_worker_processes_to_the_end(
    real_url: str, real_client: redis.Redis, tmp_path: Path
) -> None:
    """Chromium: the page follows 3 workers to 100%, lists failed rows, refuses tokenless acts."""
    namespace = f"b{uuid.uuid4().hex[:8]}"
    di = DistributedImport(real_client, SCHEMA, namespace=namespace, batch_size=50)
    job_id = di.prepare(IterableSource(_rows(3000)), job_id='import <b>"1"</b> & co').job_id
    (tmp_path / "dash_processor.py").write_text(PROCESSOR)
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA_FILE))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with (
        dashboard(real_url, namespace) as base,
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile,
        chromium(Path(profile)) as (page, browser),
    ):
        browser.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        page.send("Page.navigate", url=f"{base}/job?id={quote(job_id, safe='')}")
        page.wait("document.readyState === 'complete' && !!document.querySelector('progress')")
        page.wait("document.querySelector('[data-bind=live]').textContent === 'live'")
        assert page.js("document.querySelector('h2.job-id').textContent") == job_id

        # An action without the token is refused, and changes nothing.
        page.js("document.querySelector('button[data-action=pause]').click()")
        refusal = page.wait(
            "document.getElementById('action-result').textContent.includes('refused')"
            " && document.getElementById('action-result').textContent"
        )
        assert refusal == "pause refused (403): missing token"
        status = di.status(job_id)
        assert status is not None and status.state == "PROCESSING"
        # With the token, pause and resume work from the page.
        page.js(f"document.getElementById('token').value = {json.dumps(TOKEN)}")
        page.js("document.querySelector('button[data-action=pause]').click()")
        page.wait("document.querySelector('[data-bind=state]').textContent === 'PAUSED'")
        page.js("document.querySelector('button[data-action=resume]').click()")
        page.wait("document.querySelector('[data-bind=state]').textContent === 'PROCESSING'")

        workers = subprocess.Popen(
            [
                *(sys.executable, "-m", "redisbatch", "worker", job_id),
                *("--processor", "dash_processor:save", "--schema", "schema.json"),
                *("--processes", "3", "--url", real_url, "--namespace", namespace),
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: list[float] = []
        shot = None
        try:
            deadline = time.monotonic() + 120
            while True:
                value, state = page.js(
                    "[document.querySelector('progress').value,"
                    " document.querySelector('[data-bind=state]').textContent]"
                )
                seen.append(float(value))
                if shot is None and 25 <= value <= 75:
                    time.sleep(0.5)  # let a few failed rows and events arrive
                    shot = page.send("Page.captureScreenshot", format="png")["data"]
                if state == "COMPLETED" and value == 100:
                    break
                assert time.monotonic() < deadline, f"never finished: {seen[-5:]}"
                time.sleep(0.15)
            _, errors = workers.communicate(timeout=60)
        finally:
            if workers.poll() is None:
                workers.kill()
                workers.communicate()
        assert workers.returncode == 0, errors
        assert seen == sorted(seen), seen
        assert seen[-1] == 100.0
        assert any(0 < v < 100 for v in seen), seen  # it moved while we watched

        expected = list(di.failed_records(job_id))
        assert len(expected) == 8 + 5 + 1
        page.wait(f"document.querySelectorAll('#failed tr').length === {len(expected)}")
        table = page.js(
            "[...document.querySelectorAll('#failed tr')]"
            ".map(tr => [...tr.cells].map(td => td.textContent))"
        )
        assert [row[0] for row in table] == [str(r.index) for r in expected]
        by_row = {row[0]: row for row in table}
        assert by_row["1"][2] == "TYPE_MISMATCH" and json.loads(by_row["1"][4])["name"] == IMG
        assert json.loads(by_row["3"][4])["email"] == SCRIPT
        assert by_row["7"][2] == "PROCESSING_ERROR"
        assert by_row["7"][3] == "refused <b>fail 7</b>"
        # Nothing from the records ran or became markup.
        assert page.js("window.pwned === undefined && !document.querySelector('#failed img')")
        assert page.js("document.querySelectorAll('script').length") == 1

        # The download is the export format.
        page.js("document.getElementById('download-csv').click()")
        deadline = time.monotonic() + 30
        while not [p for p in downloads.iterdir() if p.suffix == ".csv"]:
            assert time.monotonic() < deadline, list(downloads.iterdir())
            time.sleep(0.1)
        downloaded = next(p for p in downloads.iterdir() if p.suffix == ".csv")
        exported = io.StringIO()
        di.export_failed(job_id, exported, format="csv")
        assert downloaded.read_text(encoding="utf-8") == exported.getvalue()

        # The jobs list shows the finished job.
        page.send("Page.navigate", url=f"{base}/")
        page.wait("document.readyState === 'complete'")
        row = page.wait(
            "[...document.querySelectorAll('#jobs tr')].map(tr => "
            "[tr.cells[0].textContent, tr.cells[1].textContent,"
            " tr.querySelector('progress').value, tr.cells[7].textContent])[0]"
        )
        assert row == [job_id, "COMPLETED", 100, str(len(expected))]

    keep = os.environ.get("REDISBATCH_SCREENSHOT")
    if keep and shot is not None:
        Path(keep).write_bytes(b64decode(shot))

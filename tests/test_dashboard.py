"""The dashboard over HTTP: every route on a real uvicorn server on a free
loopback port, reading fakeredis and a real server; its security (tokens,
same-origin, no action through GET, Host check, escaping) and ``/metrics``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import fakeredis
import pytest
import redis
import redis.asyncio

from redisbatch import DistributedImport, Field, IterableSource, Schema

try:
    import httpx
    import uvicorn

    from redisbatch._dashboard._app import create_app
except ImportError as exc:  # pragma: no cover - the web extra is part of the test extra
    if os.environ.get("CI"):
        raise
    pytest.skip(f"the web extra is not installed: {exc}", allow_module_level=True)

SCHEMA = Schema([Field("email", "email", required=True), Field("name")])
SCRIPT = "<script>window.pwned=1</script>"
HTML_JOB = 'job <b onmouseover="x()">&amp;</b> "quoted" \'single\''
TOKEN = "s3cret-token"


class Dashboard:
    """A dashboard app served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, connect: Callable[[], Any], **options: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = create_app(connect, interval=0.1, **options)
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.01)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.post(path, **kw)

    def events(
        self,
        path: str,
        limit: int = 50,
        seconds: float = 20,
        after_first: Callable[[], None] | None = None,
    ) -> list[tuple[str, Any]]:
        """The server-sent events of ``path`` until ``end`` or ``limit`` of them;
        ``after_first()`` is called once the first has arrived."""
        found: list[tuple[str, Any]] = []
        deadline = time.monotonic() + seconds
        with self.http.stream("GET", path) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in reply.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    found.append((kind or "message", json.loads(line[6:])))
                    if len(found) == 1 and after_first is not None:
                        after_first()
                    if kind == "end" or len(found) >= limit:
                        break
                assert time.monotonic() < deadline, f"stream too slow: {found}"
        return found


@pytest.fixture
def dashboard(
    client: redis.Redis, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Dashboard]]:
    """Starts dashboards on the test's server (fakeredis or real)."""
    started: list[Dashboard] = []
    if isinstance(client, fakeredis.FakeRedis):
        server = client.connection_pool.connection_kwargs["server"]

        def connect() -> Any:
            return fakeredis.FakeAsyncRedis(server=server)
    else:
        url = request.getfixturevalue("real_url")

        def connect() -> Any:
            return redis.asyncio.Redis.from_url(url)

    def start(**options: Any) -> Dashboard:
        started.append(Dashboard(connect, **options))
        return started[-1]

    yield start
    for board in started:
        board.close()


@pytest.fixture
def namespace() -> str:
    return f"d{uuid.uuid4().hex[:8]}"


def _facade(client: redis.Redis, namespace: str, **options: Any) -> DistributedImport:
    options.setdefault("batch_size", 2)
    return DistributedImport(client, SCHEMA, namespace=namespace, retry_delay=0, **options)


def _rows() -> list[dict[str, str]]:
    return [
        {"email": "ok0@x.io", "name": "Ann"},
        {"email": SCRIPT, "name": "<img src=x onerror=alert(1)>"},
        {"email": "ok2@x.io", "name": "Bob"},
        {"email": "ok3@x.io", "name": "fail me"},
        {"email": "ok4@x.io", "name": "Cy"},
    ]


def _processor(record: dict[str, Any], ctx: Any) -> None:
    if record["name"] == "fail me":
        raise RuntimeError('db said <b>no</b> & "never"')


def _finished_job(di: DistributedImport, job_id: str = HTML_JOB) -> str:
    job = di.prepare(IterableSource(_rows()), job_id=job_id)
    di.run_worker(job.job_id, _processor)
    return job.job_id


def _q(job_id: str) -> str:
    return "?id=" + quote(job_id, safe="")


# ---------------------------------------------------------------- pages


def test_jobs_list_shows_each_job_with_state_progress_and_failed(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """The jobs list shows every job with its state, progress, counts; the JSON view agrees."""
    di = _facade(client, namespace)
    done = _finished_job(di, "done-job")
    waiting = di.prepare(IterableSource(_rows()), job_id="waiting-job").job_id
    board = dashboard(namespace=namespace)
    page = board.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'href="/job?id=done-job"' in page.text
    assert "2 jobs" in page.text
    data = board.get("/api/jobs").json()
    assert [j["job_id"] for j in data["jobs"]] == [waiting, done]
    by_id = {j["job_id"]: j for j in data["jobs"]}
    assert by_id[done]["state"] == "COMPLETED"
    assert by_id[done]["percent"] == 100.0
    assert by_id[done]["failed"] == "2"
    assert by_id[done]["done"] == "5 / 5"
    assert by_id[waiting]["state"] == "PROCESSING"
    assert by_id[waiting]["percent"] == 0.0
    rate = getattr(di.status(done), "rate", None)  # "-" until JobStatus.rate exists
    assert by_id[done]["rate"] == ("-" if rate is None else f"{rate:,.0f}/s")


def test_jobs_list_is_paginated(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """60 jobs: page 1 holds the 50 newest, page 2 the 10 oldest, with links between them."""
    di = _facade(client, namespace)
    ids = [di.prepare(IterableSource([]), job_id=f"job-{i:02d}").job_id for i in range(60)]
    board = dashboard(namespace=namespace)
    first, second = board.get("/api/jobs?page=1").json(), board.get("/api/jobs?page=2").json()
    assert (first["total"], first["pages"], second["page"]) == (60, 2, 2)
    newest_first = list(reversed(ids))
    assert [j["job_id"] for j in first["jobs"]] == newest_first[:50]
    assert [j["job_id"] for j in second["jobs"]] == newest_first[50:]
    html = board.get("/?page=2").text
    assert 'href="/?page=1"' in html and "page 2 of 2" in html
    assert board.get("/api/jobs?page=99").json()["page"] == 2  # clamped
    assert board.get("/api/jobs?page=nonsense").json()["page"] == 1


def test_job_page_shows_batches_events_and_failed_records_escaped(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """The job page shows batches, events, failed records; HTML in ids and values is text."""
    di = _facade(client, namespace)
    job_id = _finished_job(di)
    board = dashboard(namespace=namespace)
    page = board.get("/job" + _q(job_id))
    assert page.status_code == 200
    html = page.text
    assert SCRIPT not in html and "<b onmouseover" not in html and "<img src=x" not in html
    assert "<b>no</b>" not in html
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    assert "job &lt;b onmouseover=&quot;x()&quot;&gt;&amp;amp;&lt;/b&gt;" in html
    assert "db said &lt;b&gt;no&lt;/b&gt; &amp; &quot;never&quot;" in html
    assert "TYPE_MISMATCH" in html and "PROCESSING_ERROR" in html
    assert "data-bind=batches.completed>3<" in html
    assert "batch:completed" in html and "job:completed" in html
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    data = board.get("/api/job" + _q(job_id)).json()
    assert data["job"]["job_id"] == job_id
    assert data["job"]["batches"] == {
        "total": 3,
        "pending": 0,
        "processing": 0,
        "completed": 3,
        "failed": 0,
    }
    assert data["events"][0]["type"] == "job:completed"
    assert sum(e["type"] == "batch:completed" for e in data["events"]) == 3
    failed = board.get("/api/job/failed" + _q(job_id) + "&format=json").json()
    assert [(r["row"], r["codes"]) for r in failed["records"]] == [
        ("1", "TYPE_MISMATCH"),
        ("3", "PROCESSING_ERROR"),
    ]
    assert json.loads(failed["records"][0]["values"])["email"] == SCRIPT
    assert failed["records"][1]["errors"] == 'db said <b>no</b> & "never"'
    assert failed["complete"] is True


def test_unknown_job_answers_404_with_the_id_escaped(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """An unknown job: 404 on every job route; the page names the id as text."""
    board = dashboard(namespace=namespace)
    page = board.get("/job" + _q("<i>nope</i>"))
    assert page.status_code == 404
    assert "&lt;i&gt;nope&lt;/i&gt;" in page.text and "<i>nope" not in page.text
    for path in ("/api/job", "/api/job/stream", "/api/job/failed"):
        assert board.get(path + _q("nope")).status_code == 404
    assert board.get("/api/job?id=" + quote("has{brace}")).status_code == 404
    assert board.get("/api/job").status_code == 404


def test_downloads_are_the_export_failed_formats(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """The CSV and JSONL downloads are byte for byte what export_failed writes."""
    di = _facade(client, namespace)
    job_id = _finished_job(di)
    board = dashboard(namespace=namespace)
    for fmt in ("csv", "jsonl"):
        expected = io.StringIO()
        di.export_failed(job_id, expected, format=fmt)
        reply = board.get("/api/job/failed" + _q(job_id) + f"&format={fmt}")
        assert reply.status_code == 200
        assert reply.text == expected.getvalue()
        assert reply.headers["content-disposition"].startswith("attachment; filename=")
        assert reply.headers["content-disposition"].endswith(f'.{fmt}"')
        assert "<" not in reply.headers["content-disposition"]
    assert board.get("/api/job/failed" + _q(job_id) + "&format=xml").status_code == 400


def test_job_stream_follows_progress_to_the_end(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """The job stream sends the current figures, new ones as batches commit, then ``end``."""
    di = _facade(client, namespace)
    job_id = di.prepare(IterableSource(_rows()), job_id="streamed").job_id
    board = dashboard(namespace=namespace)

    def work() -> None:
        while True:
            result = di.process_worker_batch(job_id, _processor, "w1")
            if not result.claimed or result.job_complete:
                return
            time.sleep(0.3)

    worker = threading.Thread(target=work)
    try:
        events = board.events("/api/job/stream" + _q(job_id), after_first=worker.start)
    finally:
        if worker.ident is not None:
            worker.join()
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "end" and set(kinds[:-1]) == {"update"}
    percents = [data["job"]["percent"] for kind, data in events if kind == "update"]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert percents[0] == 0.0  # it moved while we watched
    assert events[-2][1]["job"]["state"] == "COMPLETED"


def test_jobs_stream_sends_the_page(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """The jobs stream sends the page's jobs at once, and again when a job changes."""
    di = _facade(client, namespace)
    job_id = di.prepare(IterableSource(_rows()), job_id="listed").job_id
    board = dashboard(namespace=namespace)
    events = board.events("/api/jobs/stream", limit=2, after_first=lambda: di.pause(job_id))
    assert [kind for kind, _ in events] == ["update", "update"]
    assert [data["jobs"][0]["state"] for _, data in events] == ["PROCESSING", "PAUSED"]


def test_static_files_and_unknown_paths(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """The page's script and CSS are served; nothing else is."""
    board = dashboard(namespace=namespace)
    script = board.get("/static/app.js")
    assert script.status_code == 200 and "EventSource" in script.text
    assert "innerHTML" not in script.text  # values go in as text only
    assert board.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert board.get("/static/../_app.py").status_code == 404
    assert board.get("/static/_app.py").status_code == 404
    assert board.get("/nothing").status_code == 404


# ---------------------------------------------------------------- actions


def test_actions_are_refused_without_allow_actions(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """Without --allow-actions no action is offered, and every one answers 403."""
    di = _facade(client, namespace)
    job_id = di.prepare(IterableSource(_rows()), job_id="quiet").job_id
    board = dashboard(namespace=namespace)
    assert "data-action" not in board.get("/job" + _q(job_id)).text
    for action in ("pause", "resume", "abort", "retry-failed"):
        reply = board.post(f"/api/job/{action}" + _q(job_id), headers={"X-Redisbatch-Token": "x"})
        assert reply.status_code == 403
    status = di.status(job_id)
    assert status is not None and status.state == "PROCESSING"


def test_actions_need_the_token_and_the_same_origin(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """An action needs the token and the same origin; else 403 and nothing changes."""
    di = _facade(client, namespace)
    job_id = di.prepare(IterableSource(_rows()), job_id="controlled").job_id
    board = dashboard(namespace=namespace, actions=True, token=TOKEN)
    page = board.get("/job" + _q(job_id)).text
    assert 'data-action="pause"' in page and 'data-action="abort"' in page
    assert ('data-action="retry-failed"' in page) == hasattr(di, "retry_failed")
    path = "/api/job/pause" + _q(job_id)
    refused = [
        board.post(path),
        board.post(path, headers={"X-Redisbatch-Token": "wrong"}),
        board.post(path, headers={"X-Redisbatch-Token": TOKEN[:-1]}),
        board.post(path, headers={"X-Redisbatch-Token": TOKEN, "Origin": "http://evil.example"}),
        board.post(path, headers={"X-Redisbatch-Token": TOKEN, "Sec-Fetch-Site": "cross-site"}),
        board.post(path, data={"token": "wrong"}),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert refused[0].json()["error"] == "missing token"
    status = di.status(job_id)
    assert status is not None and status.state == "PROCESSING"
    ok = board.post(path, headers={"X-Redisbatch-Token": TOKEN, "Origin": board.url})
    assert ok.status_code == 200
    assert ok.json() == {"action": "pause", "changed": True, "result": True, "state": "PAUSED"}
    form = board.post("/api/job/resume" + _q(job_id), data={"token": TOKEN})
    assert form.status_code == 200 and form.json()["state"] == "PROCESSING"
    again = board.post("/api/job/resume" + _q(job_id), headers={"X-Redisbatch-Token": TOKEN})
    assert again.json()["changed"] is False
    aborted = board.post("/api/job/abort" + _q(job_id), headers={"X-Redisbatch-Token": TOKEN})
    assert aborted.json()["state"] == "ABORTED"
    unknown = board.post("/api/job/pause" + _q("nope"), headers={"X-Redisbatch-Token": TOKEN})
    assert unknown.status_code == 404


def test_no_action_through_get(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """GET on an action route answers 405 and changes nothing, token or not."""
    di = _facade(client, namespace)
    job_id = di.prepare(IterableSource(_rows()), job_id="get-me").job_id
    board = dashboard(namespace=namespace, actions=True, token=TOKEN)
    for action in ("pause", "abort", "retry-failed"):
        path = f"/api/job/{action}" + _q(job_id) + f"&token={TOKEN}"
        assert board.get(path, headers={"X-Redisbatch-Token": TOKEN}).status_code == 405
    status = di.status(job_id)
    assert status is not None and status.state == "PROCESSING"


def test_retry_failed_action_follows_the_facade(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """retry-failed redrives the failed records where the facade can; else it says so (404)."""
    di = _facade(client, namespace)
    job_id = _finished_job(di)
    board = dashboard(namespace=namespace, actions=True, token=TOKEN)
    reply = board.post("/api/job/retry-failed" + _q(job_id), headers={"X-Redisbatch-Token": TOKEN})
    if not hasattr(di, "retry_failed"):
        assert reply.status_code == 404
        return
    assert reply.status_code == 200
    assert reply.json()["result"] == 1  # the processing failure; the invalid record stays
    assert reply.json()["state"] == "PROCESSING"


def test_host_header_is_checked_when_asked(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """With allowed hosts (a loopback dashboard), another Host answers 400: no DNS rebinding."""
    board = dashboard(namespace=namespace, allowed_hosts=["127.0.0.1", "localhost"])
    assert board.get("/").status_code == 200
    assert board.get("/", headers={"Host": "localhost:1234"}).status_code == 200
    assert board.get("/", headers={"Host": "rebound.example"}).status_code == 400
    assert board.get("/metrics", headers={"Host": "rebound.example:80"}).status_code == 400


def test_actions_need_a_token_to_be_built() -> None:
    """create_app refuses actions without a token."""
    with pytest.raises(ValueError, match="token"):
        create_app(lambda: None, actions=True)


# ---------------------------------------------------------------- metrics


def _scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    line = re.compile(r"^([a-z_]+)\{(.*)\} (\S+)$")
    label = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')
    found = {}
    for row in text.splitlines():
        if row.startswith("#") or not row:
            continue
        match = line.match(row)
        assert match, row
        labels = frozenset(
            (k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
            for k, v in label.findall(match[2])
        )
        found[match[1], labels] = float(match[3])
    return found


def test_metrics_agree_with_status(
    client: redis.Redis, dashboard: Callable[..., Dashboard], namespace: str
) -> None:
    """/metrics gives per job records and batches, per namespace jobs by state, as status()."""
    di = _facade(client, namespace)
    finished = _finished_job(di)
    running = di.prepare(IterableSource(_rows()), job_id='run "1" \\ two').job_id
    di.process_worker_batch(running, _processor, "w1")
    paused = di.prepare(IterableSource(_rows()), job_id="paused").job_id
    di.pause(paused)
    board = dashboard(namespace=namespace)
    reply = board.get("/metrics")
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    scraped = _scrape(reply.text)
    for job_id in (finished, running, paused):
        s = di.status(job_id)
        assert s is not None
        base = {("namespace", namespace), ("job_id", job_id), ("state", s.state)}

        def value(name: str, extra: tuple[str, str] | None = None) -> float:
            return scraped[name, frozenset(base | ({extra} if extra else set()))]  # noqa: B023

        assert value("redisbatch_job_records", ("outcome", "total")) == s.total_records
        assert value("redisbatch_job_records", ("outcome", "processed")) == s.processed_records
        assert value("redisbatch_job_records", ("outcome", "failed")) == s.failed_records
        for batch_state in ("pending", "processing", "completed", "failed"):
            expected = getattr(s, f"{batch_state}_batches")
            assert value("redisbatch_job_batches", ("batch_state", batch_state)) == expected
        if getattr(s, "rate", None) is not None:
            assert value("redisbatch_job_rate") == pytest.approx(s.rate)  # type: ignore[attr-defined]
    by_state = {
        dict(labels)["state"]: v
        for (name, labels), v in scraped.items()
        if name == "redisbatch_jobs"
    }
    assert by_state == {
        "PREPARING": 0,
        "PROCESSING": 1,
        "PAUSED": 1,
        "COMPLETED": 1,
        "FAILED": 0,
        "ABORTED": 0,
    }


# ---------------------------------------------------------------- cost


def test_a_page_of_a_thousand_jobs_stays_light(real_client: redis.Redis, real_url: str) -> None:
    """A list refresh on 1,000 jobs costs a constant number of commands per job of its page."""
    namespace = f"d{uuid.uuid4().hex[:8]}"
    di = DistributedImport(real_client, namespace=namespace)
    for i in range(1000):
        di.prepare(IterableSource([]), job_id=f"j{i:04d}")

    def commands() -> int:
        return int(real_client.info("stats")["total_commands_processed"])

    di.status("j0000")  # its script loaded
    before = commands()
    di.status("j0000")
    one_status = commands() - before - 1  # the commands of one status call (INFO counts itself)
    board = Dashboard(lambda: redis.asyncio.Redis.from_url(real_url), namespace=namespace)
    try:
        board.get("/api/jobs")  # scripts loaded, connection made
        before = commands()
        data = board.get("/api/jobs").json()
        after = commands()
    finally:
        board.close()
    assert len(data["jobs"]) == 50 and data["total"] == 1000 and data["pages"] == 20
    # ZCARD + ZREVRANGE + one status call per job of the page (commands run by
    # its script count too) + the INFO that counts: nothing grows with the 1,000.
    assert after - before <= 2 + 50 * one_status + 1


# ---------------------------------------------------------------- the command


def test_dashboard_command_binds_loopback_and_prints_the_token(
    real_url: str, real_client: redis.Redis, tmp_path: Any
) -> None:
    """The command binds loopback, prints its address and token; an env token is not printed."""
    env = {**os.environ, "REDIS_URL": real_url}
    env.pop("REDISBATCH_DASHBOARD_TOKEN", None)
    di = DistributedImport(real_client, namespace="cmd")
    job_id = di.prepare(IterableSource([{"a": "1"}]), job_id="cmd-job").job_id

    @contextlib.contextmanager
    def running(*extra: str, **more_env: str) -> Iterator[tuple[str, list[str]]]:
        command = [sys.executable, "-m", "redisbatch", "dashboard", "--namespace", "cmd"]
        process = subprocess.Popen(
            [*command, "--port", "0", *extra],
            env={**env, **more_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline().strip()]
            if "--allow-actions" in extra:
                lines.append(process.stdout.readline().strip())
            match = re.search(r"(http://\S+)/$", lines[0])
            assert match, (lines, process.stderr.read() if process.poll() is not None else "")
            yield match[1], lines
        finally:
            process.terminate()
            process.wait(10)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    @contextlib.contextmanager
    def wait_up(url: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=url, timeout=5) as http:
            for _ in range(100):
                with contextlib.suppress(httpx.TransportError):
                    http.get("/metrics")
                    break
                time.sleep(0.05)
            yield http

    with running("--allow-actions") as (url, lines):
        assert url.startswith("http://127.0.0.1:")
        token = lines[1].removeprefix("actions token: ")
        assert len(token) >= 24 and " " not in token
        with wait_up(url) as http:
            pause = "/api/job/pause" + _q(job_id)
            assert http.post(pause).status_code == 403
            assert http.post(pause, headers={"X-Redisbatch-Token": token}).status_code == 200
            assert http.get("/", headers={"Host": "attacker.example"}).status_code == 400
    with running("--allow-actions", REDISBATCH_DASHBOARD_TOKEN="from-env-token") as (url, lines):
        assert "from-env-token" not in "\n".join(lines)
        with wait_up(url) as http:
            resume = "/api/job/resume" + _q(job_id)
            headers = {"X-Redisbatch-Token": "from-env-token"}
            assert http.post(resume, headers=headers).json()["state"] == "PROCESSING"
    with running() as (url, lines), wait_up(url) as http:
        reply = http.post("/api/job/pause" + _q(job_id), headers={"X-Redisbatch-Token": "x"})
        assert reply.status_code == 403
        assert "data-action" not in http.get("/job" + _q(job_id)).text


def test_dashboard_command_exits_2_when_redis_is_unreachable() -> None:
    """An unreachable Redis: one line, exit status 2, nothing served."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = subprocess.run(
        [sys.executable, "-m", "redisbatch", "dashboard", "--url", f"redis://127.0.0.1:{port}/0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("redisbatch: cannot reach Redis") and not run.stdout


def test_views_show_rate_eta_workers_and_attempt_where_status_has_them() -> None:
    """Rate, ETA, workers and attempt are shown where JobStatus has them, else '-'."""
    from redisbatch._dashboard._views import job_view
    from tests.test_metrics import _status

    later = job_view(_status("a", "PROCESSING", rate=1234.4, eta=75.0, workers=3, attempt=2))
    assert (later["rate"], later["eta"], later["workers"], later["attempt"]) == (
        "1,234/s",
        "1m15s",
        "3",
        "2",
    )
    unknown = job_view(_status("b", "PROCESSING"))
    assert (unknown["rate"], unknown["eta"]) == ("-", "-")
    assert (later["percent"], later["done"]) == (50.0, "5 / 10")

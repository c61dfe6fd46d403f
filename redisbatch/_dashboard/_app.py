"""The dashboard's web application (Starlette; served by uvicorn).

Routes (job ids travel in the query string, ``?id=``, so that any job id,
slashes included, is one parameter):

==========================  ====  ===============================================
``/``                       GET   the jobs list, ``?page=N``, newest first
``/job?id=ID``              GET   a job's page
``/api/jobs?page=N``        GET   the jobs list page as JSON views
``/api/jobs/stream``        GET   the same, as server-sent events, on change
``/api/job?id=ID``          GET   a job's status, recent events as JSON views
``/api/job/stream?id=ID``   GET   the same, as server-sent events, until final
``/api/job/failed?id=ID``   GET   ``&format=csv|jsonl``: every failed record, the
                                  ``export_failed`` format, as a download;
                                  ``&format=json&limit=N``: the first N as views
``/api/job/ACTION?id=ID``   POST  pause, resume, abort, retry-failed
``/metrics``                GET   Prometheus text format (``redisbatch.metrics``)
``/static/...``             GET   the page's CSS and script
==========================  ====  ===============================================

Security: actions exist only when the app is built with ``actions=True``;
each needs the token in the ``X-Redisbatch-Token`` header (or a ``token``
form field), compared in constant time, and a same-origin request
(``Origin``/``Sec-Fetch-Site``); anything else answers 403, and GET on an
action answers 405. With ``allowed_hosts`` the ``Host`` header is checked
too (a page on another site cannot reach a loopback dashboard by DNS
rebinding). Every response forbids framing and inline scripts (CSP).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qs

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import metrics
from .._async_facade import AsyncDistributedImport
from .._export import EXPORT_FORMATS, FailedExport, columns_flow
from .._keys import check_job_id
from .._store import Store
from . import _reads, _views

__all__ = ["ACTIONS", "TOKEN_HEADER", "create_app"]

TOKEN_HEADER: Final = "x-redisbatch-token"
ACTIONS: Final = ("pause", "resume", "abort", "retry-failed")
PAGE_SIZE: Final = 50
EVENTS_SHOWN: Final = 10
FAILED_SHOWN: Final = 50
_json: Final = msgspec.json.Encoder(enc_hook=str)

SECURITY_HEADERS: Final = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}

_FORM: Final = "application/x-www-form-urlencoded"
_STATIC: Final = {"app.js": "text/javascript", "style.css": "text/css"}


class _Guard:
    """Adds the security headers to every response; with ``allowed_hosts``,
    answers 400 to a request whose ``Host`` is not one of them."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str] | None) -> None:
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed is not None:
            host = _host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
            if host not in self.allowed:
                await Response("bad Host header\n", 400)(scope, receive, send)
                return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _host_name(host: str) -> str:
    """The host of a ``Host`` header, without its port (``[::1]:80`` -> ``[::1]``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class _State:
    def __init__(
        self,
        connect: Callable[[], Any],
        namespace: str,
        interval: float,
        actions: bool,
        token: str | None,
    ) -> None:
        self.connect = connect
        self.namespace = namespace
        self.interval = interval
        self.actions = actions
        self.token = token
        self.client: Any = None
        self.di: AsyncDistributedImport | None = None

    @property
    def facade(self) -> AsyncDistributedImport:
        if self.di is None:
            raise RuntimeError("the dashboard app was not started (lifespan)")
        return self.di

    @property
    def store(self) -> Store:
        return self.facade._core.store

    async def run(self, flow: Any) -> Any:
        return await self.facade._driver.run(flow)


def create_app(
    connect: Callable[[], Any],
    *,
    namespace: str = "redisbatch",
    actions: bool = False,
    token: str | None = None,
    interval: float = 1.0,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The dashboard of ``namespace``. ``connect()`` makes the ``redis.asyncio``
    client (called when the app starts, in the server's event loop). With
    ``actions``, ``token`` is required and every action must carry it."""
    if actions and not token:
        raise ValueError("actions need a token")
    state = _State(connect, namespace, interval, actions, token)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.client = connect()
        state.di = AsyncDistributedImport(state.client, namespace=namespace)
        try:
            yield
        finally:
            await state.client.aclose()

    routes = [
        Route("/", _page_handler(state, _jobs_html)),
        Route("/job", _page_handler(state, _job_html)),
        Route("/api/jobs", _page_handler(state, _jobs_json)),
        Route("/api/jobs/stream", _page_handler(state, _jobs_stream)),
        Route("/api/job", _page_handler(state, _job_json)),
        Route("/api/job/stream", _page_handler(state, _job_stream)),
        Route("/api/job/failed", _page_handler(state, _job_failed)),
        Route("/metrics", _page_handler(state, _metrics)),
        Route("/static/{name}", _static),
        *(
            Route(f"/api/job/{action}", _page_handler(state, _action(action)), methods=["POST"])
            for action in ACTIONS
        ),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(_Guard, allowed_hosts=allowed_hosts)
    return app


Handler = Callable[[_State, Request], Any]


def _page_handler(state: _State, handler: Handler) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        result: Response = await handler(state, request)
        return result

    endpoint.__name__ = handler.__name__
    return endpoint


def _json_response(value: Any, status: int = 200) -> Response:
    return Response(_json.encode(value), status, media_type="application/json")


def _job_id(request: Request) -> str | None:
    """The ``id`` query parameter if it is a valid job id, else None."""
    value = request.query_params.get("id")
    if value is None:
        return None
    try:
        return check_job_id(value)
    except ValueError:
        return None


def _int_param(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


# ---------------------------------------------------------------- reads


async def _jobs_data(state: _State, page_no: int) -> tuple[_reads.JobsPage, dict[str, Any]]:
    page = await state.run(_reads.page_flow(state.store, page_no, PAGE_SIZE))
    data = {
        "page": page.page,
        "pages": page.pages,
        "total": page.total,
        "jobs": [_views.job_view(j) for j in page.jobs],
    }
    return page, data


async def _jobs_html(state: _State, request: Request) -> Response:
    page, _ = await _jobs_data(state, _int_param(request, "page", 1))
    return HTMLResponse(_views.jobs_page(state.namespace, page, state.interval))


async def _jobs_json(state: _State, request: Request) -> Response:
    _, data = await _jobs_data(state, _int_param(request, "page", 1))
    return _json_response(data)


async def _job_data(state: _State, job_id: str) -> dict[str, Any] | None:
    status = await state.facade.status(job_id)
    if status is None:
        return None
    events = await state.run(_reads.events_flow(state.store, job_id, EVENTS_SHOWN))
    return {
        "job": _views.job_view(status),
        "events": [_views.event_view(e) for e in events],
    }


def _not_found(job_id: str | None) -> Response:
    return _json_response({"error": f"no job {job_id!r}"}, 404)


async def _job_html(state: _State, request: Request) -> Response:
    job_id = _job_id(request)
    status = None if job_id is None else await state.facade.status(job_id)
    if job_id is None or status is None:
        return HTMLResponse(
            _views.not_found_page(state.namespace, request.query_params.get("id", "")), 404
        )
    events = await state.run(_reads.events_flow(state.store, job_id, EVENTS_SHOWN))
    failed = await state.run(_reads.failed_flow(state.store, job_id, FAILED_SHOWN))
    return HTMLResponse(
        _views.job_page(
            state.namespace,
            status,
            events,
            failed.records,
            interval=state.interval,
            actions=state.actions,
            retry=hasattr(state.facade, "retry_failed"),
        )
    )


async def _job_json(state: _State, request: Request) -> Response:
    job_id = _job_id(request)
    data = None if job_id is None else await _job_data(state, job_id)
    return _not_found(job_id) if data is None else _json_response(data)


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _json.encode(data) + b"\n\n"


def _stream(
    fetch: Callable[[], Any], interval: float, final: Callable[[Any], bool]
) -> StreamingResponse:
    """Sends ``await fetch()`` as an ``update`` event whenever it changes (a
    comment every 15 s otherwise); ends with an ``end`` event once
    ``final(data)``, or when ``fetch`` answers None (the job is gone)."""

    async def events() -> AsyncIterator[bytes]:
        last: bytes | None = None
        quiet = 0.0
        while True:
            data = await fetch()
            if data is None:
                yield _sse("end", {"reason": "gone"})
                return
            encoded = _json.encode(data)
            if encoded != last:
                last, quiet = encoded, 0.0
                yield b"event: update\ndata: " + encoded + b"\n\n"
            elif quiet >= 15.0:
                quiet = 0.0
                yield b": still here\n\n"
            if final(data):
                yield _sse("end", {"reason": "final"})
                return
            await asyncio.sleep(interval)
            quiet += interval

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"x-accel-buffering": "no"}
    )


async def _jobs_stream(state: _State, request: Request) -> Response:
    page_no = _int_param(request, "page", 1)

    async def fetch() -> Any:
        return (await _jobs_data(state, page_no))[1]

    return _stream(fetch, state.interval, final=lambda data: False)


async def _job_stream(state: _State, request: Request) -> Response:
    job_id = _job_id(request)
    if job_id is None or await state.facade.status(job_id) is None:
        return _not_found(job_id)

    async def fetch() -> Any:
        return await _job_data(state, job_id)

    return _stream(fetch, state.interval, final=lambda data: bool(data["job"]["complete"]))


async def _job_failed(state: _State, request: Request) -> Response:
    job_id = _job_id(request)
    fmt = request.query_params.get("format", "csv")
    if job_id is None:
        return _not_found(job_id)
    if fmt == "json":
        if await state.facade.status(job_id) is None:
            return _not_found(job_id)
        limit = max(1, min(_int_param(request, "limit", FAILED_SHOWN), 1000))
        page = await state.run(_reads.failed_flow(state.store, job_id, limit))
        return _json_response(
            {"records": [_views.failed_view(r) for r in page.records], "complete": page.complete}
        )
    if fmt not in EXPORT_FORMATS:
        return _json_response({"error": f"format must be csv, jsonl or json, not {fmt!r}"}, 400)
    exists, columns = await state.run(columns_flow(state.store, job_id))
    if not exists:
        return _not_found(job_id)
    di = state.facade

    async def body() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        with FailedExport(buffer, fmt, columns) as out:
            async for record in di.failed_records(job_id):
                out.write(record)
                if buffer.tell() >= 64 * 1024:
                    yield buffer.getvalue().encode()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue().encode()

    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in job_id)[:80]
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    return StreamingResponse(
        body(),
        media_type=media,
        headers={
            "content-disposition": f'attachment; filename="failed-{safe_name}.{fmt}"',
        },
    )


async def _metrics(state: _State, request: Request) -> Response:
    text = metrics.render(await metrics.acollect(state.facade))
    return Response(text, media_type=metrics.CONTENT_TYPE)


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _STATIC:
        return Response("not found\n", 404)
    body = resources.files(__package__).joinpath("static", name).read_bytes()
    return Response(body, media_type=_STATIC[name])


# ---------------------------------------------------------------- actions


async def _refusal(request: Request, state: _State) -> str | None:
    """Why this action request is refused, or None to let it through."""
    if not state.actions or not state.token:
        return "actions are disabled (start the dashboard with --allow-actions)"
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return "cross-site request"
    origin = request.headers.get("origin")
    if origin is not None:
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin.lower() != expected.lower():
            return "cross-origin request"
    given = request.headers.get(TOKEN_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(_FORM):
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = form["token"][0] if form.get("token") else None
    if given is None:
        return "missing token"
    if not hmac.compare_digest(given.encode(), state.token.encode()):
        return "wrong token"
    return None


def _action(action: str) -> Handler:
    async def act(state: _State, request: Request) -> Response:
        if (why := await _refusal(request, state)) is not None:
            return _json_response({"error": why}, 403)
        job_id = _job_id(request)
        if job_id is None or await state.facade.status(job_id) is None:
            return _not_found(job_id)
        di: Any = state.facade
        if action == "retry-failed":
            retry = getattr(di, "retry_failed", None)
            if retry is None:
                return _json_response({"error": "this version cannot retry failed records"}, 404)
            try:
                result: Any = await retry(job_id)
            except ValueError as exc:  # ConfigurationError: not a finished job
                return _json_response({"error": str(exc)}, 409)
            changed = bool(result)
        else:
            result = changed = bool(await getattr(di, action)(job_id))
        status = await di.status(job_id)
        return _json_response(
            {
                "action": action,
                "changed": changed,
                "result": result,
                "state": None if status is None else status.state,
            }
        )

    act.__name__ = f"action_{action.replace('-', '_')}"
    return act

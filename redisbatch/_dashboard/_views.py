"""What the pages show, computed once in Python: the server renders it into
the first HTML, and sends the same views as JSON to the page's script, which
only copies text into place (``textContent``, never HTML).

Every string a user controls (job ids, record values, error messages, event
fields) goes into HTML only through :func:`esc` here, and into the page's
script only as JSON data.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final
from urllib.parse import quote

import msgspec

from .._progress import describe_eta, settled
from .._results import JobStatus, ProcessedRecord
from ._reads import Event, JobsPage

__all__ = [
    "event_view",
    "failed_view",
    "job_page",
    "job_url",
    "job_view",
    "jobs_page",
    "not_found_page",
]

_json: Final = msgspec.json.Encoder(enc_hook=str)
BATCH_STATES: Final = ("pending", "processing", "completed", "failed")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def job_url(job_id: str, path: str = "/job") -> str:
    return f"{path}?id={quote(job_id, safe='')}"


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _optional(status: JobStatus, name: str) -> Any:
    return getattr(status, name, None)


def job_view(s: JobStatus) -> dict[str, Any]:
    """A job's figures as the pages show them."""
    done = settled(s)
    if s.total_records:
        percent = min(100.0, 100.0 * done / s.total_records)
    else:
        percent = 100.0 if s.is_complete else 0.0
    rate, eta = _optional(s, "rate"), _optional(s, "eta")
    workers, attempt = _optional(s, "workers"), _optional(s, "attempt")
    return {
        "job_id": s.job_id,
        "url": job_url(s.job_id),
        "state": s.state,
        "complete": s.is_complete,
        "percent": round(percent, 1),
        "percent_text": f"{percent:.0f}%",
        "done": f"{done:,} / {s.total_records:,}",
        "processed": f"{s.processed_records:,}",
        "failed": f"{s.failed_records:,}",
        "failed_count": s.failed_records,
        "rate": "-" if rate is None else f"{rate:,.0f}/s",
        "eta": "-" if eta is None else ("0s" if s.is_complete else describe_eta(eta)),
        "workers": "-" if workers is None else str(workers),
        "attempt": "-" if attempt is None else str(attempt),
        "created": _when(s.created_at),
        "started": _when(s.started_at),
        "completed": _when(s.completed_at),
        "error": s.error or "",
        "batches": {
            "total": s.total_batches,
            "pending": s.pending_batches,
            "processing": s.processing_batches,
            "completed": s.completed_batches,
            "failed": s.failed_batches,
        },
    }


def event_view(event: Event) -> dict[str, str]:
    fields = dict(event.fields)
    kind = fields.pop("type", "?")
    batch = fields.pop("batch", "")
    stamp = (
        time.strftime("%H:%M:%S", time.localtime(event.at)) + f".{int(event.at * 1000) % 1000:03d}"
    )
    return {
        "time": stamp,
        "type": kind,
        "batch": batch,
        "detail": " ".join(f"{k}={v}" for k, v in fields.items()),
    }


def failed_view(record: ProcessedRecord) -> dict[str, str]:
    errors = [f"{e.field}: {e.message}" if e.field else e.message for e in record.errors]
    codes = [e.code for e in record.errors]
    if record.processing_error is not None:
        errors.append(record.processing_error)
        codes.append("PROCESSING_ERROR")
    line = getattr(record, "line", None)
    raw = record.raw if isinstance(record.raw, dict) else {}
    return {
        "row": str(record.index),
        "line": "" if line is None else str(line),
        "codes": ", ".join(codes),
        "errors": "; ".join(errors),
        "values": _json.encode(raw).decode(),
    }


# ---------------------------------------------------------------- HTML


def _head(title: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>"
        '<link rel=stylesheet href="/static/style.css">'
        '<script defer src="/static/app.js"></script></head>'
    )


def _bar(view: dict[str, Any]) -> str:
    return (
        f'<progress class="state-{esc(view["state"])}" max=100 value="{view["percent"]}" '
        f"data-bind=bar>{esc(view['percent_text'])}</progress>"
        f"<span class=pct data-bind=percent_text>{esc(view['percent_text'])}</span>"
    )


JOB_COLUMNS: Final = (
    "Job",
    "State",
    "Progress",
    "Done",
    "Rate",
    "ETA",
    "Workers",
    "Failed",
    "Created",
)


def _job_row(view: dict[str, Any]) -> str:
    return (
        f'<tr data-job="{esc(view["job_id"])}">'
        f'<td class=job><a href="{esc(view["url"])}">{esc(view["job_id"])}</a></td>'
        f'<td><span class="state state-{esc(view["state"])}">{esc(view["state"])}</span></td>'
        f"<td class=progress>{_bar(view)}</td>"
        f"<td class=num>{esc(view['done'])}</td>"
        f"<td class=num>{esc(view['rate'])}</td>"
        f"<td class=num>{esc(view['eta'])}</td>"
        f"<td class=num>{esc(view['workers'])}</td>"
        f"<td class=num>{esc(view['failed'])}</td>"
        f"<td>{esc(view['created'])}</td></tr>"
    )


def _pager(page: int, pages: int) -> str:
    prev = f'<a href="/?page={page - 1}" rel=prev>&larr; newer</a>' if page > 1 else ""
    nxt = f'<a href="/?page={page + 1}" rel=next>older &rarr;</a>' if page < pages else ""
    return f"<nav class=pager>{prev} <span>page {page} of {pages}</span> {nxt}</nav>"


def jobs_page(namespace: str, page: JobsPage, interval: float) -> str:
    rows = "".join(_job_row(job_view(j)) for j in page.jobs)
    empty = "" if page.jobs else "<p class=empty>No jobs in this namespace.</p>"
    numeric = {"Done", "Rate", "ETA", "Workers", "Failed"}
    header = "".join(
        f"<th class=num>{c}</th>" if c in numeric else f"<th>{c}</th>" for c in JOB_COLUMNS
    )
    return (
        f"{_head(f'redisbatch · {namespace}')}"
        f'<body data-page=jobs data-page-no="{page.page}" data-interval="{interval}">'
        f"<header><h1><a href='/'>redisbatch</a></h1>"
        f"<span class=ns>namespace <b>{esc(namespace)}</b></span>"
        f"<span class=live data-bind=live>connecting</span></header><main>"
        f"<p class=count id=count>{page.total:,} job{'' if page.total == 1 else 's'}</p>"
        f"<table class=jobs><thead><tr>{header}</tr></thead><tbody id=jobs>{rows}</tbody></table>"
        f"{empty}{_pager(page.page, page.pages)}</main></body></html>"
    )


def _events_rows(events: Iterable[dict[str, str]]) -> str:
    return "".join(
        f"<tr><td>{esc(e['time'])}</td><td>{esc(e['type'])}</td>"
        f"<td class=num>{esc(e['batch'])}</td><td>{esc(e['detail'])}</td></tr>"
        for e in events
    )


def _failed_rows(records: Iterable[dict[str, str]]) -> str:
    return "".join(
        f"<tr><td class=num>{esc(r['row'])}</td><td class=num>{esc(r['line'])}</td>"
        f"<td>{esc(r['codes'])}</td><td>{esc(r['errors'])}</td>"
        f"<td class=values>{esc(r['values'])}</td></tr>"
        for r in records
    )


def _fact(label: str, key: str, view: dict[str, Any]) -> str:
    return f"<div><dt>{label}</dt><dd data-bind={key}>{esc(view[key])}</dd></div>"


def job_page(
    namespace: str,
    status: JobStatus,
    events: Sequence[Event],
    failed: Sequence[ProcessedRecord],
    *,
    interval: float,
    actions: bool,
    retry: bool,
) -> str:
    view = job_view(status)
    job_id = status.job_id
    batches = "".join(
        f"<div class=batch-{b}><dt>{b}</dt><dd data-bind=batches.{b}>"
        f"{view['batches'][b]:,}</dd></div>"
        for b in BATCH_STATES
    )
    facts = "".join(
        _fact(label, key, view)
        for label, key in (
            ("records", "done"),
            ("processed", "processed"),
            ("failed", "failed"),
            ("rate", "rate"),
            ("ETA", "eta"),
            ("workers", "workers"),
            ("attempt", "attempt"),
            ("created", "created"),
            ("started", "started"),
            ("finished", "completed"),
        )
    )
    controls = ""
    if actions:
        buttons = "".join(
            f'<button type=button data-action="{a}">{label}</button>'
            for a, label in (
                ("pause", "Pause"),
                ("resume", "Resume"),
                ("abort", "Abort"),
                *((("retry-failed", "Retry failed"),) if retry else ()),
            )
        )
        controls = (
            "<section class=actions><h2>Actions</h2>"
            "<label>token <input type=password id=token autocomplete=off "
            "placeholder='printed by redisbatch dashboard'></label>"
            f"{buttons}<output id=action-result role=status></output></section>"
        )
    download = job_url(job_id, "/api/job/failed")
    return (
        f"{_head(f'redisbatch · {job_id}')}"
        f'<body data-page=job data-job="{esc(job_id)}" data-interval="{interval}">'
        f"<header><h1><a href='/'>redisbatch</a></h1>"
        f"<span class=ns>namespace <b>{esc(namespace)}</b></span>"
        f"<span class=live data-bind=live>connecting</span></header><main>"
        f"<h2 class=job-id>{esc(job_id)}</h2>"
        f'<p><span class="state state-{esc(view["state"])}" data-bind=state>{esc(view["state"])}'
        f"</span> <span class=error data-bind=error>{esc(view['error'])}</span></p>"
        f"<div class=progress-line>{_bar(view)}</div>"
        f"<dl class=facts>{facts}</dl>"
        f"<h2>Batches</h2><dl class=batches>{batches}</dl>"
        f"{controls}"
        "<h2>Recent events</h2><table class=events><thead><tr><th>Time</th><th>Event</th>"
        f"<th class=num>Batch</th><th>Detail</th></tr></thead><tbody id=events>"
        f"{_events_rows(map(event_view, events))}</tbody></table>"
        "<h2>Failed records <span class=muted>(first "
        f"<span id=failed-shown>{len(failed)}</span> shown)</span></h2>"
        "<p class=downloads>Download all: "
        f'<a id=download-csv href="{esc(download)}&amp;format=csv" download>CSV</a> · '
        f'<a id=download-jsonl href="{esc(download)}&amp;format=jsonl" download>JSONL</a></p>'
        "<table class=failed><thead><tr><th class=num>Row</th><th class=num>Line</th>"
        "<th>Codes</th><th>Errors</th>"
        f"<th>Values</th></tr></thead><tbody id=failed>{_failed_rows(map(failed_view, failed))}"
        "</tbody></table>"
        "</main></body></html>"
    )


def not_found_page(namespace: str, job_id: str) -> str:
    return (
        f"{_head('redisbatch · not found')}<body data-page=none>"
        f"<header><h1><a href='/'>redisbatch</a></h1>"
        f"<span class=ns>namespace <b>{esc(namespace)}</b></span></header><main>"
        f"<p>No job <b>{esc(job_id)}</b> in this namespace (it may have expired).</p>"
        "</main></body></html>"
    )

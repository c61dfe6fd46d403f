"""Prometheus figures of a namespace's jobs, for the dashboard's ``/metrics`` and
for embedding in an existing Prometheus or OpenTelemetry setup.

``collect(di)`` (``acollect`` for the async facade) reads them;
``render(families)`` writes the Prometheus text format, to be served with
the content type ``CONTENT_TYPE``; ``families(statuses, namespace)`` turns
``JobStatus`` snapshots into ``MetricFamily`` objects without Redis.
``STATES`` lists every job state, in lifecycle order.

The figures are the ``status()`` snapshots of the namespace's jobs (one
``jobs()`` call: O(1) Redis work per job), turned into gauges:

=========================================  ==========================================
``redisbatch_jobs{namespace,state}``        jobs in each state (every state, zeros too)
``redisbatch_job_records{...,outcome}``     records: ``total``, ``processed``, ``failed``
``redisbatch_job_batches{...,batch_state}`` batches: ``pending``, ``processing``,
                                            ``completed``, ``failed``
``redisbatch_job_rate``                     records settled per second (when known)
``redisbatch_job_eta_seconds``              seconds to the end (when known)
``redisbatch_job_workers``                  workers active on the job (when known)
``redisbatch_job_attempt``                  the job's attempt (1 for the first run)
=========================================  ==========================================

Per-job gauges carry the labels ``namespace``, ``job_id`` and ``state``.
Everything is a gauge: a redrive makes processed/failed counts move both ways.

``prometheus_client`` is not needed: the text format is a few lines of
escaping, and this module stays importable without the ``web`` extra. To
serve the same figures from an existing ``prometheus_client`` registry, wrap
:func:`collect` in a custom collector whose ``collect()`` yields a
``prometheus_client.core.GaugeMetricFamily`` per family with each sample's
labels and value; for OpenTelemetry,
read :func:`collect`'s families in an observable-gauge callback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from ._results import JobStatus

__all__ = [
    "CONTENT_TYPE",
    "STATES",
    "MetricFamily",
    "Sample",
    "acollect",
    "collect",
    "families",
    "render",
]

#: Every state a job can be in, in lifecycle order.
STATES: Final = ("PREPARING", "PROCESSING", "PAUSED", "COMPLETED", "FAILED", "ABORTED")

#: The content type of :func:`render`'s output.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class Sample(msgspec.Struct, frozen=True):
    """One value of a metric family: ``labels`` (label name to value) and
    ``value``."""

    labels: dict[str, str]
    value: float


class MetricFamily(msgspec.Struct, frozen=True):
    """A metric: its ``name``, ``type`` (always ``"gauge"``), ``help`` text and
    ``samples`` (a list of ``Sample``)."""

    name: str
    type: str
    help: str
    samples: list[Sample]


def _optional(status: JobStatus, name: str) -> float | None:
    """A JobStatus field that not every version has (rate, eta, workers, attempt)."""
    value = getattr(status, name, None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def families(statuses: Iterable[JobStatus], namespace: str) -> list[MetricFamily]:
    """The metric families (see the module's table) of the ``JobStatus``
    snapshots ``statuses``, labelled with ``namespace``. Pure: no Redis.
    Families for figures a snapshot lacks (rate, ETA) have fewer samples."""
    jobs = list(statuses)
    by_state = dict.fromkeys(STATES, 0)
    for status in jobs:
        by_state[status.state] = by_state.get(status.state, 0) + 1

    def job_labels(status: JobStatus, **extra: str) -> dict[str, str]:
        return {"namespace": namespace, "job_id": status.job_id, "state": status.state, **extra}

    records: list[Sample] = []
    batches: list[Sample] = []
    optional: dict[str, list[Sample]] = {"rate": [], "eta": [], "workers": [], "attempt": []}
    for s in jobs:
        for outcome, value in (
            ("total", s.total_records),
            ("processed", s.processed_records),
            ("failed", s.failed_records),
        ):
            records.append(Sample(job_labels(s, outcome=outcome), float(value)))
        for batch_state, value in (
            ("pending", s.pending_batches),
            ("processing", s.processing_batches),
            ("completed", s.completed_batches),
            ("failed", s.failed_batches),
        ):
            batches.append(Sample(job_labels(s, batch_state=batch_state), float(value)))
        for name, samples in optional.items():
            figure = _optional(s, name)
            if figure is not None:
                samples.append(Sample(job_labels(s), figure))
    return [
        MetricFamily(
            "redisbatch_jobs",
            "gauge",
            "Jobs of the namespace in each state.",
            [Sample({"namespace": namespace, "state": k}, float(v)) for k, v in by_state.items()],
        ),
        MetricFamily(
            "redisbatch_job_records",
            "gauge",
            "Records of a job: total stored, processed, failed (invalid or failed in processing).",
            records,
        ),
        MetricFamily(
            "redisbatch_job_batches",
            "gauge",
            "Batches of a job by batch state.",
            batches,
        ),
        MetricFamily(
            "redisbatch_job_rate",
            "gauge",
            "Records settled per second over the last minute of commits.",
            optional["rate"],
        ),
        MetricFamily(
            "redisbatch_job_eta_seconds",
            "gauge",
            "Estimated seconds until the job ends (0 once final).",
            optional["eta"],
        ),
        MetricFamily(
            "redisbatch_job_workers",
            "gauge",
            "Workers that committed or heartbeated within the stale timeout.",
            optional["workers"],
        ),
        MetricFamily(
            "redisbatch_job_attempt",
            "gauge",
            "The job's attempt: 1 for the first run, one more per redrive.",
            optional["attempt"],
        ),
    ]


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() else repr(value)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def render(metric_families: Iterable[MetricFamily]) -> str:
    """The Prometheus text exposition format (version 0.0.4, served as
    ``CONTENT_TYPE``) of ``metric_families``, as a string. A family without
    samples is left out."""
    lines: list[str] = []
    for family in metric_families:
        if not family.samples:
            continue
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {family.name} {help_text}")
        lines.append(f"# TYPE {family.name} {family.type}")
        lines.extend(f"{family.name}{_labels(s.labels)} {_number(s.value)}" for s in family.samples)
    return "\n".join(lines) + "\n" if lines else ""


def _namespace(di: Any) -> str:
    return str(di._core.store.namespace)


def collect(di: Any) -> list[MetricFamily]:
    """The metric families of every job in the namespace of ``di`` (a
    ``DistributedImport``): one ``jobs()`` call, O(1) Redis work per job.
    Pass the result to ``render``, or read it from a custom collector."""
    return families(di.jobs(), _namespace(di))


async def acollect(di: Any) -> list[MetricFamily]:
    """``collect`` for an ``AsyncDistributedImport`` ``di``: awaits its
    ``jobs()`` and returns the same metric families."""
    return families(await di.jobs(), _namespace(di))

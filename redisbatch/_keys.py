"""Every Redis key name redisbatch uses, derived in one place.

All keys of one job share the hash tag ``{<job_id>}``: every script touching
them is legal on Redis Cluster, and a job lives on one shard. The namespace's
job index sits outside any job's tag and is written by plain commands only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._exceptions import ConfigurationError

__all__ = [
    "CONSUMER_GROUP",
    "JobKeys",
    "check_job_id",
    "check_namespace",
    "check_worker_id",
    "jobs_index_key",
]

#: The one consumer group of every job's queue stream.
CONSUMER_GROUP = "workers"


def _check_name(kind: str, value: str) -> str:
    """``value`` if it is a non-empty string without braces that encodes as
    UTF-8 (it goes into key names and script arguments), else raises."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{kind} must be a non-empty string")
    if "{" in value or "}" in value:
        raise ConfigurationError(f"{kind} must not contain braces: {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(
            f"{kind} must be encodable as UTF-8: {value!r} holds {value[exc.start]!r} "
            f"at position {exc.start} (a lone surrogate)"
        ) from None
    return value


def check_job_id(job_id: str) -> str:
    """Returns ``job_id`` if it can be used inside a hash tag, else raises
    ConfigurationError."""
    return _check_name("job_id", job_id)


def check_namespace(namespace: str) -> str:
    """Returns ``namespace`` if it can prefix key names, else raises ConfigurationError."""
    return _check_name("namespace", namespace)


def check_worker_id(worker_id: str) -> str:
    """Returns ``worker_id`` if it can name a worker, else raises ConfigurationError.

    Worker ids are any non-empty string without braces: the library's own
    names (request ids, ``claim:``/``seal:`` markers) never share a namespace
    with them, and no stream consumer is ever used under a name of ours."""
    return _check_name("worker_id", worker_id)


def jobs_index_key(namespace: str) -> str:
    """The sorted set of the namespace's job ids, scored by creation time."""
    return f"{namespace}:jobs"


@dataclass(frozen=True, slots=True)
class JobKeys:
    """The keys of one job (see DESIGN notes, "Where the data lives")."""

    job: str
    queue: str
    records: str
    batches: str
    failed: str
    events: str
    unique: str
    leases: str
    workers: str

    @classmethod
    def of(cls, namespace: str, job_id: str) -> JobKeys:
        base = f"{namespace}:{{{check_job_id(job_id)}}}"
        return cls(
            job=f"{base}:job",
            queue=f"{base}:queue",
            records=f"{base}:records",
            batches=f"{base}:batches",
            failed=f"{base}:failed",
            events=f"{base}:events",
            unique=f"{base}:unique",
            leases=f"{base}:leases",
            workers=f"{base}:workers",
        )

    @property
    def all(self) -> tuple[str, str, str, str, str, str, str, str, str]:
        """The nine keys in the order every nine-key script declares them."""
        return (
            self.job,
            self.queue,
            self.records,
            self.batches,
            self.failed,
            self.events,
            self.unique,
            self.leases,
            self.workers,
        )

"""Every Redis key name redisbatch uses, derived in one place.

All keys of one job share the hash tag ``{<job_id>}``: every script touching
them is legal on Redis Cluster, and a job lives on one shard. The namespace's
job index sits outside any job's tag and is written by plain commands only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._exceptions import ConfigurationError

__all__ = ["CONSUMER_GROUP", "JobKeys", "check_job_id", "jobs_index_key"]

#: The one consumer group of every job's queue stream.
CONSUMER_GROUP = "workers"


def check_job_id(job_id: str) -> str:
    """Returns ``job_id`` if it can be used inside a hash tag, else raises."""
    if not isinstance(job_id, str) or not job_id:
        raise ConfigurationError("job_id must be a non-empty string")
    if "{" in job_id or "}" in job_id:
        raise ConfigurationError(f"job_id must not contain braces: {job_id!r}")
    return job_id


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
        )

    @property
    def all(self) -> tuple[str, str, str, str, str, str, str]:
        """The seven keys in the order every seven-key script declares them."""
        return (
            self.job,
            self.queue,
            self.records,
            self.batches,
            self.failed,
            self.events,
            self.unique,
        )

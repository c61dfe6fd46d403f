"""Every exception redisbatch raises on purpose.

::

    RedisBatchError                      base of everything below
    ├── JobExistsError                   prepare() with a job id already in use
    ├── JobNotFoundError (+LookupError)  run_worker() on a job that does not exist
    ├── SourceError                      a source could not be opened or read
    └── ConfigurationError (+ValueError) invalid options or an unusable client

Redis connection failures are not wrapped: redis-py's own exceptions
propagate, and no count has been changed twice when they do.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "JobExistsError",
    "JobNotFoundError",
    "RedisBatchError",
    "SourceError",
]


class RedisBatchError(Exception):
    """Base class of every redisbatch exception."""


class JobExistsError(RedisBatchError):
    """A job with this id already exists in the namespace."""

    def __init__(self, job_id: str, reason: str = "") -> None:
        super().__init__(f"job {job_id!r} already exists" + (f": {reason}" if reason else ""))
        self.job_id = job_id


class JobNotFoundError(RedisBatchError, LookupError):
    """No job with this id exists in the namespace (a mistyped id, a job not
    prepared yet, or one deleted or expired)."""

    def __init__(self, job_id: str, *, waited: float = 0.0) -> None:
        waiting = f" after waiting {waited:g} s for it" if waited else ""
        super().__init__(
            f"job {job_id!r} does not exist{waiting} (check the job id and the namespace; "
            "a worker started before prepare can wait with run_worker(..., wait_for_job=seconds))"
        )
        self.job_id = job_id


class SourceError(RedisBatchError):
    """The source could not be opened, read, decoded or parsed as a document."""


class ConfigurationError(RedisBatchError, ValueError):
    """An option or the Redis client given to redisbatch cannot work."""

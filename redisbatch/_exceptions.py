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
    """Base class of every redisbatch exception (catch it to catch them all).
    Redis connection failures are redis-py's own exceptions, not wrapped."""


class JobExistsError(RedisBatchError):
    """A job with this id already exists in the namespace: raised by ``prepare``
    with a ``job_id`` in use, or with ``resume=True`` on a job that is not an
    interrupted prepare (``reason`` says why and what to do: delete the job,
    or prepare under a new id). ``job_id`` is kept as an attribute."""

    def __init__(self, job_id: str, reason: str = "") -> None:
        super().__init__(f"job {job_id!r} already exists" + (f": {reason}" if reason else ""))
        self.job_id = job_id


class JobNotFoundError(RedisBatchError, LookupError):
    """No job with this id exists in the namespace (a mistyped id, a job not
    prepared yet, or one deleted or expired): raised by ``run_worker``,
    after waiting ``waited`` seconds for it (``wait_for_job``). Also a
    ``LookupError``. ``job_id`` is kept as an attribute."""

    def __init__(self, job_id: str, *, waited: float = 0.0) -> None:
        waiting = f" after waiting {waited:g} s for it" if waited else ""
        super().__init__(
            f"job {job_id!r} does not exist{waiting} (check the job id and the namespace; "
            "a worker started before prepare can wait with run_worker(..., wait_for_job=seconds))"
        )
        self.job_id = job_id


class SourceError(RedisBatchError):
    """The source could not be opened, read, decoded or parsed as a document.

    Raised by ``prepare``, ``preview`` and ``count``. When the source cannot
    be opened (a missing file, an HTTP error) no job is created; when it
    fails mid-stream (undecodable bytes, a truncated JSON document, an
    exception raised by an iterable) the job is left FAILED with ``error``
    set, and the exception is chained to its cause. The message names the
    place (line, byte offset) and what to change. A single malformed CSV row
    or NDJSON line is not an error: it becomes a ``PARSE_ERROR`` record."""


class ConfigurationError(RedisBatchError, ValueError):
    """An option, a schema or the Redis client given to redisbatch cannot work:
    the message names the argument or field. Also a ``ValueError``."""

"""Facade options, checked once at construction (shared by both facades)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._exceptions import ConfigurationError
from ._keys import check_namespace

__all__ = ["Settings", "check_client_options", "check_positive_int"]


def _number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "a positive number" if positive else "a non-negative number"
        raise ConfigurationError(f"{name} must be {need}, got {value!r}")
    return float(value)


def _integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_positive_int(name: str, value: Any) -> int:
    return _integer(name, value, 1)


@dataclass(frozen=True, slots=True)
class Settings:
    """The facades' constructor options (see ``help(DistributedImport)``), validated."""

    batch_size: int = 100
    continue_on_error: bool = True
    max_retries: int = 0
    retry_delay: float = 1.0
    stale_batch_timeout: float = 60.0
    max_batch_attempts: int = 5
    namespace: str = "redisbatch"
    retention: float | None = 7 * 24 * 3600
    max_pending_batches: int | None = None
    max_batch_bytes: int = 4 * 1024 * 1024
    tolerated_failure_count: int | None = None
    tolerated_failure_percentage: float | None = None

    def __post_init__(self) -> None:
        _integer("max_batch_bytes", self.max_batch_bytes, 1024)
        if self.tolerated_failure_count is not None:
            _integer("tolerated_failure_count", self.tolerated_failure_count, 0)
        if self.tolerated_failure_percentage is not None:
            _number("tolerated_failure_percentage", self.tolerated_failure_percentage)
            if self.tolerated_failure_percentage > 100:
                raise ConfigurationError(
                    "tolerated_failure_percentage must be at most 100, "
                    f"got {self.tolerated_failure_percentage!r}"
                )
        _integer("batch_size", self.batch_size, 1)
        _integer("max_retries", self.max_retries, 0)
        _integer("max_batch_attempts", self.max_batch_attempts, 1)
        _number("retry_delay", self.retry_delay)
        _number("stale_batch_timeout", self.stale_batch_timeout, positive=True)
        if self.retention is not None:
            _number("retention", self.retention)
        if self.max_pending_batches is not None:
            _integer("max_pending_batches", self.max_pending_batches, 1)
        if not isinstance(self.continue_on_error, bool):
            raise TypeError("continue_on_error must be a bool")
        check_namespace(self.namespace)

    @property
    def heartbeat_interval(self) -> float:
        """Workers heartbeat three times per stale timeout."""
        return self.stale_batch_timeout / 3

    @property
    def poll_interval(self) -> tuple[float, float]:
        """(first, longest) wait between claims while nothing is claimable."""
        longest = min(1.0, max(0.01, self.stale_batch_timeout / 4))
        return min(0.02, longest), longest


def check_client_options(connection_kwargs: dict[str, Any]) -> None:
    """Refuses a client that decodes replies: payloads are binary msgpack."""
    if connection_kwargs.get("decode_responses"):
        raise ConfigurationError(
            "redis: the client was created with decode_responses=True; redisbatch stores "
            "binary payloads and needs a client with decode_responses=False"
        )

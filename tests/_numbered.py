"""The one-field schema and source the async facade's tests share: records
``{"n": "<i>"}`` checked as required integers."""

from __future__ import annotations

from redisbatch import Field, IterableSource, Schema

SCHEMA = Schema([Field("n", "integer", required=True)])


def numbered(count: int) -> IterableSource:
    """``count`` records, ``n`` = "0", "1", ... as text (the schema makes them ints)."""
    return IterableSource({"n": str(i)} for i in range(count))

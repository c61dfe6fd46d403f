"""redisbatch: distributed batch imports on Redis.

One orchestrator ``prepare``s a source into batches held in Redis; any number
of workers claim and process them; exactly one of them finalizes the job.
"""

__version__ = "0.1.0"  # the package version, read by the build (pyproject: [tool.hatch.version])

from ._async_facade import AsyncDistributedImport
from ._codec import ABSENT
from ._csv import CsvParser
from ._events import (
    BatchClaimed,
    BatchCompleted,
    BatchFailed,
    BatchStarted,
    DistributedPrepared,
    Event,
    JobCompleted,
    RecordFailed,
    RecordProcessed,
    RecordRetried,
)
from ._exceptions import (
    ConfigurationError,
    JobExistsError,
    JobNotFoundError,
    RedisBatchError,
    SourceError,
)
from ._facade import DistributedImport
from ._hooks import BatchProcessor, DuplicateChecker, DuplicateResult, Hooks, batch_processor
from ._parsers import JsonParser, Parser, XmlParser
from ._results import (
    BatchContext,
    BatchResult,
    JobStatus,
    JobSummary,
    PrepareResult,
    PreviewResult,
    ProcessedRecord,
    ProcessingContext,
    ValidationError,
    WorkerSummary,
)
from ._sample import generate_template
from ._schema import MISSING, Field, FieldCheck, Schema
from ._sources import BytesSource, FileSource, IterableSource, UrlSource

__all__ = [
    "ABSENT",
    "MISSING",
    "AsyncDistributedImport",
    "BatchClaimed",
    "BatchCompleted",
    "BatchContext",
    "BatchFailed",
    "BatchProcessor",
    "BatchResult",
    "BatchStarted",
    "BytesSource",
    "ConfigurationError",
    "CsvParser",
    "DistributedImport",
    "DistributedPrepared",
    "DuplicateChecker",
    "DuplicateResult",
    "Event",
    "Field",
    "FieldCheck",
    "FileSource",
    "Hooks",
    "IterableSource",
    "JobCompleted",
    "JobExistsError",
    "JobNotFoundError",
    "JobStatus",
    "JobSummary",
    "JsonParser",
    "Parser",
    "PrepareResult",
    "PreviewResult",
    "ProcessedRecord",
    "ProcessingContext",
    "RecordFailed",
    "RecordProcessed",
    "RecordRetried",
    "RedisBatchError",
    "Schema",
    "SourceError",
    "UrlSource",
    "ValidationError",
    "WorkerSummary",
    "XmlParser",
    "batch_processor",
    "generate_template",
]

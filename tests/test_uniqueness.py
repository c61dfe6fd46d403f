"""unique_fields across a distributed job, the duplicate checker, Schema.from_struct."""

from __future__ import annotations

import datetime
import random
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import pytest

from redisbatch import (
    DistributedImport,
    DuplicateResult,
    Field,
    Hooks,
    IterableSource,
    ProcessedRecord,
    Schema,
)

Make = Callable[..., DistributedImport]

UNIQUE = Schema(
    [Field("email", "email", required=True), Field("n", "integer")], unique_fields=["email", "n"]
)


def _duplicates(di: DistributedImport, job: str) -> list[tuple[int, str, str]]:
    return [
        (r.index, e.field, e.message)
        for r in di.failed_records(job)
        for e in r.errors
        if e.code == "DUPLICATE_VALUE"
    ]


def test_first_occurrence_in_source_order_is_valid(make_import: Make) -> None:
    """Later occurrences (case-insensitive, across batches) get DUPLICATE_VALUE naming the first."""
    di = make_import(UNIQUE, batch_size=2)
    rows = [
        {"email": "a@x.io", "n": "1"},
        {"email": "b@x.io", "n": "2"},
        {"email": "A@X.IO", "n": "3"},  # email dup of 0
        {"email": "c@x.io", "n": "2.0"},  # n dup of 1
        {"email": "d@x.io", "n": ""},  # empty values take no part
        {"email": "e@x.io", "n": ""},
        {"email": "a@x.io", "n": "1"},  # both dups of 0
    ]
    job = di.prepare(IterableSource(rows)).job_id
    summary = di.run_worker(job, lambda r, c: None)
    assert (summary.processed, summary.failed) == (4, 3)
    assert _duplicates(di, job) == [
        (2, "email", "email duplicates record 0"),
        (3, "n", "n duplicates record 1"),
        (6, "email", "email duplicates record 0"),
        (6, "n", "n duplicates record 0"),
    ]
    record = next(iter(di.failed_records(job)))
    assert record.errors[0].category == "DUPLICATE" and record.status == "invalid"


def test_a_default_takes_part_in_uniqueness(make_import: Make) -> None:
    """An empty value that a default fills in is that value for uniqueness too."""
    schema = Schema([Field("code", default="NONE"), Field("n")], unique_fields=["code"])
    di = make_import(schema)
    job = di.prepare(IterableSource([{"code": "", "n": 1}, {"n": 2}, {"code": "x", "n": 3}]))
    summary = di.run_worker(job.job_id, lambda r, c: None)
    assert (summary.processed, summary.failed) == (2, 1)
    assert _duplicates(di, job.job_id) == [(1, "code", "code duplicates record 0")]
    from redisbatch import BytesSource, CsvParser

    job = di.prepare(BytesSource(b"n\n1\n2\n"), CsvParser())  # no code column at all
    di.run_worker(job.job_id, lambda r, c: None)
    assert _duplicates(di, job.job_id) == [(1, "code", "code duplicates record 0")]


def test_uniqueness_is_deterministic_across_workers_and_timing(make_import: Make) -> None:
    """4 workers in random order, three runs: identical valid and duplicate sets."""
    rng = random.Random(5)
    rows = [{"email": f"u{rng.randrange(60)}@x.io", "n": str(i)} for i in range(300)]
    outcomes = []
    for run in range(3):
        di = make_import(UNIQUE, batch_size=7)
        job = di.prepare(IterableSource(rows), job_id=f"run{run}").job_id
        processed: list[int] = []
        lock = threading.Lock()

        def processor(record: Any, ctx: Any, sink: list[int] = processed, lock: Any = lock) -> None:
            with lock:
                sink.append(ctx.record_index)
            if rng.random() < 0.3:
                threading.Event().wait(0.001)

        threads = [
            threading.Thread(target=di.run_worker, args=(job, processor, f"w{i}")) for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outcomes.append((sorted(processed), _duplicates(di, job)))
    assert outcomes[0] == outcomes[1] == outcomes[2]
    seen: set[str] = set()
    expected_valid = []
    for i, row in enumerate(rows):
        if row["email"] not in seen:
            expected_valid.append(i)
            seen.add(row["email"])
    assert outcomes[0][0] == expected_valid


def test_uniqueness_works_on_csv_headers_with_aliases(make_import: Make) -> None:
    """Unique fields are found through aliases in a CSV header."""
    from redisbatch import BytesSource, CsvParser

    schema = Schema([Field("email", "email", aliases=["E-Mail"])], unique_fields=["email"])
    di = make_import(schema)
    job = di.prepare(BytesSource(b"E-Mail,x\na@x.io,1\nA@x.io,2\n"), CsvParser()).job_id
    di.run_worker(job, lambda r, c: None)
    assert _duplicates(di, job) == [(1, "email", "email duplicates record 0")]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (True, "Duplicate of an existing record"),
        (DuplicateResult(True, existing_id=42), "Duplicate of an existing record (42)"),
        (RuntimeError("lookup down"), "Duplicate check failed: lookup down"),
    ],
)
def test_duplicate_checker(make_import: Make, answer: Any, message: str) -> None:
    """The checker marks external duplicates; its failure is EXTERNAL_DUPLICATE too."""
    asked: list[Any] = []

    def checker(record: Any, ctx: Any) -> Any:
        asked.append(record["n"])
        if record["n"] == 1:
            if isinstance(answer, Exception):
                raise answer
            return answer
        return DuplicateResult(False)

    di = make_import(Schema([Field("n", "integer")]), duplicate_checker=checker)
    job = di.prepare(IterableSource([{"n": "0"}, {"n": "1"}, {"n": "x"}])).job_id
    assert di.run_worker(job, lambda r, c: None).processed == 1
    assert asked == [0, 1], "only records still valid are checked"
    failed = list(di.failed_records(job))
    assert [(r.index, r.errors[-1].code) for r in failed] == [
        (1, "EXTERNAL_DUPLICATE"),
        (2, "TYPE_MISMATCH"),
    ]
    assert failed[0].errors[-1].message == message


class User(msgspec.Struct):
    email: Annotated[str, msgspec.Meta(pattern="@")]
    age: Annotated[int, msgspec.Meta(ge=0, le=130)] = 0
    score: float | None = None
    country: Literal["DE", "FR"] = "DE"
    tags: list[str] = []
    born: datetime.date | None = None


def test_from_struct_reads_the_struct() -> None:
    """Field names, types, optionality, defaults, constraints and Literal choices."""
    fields = {f.name: f for f in Schema.from_struct(User).fields}
    assert (fields["email"].type, fields["email"].required, fields["email"].pattern) == (
        "string",
        True,
        "@",
    )
    assert (fields["age"].type, fields["age"].min, fields["age"].max, fields["age"].default) == (
        "integer",
        0,
        130,
        0,
    )
    assert (fields["score"].type, fields["score"].required) == ("number", False)
    assert fields["country"].choices == ("DE", "FR")
    assert fields["tags"].type == "array" and fields["born"].type == "date"


def test_from_struct_end_to_end(make_import: Make) -> None:
    """Valid records reach hooks and the processor as Struct instances; invalid ones fail."""
    seen_by: dict[str, list[Any]] = {"before_validate": [], "after_validate": [], "processor": []}

    def before_validate(record: Any, ctx: Any) -> Any:
        seen_by["before_validate"].append(record)
        return record

    def after_validate(result: ProcessedRecord, ctx: Any) -> ProcessedRecord:
        seen_by["after_validate"].append(result.parsed)
        return result

    di = make_import(
        Schema.from_struct(User), hooks=Hooks(before_validate, after_validate), batch_size=2
    )
    rows = [
        {"email": "a@x.io", "age": "31", "score": "2", "tags": "a,b", "born": "2000-01-02"},
        {"email": "nope", "age": "31"},
        {"email": "c@x.io", "country": "FR"},
    ]
    job = di.prepare(IterableSource(rows)).job_id
    di.run_worker(job, lambda r, c: seen_by["processor"].append(r))
    assert all(isinstance(r, dict) for r in seen_by["before_validate"])
    first, second = seen_by["processor"]
    assert first == User(
        "a@x.io", 31, 2.0, "DE", ["a", "b"], datetime.date(2000, 1, 2)
    ) and isinstance(first.score, float)
    assert second == User("c@x.io", 0, None, "FR", [], None)
    assert isinstance(seen_by["after_validate"][0], User)
    [bad] = di.failed_records(job)
    assert (bad.index, bad.errors[0].code) == (1, "PATTERN_MISMATCH")

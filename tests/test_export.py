"""``jobs()`` and ``export_failed()`` on both facades, fakeredis and a real server."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from redisbatch import (
    BytesSource,
    CsvParser,
    DistributedImport,
    Field,
    IterableSource,
    JsonParser,
    Schema,
)
from redisbatch._export import neutralise

SCHEMA = Schema(
    [Field("email", "email", required=True), Field("name", required=True), Field("age", "integer")]
)
TRICKY = 'Doe, "JJ"\nsecond line'
SOURCE = (
    "email,name,age\n"
    "ok0@x.io,Ann,30\n"
    f'bad-email,"{TRICKY.replace(chr(34), chr(34) * 2)}",41\n'
    "ok2@x.io,=1+2,-5\n"
    "ok3@x.io,@SUM(A1),x\n"
    "ok4@x.io,Zed,50\n"
)


def _run(di: DistributedImport, source: str, processor: Any = None) -> str:
    job = di.prepare(BytesSource(source), CsvParser())
    di.run_worker(job.job_id, processor or (lambda record, ctx: None))
    return job.job_id


def _fail_zed(record: dict[str, Any], ctx: Any) -> None:
    if record["name"] == "Zed":
        raise RuntimeError("database down, = retry later")


def test_export_csv_columns_and_errors(make_import: Callable[..., DistributedImport]) -> None:
    """CSV export: the original columns, then _row, _line, _error_codes and _errors."""
    di = make_import(SCHEMA)
    job_id = _run(di, SOURCE, _fail_zed)
    out = io.StringIO()
    assert di.export_failed(job_id, out) == 3
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["email", "name", "age", "_row", "_line", "_error_codes", "_errors"]
    by_row = {r[3]: r for r in rows[1:]}
    assert set(by_row) == {"1", "3", "4"}
    assert by_row["1"][5] == "TYPE_MISMATCH"
    assert by_row["1"][6] == "email must be a valid email address"
    assert by_row["3"][5] == "TYPE_MISMATCH" and by_row["3"][6] == "age must be an integer"
    assert by_row["4"][5] == "PROCESSING_ERROR"
    assert by_row["4"][6] == "database down, = retry later"
    assert [by_row[row][4] for row in ("1", "3", "4")] == [
        "3",
        "6",
        "7",
    ]  # source lines (row 1 spans two)


def test_export_neutralises_formulas_in_csv_only(
    make_import: Callable[..., DistributedImport], tmp_path: Path
) -> None:
    """A cell starting with = + - @ tab or CR gets a quote in CSV; JSONL keeps every value."""
    di = make_import(SCHEMA)
    job_id = _run(di, "email,name,age\nbad,=1+2,-5\nbad2,@SUM(A1),+3\nbad3,\tx,-1-1\n")
    path = tmp_path / "failed.csv"
    di.export_failed(job_id, path)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    assert [r["name"] for r in rows] == ["'=1+2", "'@SUM(A1)", "'\tx"]
    assert [r["age"] for r in rows] == ["-5", "+3", "'-1-1"]  # numbers stay numbers
    jsonl = tmp_path / "failed.jsonl"
    assert di.export_failed(job_id, str(jsonl), format="jsonl") == 3
    documents = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [d["name"] for d in documents] == ["=1+2", "@SUM(A1)", "\tx"]
    assert [(d["_row"], d["_line"]) for d in documents] == [(0, 2), (1, 3), (2, 4)]
    assert documents[0]["_error_codes"] == "TYPE_MISMATCH"


def test_exported_csv_fixed_imports_with_zero_failures(
    make_import: Callable[..., DistributedImport], tmp_path: Path
) -> None:
    """Export, fix the rows, import the file again: nothing fails, tricky text survives."""
    di = make_import(SCHEMA)
    job_id = _run(di, SOURCE)
    path = tmp_path / "failed.csv"
    di.export_failed(job_id, path)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    assert rows[0]["name"] == TRICKY  # quotes, comma and line break survive
    for row in rows:  # the fix a person makes in a spreadsheet
        if "email" in row["_errors"]:
            row["email"] = f"fixed{row['_row']}@x.io"
        if row["_error_codes"] == "TYPE_MISMATCH" and "age" in row["_errors"]:
            row["age"] = "7"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    seen: list[dict[str, Any]] = []
    job = di.prepare(BytesSource(path.read_bytes()), CsvParser())
    di.run_worker(job.job_id, lambda record, ctx: seen.append(record))
    status = di.status(job.job_id)
    assert status is not None
    assert (status.failed_records, status.processed_records) == (0, 2)
    # The neutralised cell comes back with its quote (the price of formula
    # safety in CSV); JSONL keeps it as it was.
    assert sorted(r["name"] for r in seen) == sorted([TRICKY, "'@SUM(A1)"])


def test_exported_jsonl_fixed_imports_with_zero_failures(
    make_import: Callable[..., DistributedImport], tmp_path: Path
) -> None:
    """The JSONL round trip gives back every value exactly, formula-like text included."""
    di = make_import(SCHEMA)
    path = tmp_path / "failed.jsonl"
    di.export_failed(_run(di, SOURCE), path, format="jsonl")
    documents = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for document in documents:
        document["email"] = f"fixed{document['_row']}@x.io"
        document["age"] = 7
    seen: list[dict[str, Any]] = []
    fixed = "".join(json.dumps(d) + "\n" for d in documents)
    job = di.prepare(BytesSource(fixed), JsonParser())
    di.run_worker(job.job_id, lambda record, ctx: seen.append(record))
    status = di.status(job.job_id)
    assert status is not None and (status.failed_records, status.processed_records) == (0, 2)
    assert sorted(r["name"] for r in seen) == sorted([TRICKY, "@SUM(A1)"])


def test_reexport_replaces_the_previous_export_columns(
    make_import: Callable[..., DistributedImport],
) -> None:
    """A failed record of a re-imported export is exported with fresh _row/_errors, not twice."""
    di = make_import(SCHEMA)
    first = io.StringIO()
    di.export_failed(_run(di, "email,name,age\nbad,Ann,1\n"), first)
    second = io.StringIO()
    di.export_failed(_run(di, first.getvalue()), second)
    header, row = list(csv.reader(io.StringIO(second.getvalue())))
    assert header == ["email", "name", "age", "_row", "_line", "_error_codes", "_errors"]
    assert row[:3] == ["bad", "Ann", "1"] and row[3] == "0"


def test_export_jsonl_keeps_json_values(make_import: Callable[..., DistributedImport]) -> None:
    """JSONL export of a JSON source keeps numbers, nulls and nested values as they were."""
    di = make_import(Schema([Field("id", "integer", required=True)]))
    source = '[{"id": "x", "meta": {"a": [1, 2]}, "n": null, "f": 1.5}, {"id": 2}]'
    job = di.prepare(BytesSource(source), JsonParser())
    di.run_worker(job.job_id, lambda record, ctx: None)
    out = io.StringIO()
    assert di.export_failed(job.job_id, out, format="jsonl") == 1
    document = json.loads(out.getvalue())
    assert document == {
        "id": "x",
        "meta": {"a": [1, 2]},
        "n": None,
        "f": 1.5,
        "_row": 0,
        "_line": None,
        "_error_codes": "TYPE_MISMATCH",
        "_errors": "id must be an integer",
    }
    csv_out = io.StringIO()
    di.export_failed(job.job_id, csv_out)
    assert (
        csv_out.getvalue().splitlines()[1]
        == 'x,"{""a"":[1,2]}",,1.5,0,,TYPE_MISMATCH,id must be an integer'
    )


def test_export_of_an_unknown_job_raises(make_import: Callable[..., DistributedImport]) -> None:
    """export_failed names an unknown job instead of writing an empty file."""
    di = make_import(SCHEMA)
    with pytest.raises(LookupError, match="nope"):
        di.export_failed("nope", io.StringIO())
    with pytest.raises(ValueError, match="format"):
        di.export_failed(_run(di, "email,name\na@b.io,x\n"), io.StringIO(), format="xlsx")


def test_jobs_newest_first_without_vanished_ones(
    make_import: Callable[..., DistributedImport], client: Any
) -> None:
    """jobs() lists the namespace's jobs newest first, leaving out ids whose keys are gone."""
    di = make_import(SCHEMA)
    assert di.jobs() == []
    ids = [_run(di, "email,name\na@b.io,x\n") for _ in range(3)]
    other = make_import(SCHEMA, namespace="elsewhere")
    _run(other, "email,name\na@b.io,x\n")
    namespace = di._core.settings.namespace
    client.zadd(f"{namespace}:jobs", {"expired-job": 1e12})  # index entry, keys gone
    listed = di.jobs()
    assert [s.job_id for s in listed] == ids[::-1]
    assert all(s.state == "COMPLETED" and s.total_records == 1 for s in listed)
    di.delete(ids[1])
    assert [s.job_id for s in di.jobs()] == [ids[2], ids[0]]


def test_neutralise_leaves_plain_numbers() -> None:
    """Only cells a spreadsheet would evaluate get the quote."""
    assert [neutralise(c) for c in ("-5", "+1.5e3", "-", "=A1", "-1+1", "\r", "ok", "")] == [
        "-5", "+1.5e3", "'-", "'=A1", "'-1+1", "'\r", "ok", "",
    ]  # fmt: skip


def test_jobs_and_export_on_a_cluster(cluster_url: str) -> None:
    """On Redis Cluster, jobs() pipelines status calls across shards; export works per job."""
    import uuid

    import redis

    client = redis.RedisCluster.from_url(cluster_url)
    di = DistributedImport(
        client, Schema([Field("n", "integer")]), batch_size=3, namespace=f"x{uuid.uuid4().hex[:6]}"
    )
    ids = []
    for _ in range(6):
        ids.append(
            di.prepare(IterableSource({"n": "x" if i == 4 else i} for i in range(10))).job_id
        )
        di.run_worker(ids[-1], lambda record, ctx: None)
    assert len({client.keyslot(di._core.store.keys(j).job) for j in ids}) > 1
    assert [s.job_id for s in di.jobs()] == ids[::-1]
    out = io.StringIO()
    assert di.export_failed(ids[0], out) == 1
    assert out.getvalue().splitlines() == [
        "n,_row,_line,_error_codes,_errors",
        "x,4,,TYPE_MISMATCH,n must be an integer",
    ]
    for job_id in ids:
        di.delete(job_id)
    client.close()

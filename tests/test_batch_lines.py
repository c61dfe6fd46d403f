"""Stored batches: the max_batch_bytes cap, and the source line each record
travels with to its failed record."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from redisbatch import (
    BytesSource,
    ConfigurationError,
    CsvParser,
    DistributedImport,
    Field,
    IterableSource,
    JsonParser,
    Schema,
)
from redisbatch._batcher import Batcher, EncodedBatch
from redisbatch._codec import decode_batch, decode_row, encode_batch
from redisbatch._keys import JobKeys
from redisbatch._parsers import Header, Line, ParseFailure, RowBlock

Make = Callable[..., DistributedImport]


def stored_payloads(client: redis.Redis, namespace: str, job_id: str) -> list[bytes]:
    """Every batch payload of a prepared job, by batch index."""
    stored = client.hgetall(JobKeys.of(namespace, job_id).records)
    return [stored[key] for key in sorted(stored, key=int)]


def wide_csv(rows: int, width: int) -> bytes:
    lines = ["id,payload"] + [f"{i},{'x' * width}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------- max_batch_bytes


def test_wide_rows_are_cut_by_bytes_below_batch_size(
    make_import: Make, client: redis.Redis
) -> None:
    """With a huge batch_size, wide rows still make several batches, each within the cap."""
    cap = 64 * 1024
    di = make_import(batch_size=1_000_000, max_batch_bytes=cap, namespace="cap")
    result = di.prepare(BytesSource(wide_csv(300, 5000)), CsvParser(), job_id="wide")
    payloads = stored_payloads(client, "cap", "wide")
    assert result.total_records == 300
    assert result.total_batches == len(payloads) >= 300 * 5000 // cap
    assert all(len(payload) <= cap for payload in payloads), max(map(len, payloads))
    assert sum(len(decode_batch(p)) for p in payloads) == 300
    seen: list[int] = []
    summary = di.run_worker("wide", lambda record, ctx: seen.append(record["id"]))
    assert (summary.processed, summary.failed) == (300, 0)
    assert sorted(map(int, seen)) == list(range(300))


def test_a_record_larger_than_the_cap_is_a_parse_error(make_import: Make) -> None:
    """A record over max_batch_bytes is a PARSE_ERROR naming its line and size; the job goes on."""
    text = "id,payload\n1,a\n2," + "y" * 20_000 + "\n3,c\n"
    di = make_import(max_batch_bytes=8 * 1024)
    job = di.prepare(BytesSource(text), CsvParser())
    assert job.total_records == 3
    summary = di.run_worker(job.job_id, lambda record, ctx: None)
    assert (summary.processed, summary.failed) == (2, 1)
    (failed,) = list(di.failed_records(job.job_id))
    assert (failed.index, failed.line, failed.status) == (1, 3, "invalid")
    assert [e.code for e in failed.errors] == ["PARSE_ERROR"]
    message = failed.errors[0].message
    assert message.startswith("line 3: the record takes ") and "max_batch_bytes (8192)" in message
    status = di.status(job.job_id)
    assert status is not None
    assert (status.state, status.processed_records, status.failed_records) == ("COMPLETED", 2, 1)


def test_an_oversized_record_without_lines_is_named_by_index(make_import: Make) -> None:
    """From an iterable, the oversized record is named by its index."""
    di = make_import(max_batch_bytes=4096)
    records = [{"n": 1}, {"n": 2, "blob": "z" * 10_000}, {"n": 3}]
    job = di.prepare(IterableSource(records))
    di.run_worker(job.job_id, lambda record, ctx: None)
    (failed,) = list(di.failed_records(job.job_id))
    assert failed.index == 1 and failed.line is None
    assert failed.errors[0].message.startswith("record 1: the record takes ")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ConfigurationError),
        (-5, ConfigurationError),
        (1023, ConfigurationError),
        ("4MB", TypeError),
        (True, TypeError),
        (4.0e6, TypeError),
    ],
)
def test_max_batch_bytes_is_checked_at_construction(
    make_import: Make, value: Any, error: type[Exception]
) -> None:
    """A max_batch_bytes that is not an int of at least 1024 is refused, naming the option."""
    with pytest.raises(error, match="max_batch_bytes"):
        make_import(max_batch_bytes=value)


def batches_of(batcher: Batcher, items: list[Any]) -> list[EncodedBatch]:
    out: list[EncodedBatch] = []
    for item in items:
        if isinstance(item, RowBlock):
            out += batcher.add_block(item.rows, item.lines)
        else:
            batch = batcher.add(item)
            if batch is not None:
                out.append(batch)
    last = batcher.finish()
    return out if last is None else [*out, last]


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 1500), max_size=60),
    gaps=st.lists(st.integers(1, 3), min_size=1, max_size=5),
    block=st.integers(1, 9),
    batch_size=st.integers(1, 20),
    cap=st.integers(1024, 4000),
    failures=st.sets(st.integers(0, 59), max_size=5),
)
def test_batcher_cap_order_and_lines_hold(
    sizes: list[int],
    gaps: list[int],
    block: int,
    batch_size: int,
    cap: int,
    failures: set[int],
) -> None:
    """Whatever the block cuts, batch size and cap: records keep their order,
    index and line; no batch passes the cap; only records over it become failures."""
    starts, line = [], 1
    for i in range(len(sizes)):
        starts.append(line)
        line += gaps[i % len(gaps)]
    items: list[Any] = [Header(["v"])]
    pending: list[list[str]] = []
    table: list[int] = []
    for i, size in enumerate(sizes):
        if i in failures:
            if pending:
                items.append(RowBlock(pending, table))
                pending, table = [], []
            items.append(ParseFailure(f"bad {i}", {"v": "?"}, starts[i]))
            continue
        if not pending or table[-1] + len(pending) - table[-2] != starts[i]:
            table += (len(pending), starts[i])
        pending.append(["v" * size])
        if len(pending) == block:
            items.append(RowBlock(pending, table))
            pending, table = [], []
    if pending:
        items.append(RowBlock(pending, table))
    batcher = Batcher(batch_size, skip_empty_rows=False, origin="t", max_batch_bytes=cap)
    batches = batches_of(batcher, items)
    index = 0
    for encoded in batches:
        assert len(encoded.payload) <= cap
        batch = decode_batch(encoded.payload)
        assert batch.first_index == index == encoded.first_index
        assert 1 <= len(batch) <= batch_size
        for position in range(len(batch)):
            assert batch.line_of(position) == starts[index]
            failure = batch.failures.get(position)
            if index in failures:
                assert failure is not None and failure[0] == f"bad {index}"
            elif failure is not None:
                assert "more than max_batch_bytes" in failure[0]
                assert failure[0].startswith(f"line {starts[index]}: the record takes ")
            else:
                assert decode_row(batch.raw_rows[position]) == ["v" * sizes[index]]
            index += 1
    assert index == len(sizes) == batcher.total_records


# ---------------------------------------------------------------- lines


SCHEMA = Schema([Field("id", "integer", required=True), Field("note")])


def test_failed_csv_records_carry_their_source_line(make_import: Make) -> None:
    """Invalid and failed CSV records name the line they start on, across
    quoted line breaks, blank lines, bad rows and batches; so does record:failed."""
    text = (
        "id,note\n"  # line 1
        '1,"two\nlines"\n'  # 2-3
        "x,bad id\n"  # 4
        "\n"  # 5: blank
        "3,ok\n"  # 6
        "4,a,extra\n"  # 7: wrong width
        '5,"more\r\nlines\r\nhere"\n'  # 8-10
        "6,fails\n"  # 11
        "y,bad again\n"  # 12
    )
    di = make_import(SCHEMA, batch_size=2)
    events: list[Any] = []
    di.on("record:failed", events.append)
    job = di.prepare(BytesSource(text), CsvParser())

    def process(record: dict[str, Any], ctx: Any) -> None:
        if record["id"] == 6:
            raise RuntimeError("no")

    di.run_worker(job.job_id, process)
    failed = {r.index: r.line for r in di.failed_records(job.job_id)}
    assert failed == {1: 4, 3: 7, 5: 11, 6: 12}
    assert {e.record.index: e.record.line for e in events} == failed


def test_failed_ndjson_records_carry_their_line_and_json_arrays_none(make_import: Make) -> None:
    """NDJSON failures name their line (blank lines counted); a JSON array has no lines."""
    ndjson = b'{"id": 1}\n\n{"id": "x"}\nnot json\n{"id": 4}\n\n\n{"id": "y"}\n'
    di = make_import(SCHEMA)
    job = di.prepare(BytesSource(ndjson), JsonParser())
    di.run_worker(job.job_id, lambda record, ctx: None)
    assert [(r.index, r.line) for r in di.failed_records(job.job_id)] == [(1, 3), (2, 4), (4, 8)]
    array = b'[{"id": 1}, {"id": "x"}]'
    job = di.prepare(BytesSource(array), JsonParser())
    di.run_worker(job.job_id, lambda record, ctx: None)
    assert [(r.index, r.line) for r in di.failed_records(job.job_id)] == [(1, None)]


def test_skipped_empty_rows_do_not_shift_lines(make_import: Make) -> None:
    """With skip_empty_rows, the records after an empty row keep their own lines."""
    schema = Schema([Field("id", "integer"), Field("note")], skip_empty_rows=True)
    di = make_import(schema)
    job = di.prepare(BytesSource("id,note\n1,a\n,\n,\nz,b\n"), CsvParser())
    di.run_worker(job.job_id, lambda record, ctx: None)
    assert [(r.index, r.line) for r in di.failed_records(job.job_id)] == [(1, 5)]


def test_ndjson_line_markers_reach_the_batcher() -> None:
    """The batcher places records after a Line marker on consecutive lines."""
    batcher = Batcher(10, skip_empty_rows=False, origin="t")
    batches = batches_of(batcher, [Line(3), {"a": 1}, {"a": 2}, Line(9), {"a": 3}])
    batch = decode_batch(batches[0].payload)
    assert [batch.line_of(p) for p in range(3)] == [3, 4, 9]
    assert batch.lines == [0, 3, 2, 9]


@pytest.mark.parametrize(
    ("document", "where", "line"),
    [
        (
            b'[{"id": 1}, ' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b', {"id": 3}]',
            "element 1",
            None,
        ),
        (b'{"id": 1}\n' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b'\n{"id": 3}\n', "line 2", 2),
    ],
)
def test_deep_json_is_a_parse_error_record_and_the_job_goes_on(
    make_import: Make, document: bytes, where: str, line: int | None
) -> None:
    """An element nested 1,000 deep is one PARSE_ERROR record naming it; the rest are processed."""
    di = make_import()
    job = di.prepare(BytesSource(document), JsonParser())
    summary = di.run_worker(job.job_id, lambda record, ctx: None)
    assert (job.total_records, summary.processed, summary.failed) == (3, 2, 1)
    (failed,) = list(di.failed_records(job.job_id))
    assert (failed.index, failed.line, failed.errors[0].code) == (1, line, "PARSE_ERROR")
    assert failed.errors[0].message.startswith(where)
    assert "nested too deeply" in failed.errors[0].message
    status = di.status(job.job_id)
    assert status is not None and status.state == "COMPLETED"


def test_the_rest_of_a_batch_keeps_its_lines_and_failures() -> None:
    """A batch's rest (what a worker hands back) keeps each record's line and failure."""
    batcher = Batcher(10, skip_empty_rows=False, origin="t")
    items = [Header(["v"]), RowBlock([["a"], ["b"], ["c"]], [0, 2, 1, 7])]
    items += [ParseFailure("bad", {}, 9), RowBlock([["d"]], [0, 12])]
    batch = decode_batch(batches_of(batcher, items)[0].payload)
    assert [batch.line_of(p) for p in range(5)] == [2, 7, 8, 9, 12]
    for done in range(5):
        rest = decode_batch(encode_batch(batch.rest(done)))
        assert rest.first_index == done
        assert [rest.line_of(p) for p in range(5 - done)] == [2, 7, 8, 9, 12][done:]
        assert [rest.failures.get(p, ("",))[0] for p in range(5 - done)] == ["", "", "", "bad", ""][
            done:
        ]


def test_a_handed_back_rest_keeps_its_source_lines(make_import: Make) -> None:
    """A batch handed back by a time budget keeps the lines of its unfinished records."""
    text = "id,note\n" + "".join(f'{i},"n\n{i}"\n' if i % 2 else f"{i},x\n" for i in range(6))
    di = make_import(SCHEMA, batch_size=6)
    job = di.prepare(BytesSource(text), CsvParser())
    clock = iter(range(100))

    def fail_the_last_two(record: dict[str, Any], ctx: Any) -> None:
        if record["id"] >= 4:
            raise RuntimeError("no")

    def spend_budget(record: dict[str, Any], ctx: Any) -> None:
        if next(clock) == 2:  # the budget runs out after three records
            time.sleep(0.3)

    first = di.process_worker_batch(job.job_id, spend_budget, "w1", time_budget=0.2)
    assert first.accepted and first.processed_count < 6
    di.run_worker(job.job_id, fail_the_last_two)
    failed = {r.index: r.line for r in di.failed_records(job.job_id)}
    # rows 0..5 start on lines 2, 3, 5, 6, 8, 9 (odd rows span two lines)
    assert failed == {4: 8, 5: 9}

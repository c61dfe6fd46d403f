"""The DistributedImport facade: configuration, prepare edge cases, worker behaviour."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

from redisbatch import (
    BytesSource,
    ConfigurationError,
    CsvParser,
    DistributedImport,
    Field,
    FileSource,
    IterableSource,
    JobExistsError,
    JobNotFoundError,
    Schema,
    SourceError,
)

Make = Callable[..., DistributedImport]


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("batch_size", 0, ConfigurationError),
        ("batch_size", 1.5, TypeError),
        ("max_retries", -1, ConfigurationError),
        ("retry_delay", -0.1, ConfigurationError),
        ("stale_batch_timeout", 0, ConfigurationError),
        ("stale_batch_timeout", float("inf"), ConfigurationError),
        ("max_batch_attempts", 0, ConfigurationError),
        ("retention", -1, ConfigurationError),
        ("max_pending_batches", 0, ConfigurationError),
        ("namespace", "", ConfigurationError),
        ("namespace", "a{b}", ConfigurationError),
    ],
)
def test_invalid_options_name_the_argument(option: str, value: Any, error: type) -> None:
    """Invalid configuration raises at construction with a message naming the argument."""
    with pytest.raises(error, match=option):
        DistributedImport(fakeredis.FakeRedis(), **{option: value})
    assert issubclass(ConfigurationError, ValueError)


def test_clients_that_cannot_work_are_refused() -> None:
    """Non-clients, async clients and decode_responses=True clients are refused."""
    with pytest.raises(TypeError, match="redis"):
        DistributedImport(object())
    with pytest.raises(TypeError, match="AsyncDistributedImport"):
        DistributedImport(fakeredis.FakeAsyncRedis())
    with pytest.raises(ConfigurationError, match="decode_responses"):
        DistributedImport(fakeredis.FakeRedis(decode_responses=True))
    with pytest.raises(ConfigurationError, match="decode_responses"):
        DistributedImport(redis.Redis(decode_responses=True))


def test_job_ids(make_import: Make) -> None:
    """A chosen job id is used; reusing it raises JobExistsError; braces are refused."""
    di = make_import()
    assert di.prepare(IterableSource([{"a": 1}]), job_id="import-1").job_id == "import-1"
    with pytest.raises(JobExistsError, match="import-1"):
        di.prepare(IterableSource([{"a": 1}]), job_id="import-1")
    with pytest.raises(ConfigurationError, match="braces"):
        di.prepare(IterableSource([]), job_id="x{y}")
    generated = di.prepare(IterableSource([])).job_id
    assert len(generated) == 32 and int(generated, 16) >= 0


def test_parser_rules(make_import: Make) -> None:
    """Bytes need a parser; an IterableSource takes none."""
    di = make_import()
    with pytest.raises(ConfigurationError, match="parser"):
        di.prepare(BytesSource(b"a\n1\n"))
    with pytest.raises(ConfigurationError, match="parser"):
        di.prepare(IterableSource([]), CsvParser())


def test_empty_source_completes_at_prepare(make_import: Make) -> None:
    """An empty source gives a COMPLETED job with zero records, finalized by prepare."""
    di = make_import()
    completed: list[Any] = []
    di.on("job:completed", completed.append)
    job = di.prepare(BytesSource(b"a,b\n"), CsvParser())
    assert (job.total_records, job.total_batches) == (0, 0)
    status = di.status(job.job_id)
    assert status is not None and status.state == "COMPLETED" and status.is_complete
    assert len(completed) == 1 and completed[0].summary.total == 0
    summary = di.run_worker(job.job_id, lambda r, c: None)
    assert (summary.batches, summary.finalized) == (0, False)


def test_unopenable_source_leaves_no_job(make_import: Make, tmp_path: Path, client: Any) -> None:
    """A missing file raises SourceError before any job exists."""
    di = make_import()
    with pytest.raises(SourceError, match=r"missing\.csv"):
        di.prepare(FileSource(tmp_path / "missing.csv"), CsvParser(), job_id="j")
    assert di.status("j") is None
    assert client.zcard(di._core.store.index_key) == 0


def test_a_source_failing_mid_stream_fails_the_job(make_import: Make) -> None:
    """An iterable raising mid-stream: job FAILED with error, SourceError chained, no claims."""
    di = make_import(batch_size=2)

    def rows() -> Iterator[dict[str, Any]]:
        yield from ({"n": i} for i in range(5))
        raise OSError("disk on fire")

    with pytest.raises(SourceError, match="disk on fire") as caught:
        di.prepare(IterableSource(rows()), job_id="broken")
    assert isinstance(caught.value.__cause__, OSError)
    status = di.status("broken")
    assert status is not None
    assert (status.state, status.is_complete) == ("FAILED", True)
    assert status.error is not None and "disk on fire" in status.error
    assert status.total_records == 5, "what was read before the failure is kept"
    assert di.process_worker_batch("broken", lambda r, c: None, "w").reason == (
        "JOB_NOT_PROCESSING"
    )


def test_undecodable_bytes_mid_stream_fail_the_job(make_import: Make) -> None:
    """Bytes that cannot be decoded fail the job with the byte offset."""
    di = make_import()
    with pytest.raises(SourceError, match="byte"):
        di.prepare(BytesSource(b"a\n1\n\xff\xfe\n"), CsvParser(), job_id="bad-bytes")
    status = di.status("bad-bytes")
    assert status is not None and status.state == "FAILED" and "byte" in (status.error or "")


def test_values_msgpack_cannot_hold_fail_the_job(make_import: Make) -> None:
    """A record value that cannot be stored names the records and fails the job."""
    di = make_import()
    with pytest.raises(SourceError, match="cannot store a value of type object"):
        di.prepare(IterableSource([{"a": object()}]), job_id="odd")
    assert di.status("odd").state == "FAILED"  # type: ignore[union-attr]
    with pytest.raises(SourceError, match=r"records 0\.\.\.0"):
        di.prepare(IterableSource([{"a": 2**70}]), job_id="huge")


def test_skip_empty_rows_at_prepare(make_import: Make) -> None:
    """Empty rows are not records: not counted, indexes assigned after skipping."""
    di = make_import(Schema([Field("a"), Field("b")], skip_empty_rows=True))
    job = di.prepare(BytesSource(b"a,b\n1,2\n,\n3,4\n"), CsvParser())
    assert job.total_records == 2
    seen: list[int] = []
    di.run_worker(job.job_id, lambda r, c: seen.append(c.record_index))
    assert seen == [0, 1]


def test_parse_errors_are_records_and_the_job_goes_on(make_import: Make) -> None:
    """A malformed CSV row is a PARSE_ERROR record naming its line."""
    di = make_import()
    job = di.prepare(BytesSource(b"a,b\n1,2\n3\n4,5\n"), CsvParser()).job_id
    assert di.run_worker(job, lambda r, c: None).processed == 2
    [record] = di.failed_records(job)
    assert (record.index, record.status) == (1, "invalid")
    assert (record.errors[0].code, record.errors[0].category) == ("PARSE_ERROR", "PARSE")
    assert record.errors[0].message == "line 3: expected 2 values, got 1"


def test_workers_may_start_before_prepare_returns(make_import: Make) -> None:
    """Batches are claimable while prepare is still reading; finalization waits for the seal."""
    di = make_import(batch_size=1)
    gate = threading.Event()

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(40):
            yield {"n": i}
        gate.wait(10)

    thread = threading.Thread(target=lambda: di.prepare(IterableSource(rows()), job_id="live"))
    thread.start()
    deadline = time.monotonic() + 10
    while di.status("live") is None or di.status("live").total_batches < 16:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    early = di.run_worker("live", lambda r, c: None, wait=False)
    assert early.batches >= 16 and not early.finalized
    assert di.status("live").state == "PREPARING"  # type: ignore[union-attr]
    gate.set()
    thread.join()
    rest = di.run_worker("live", lambda r, c: None)
    assert early.batches + rest.batches == 40 and rest.finalized


def test_abort_while_preparing_stops_prepare(make_import: Make) -> None:
    """abort during prepare: prepare stops and returns the counts stored so far."""
    di = make_import(batch_size=10)

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(100_000):
            if i == 500:
                assert di.abort("stopped")
            yield {"n": i}

    result = di.prepare(IterableSource(rows()), job_id="stopped")
    status = di.status("stopped")
    assert status is not None and status.state == "ABORTED"
    assert 0 < result.total_records <= 500 and result.total_records == status.total_records


def test_pause_while_preparing_holds_claims(make_import: Make) -> None:
    """pause during prepare holds claims while storing goes on; resume releases them."""
    di = make_import(batch_size=10)

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(200):
            if i == 50:
                assert di.pause("held")
            yield {"n": i}

    result = di.prepare(IterableSource(rows()), job_id="held")
    assert result.total_records == 200
    assert di.status("held").state == "PAUSED"  # type: ignore[union-attr]
    assert di.run_worker("held", lambda r, c: None, wait=False).batches == 0
    assert di.resume("held")
    assert di.run_worker("held", lambda r, c: None).processed == 200


def test_stale_batch_timeout_defaults_to_a_minute(client: Any) -> None:
    """A stopped-and-killed worker's batch waits 60 s by default (was 15 minutes)."""
    import inspect

    from redisbatch import AsyncDistributedImport

    assert DistributedImport(client)._core.settings.stale_batch_timeout == 60.0
    assert inspect.signature(DistributedImport).parameters["stale_batch_timeout"].default == 60.0
    async_default = AsyncDistributedImport(fakeredis.FakeAsyncRedis())._core.settings
    assert (async_default.stale_batch_timeout, async_default.heartbeat_interval) == (60.0, 20.0)


def test_run_worker_on_an_unknown_job_raises(make_import: Make) -> None:
    """run_worker on an unknown job raises JobNotFoundError (a LookupError) naming it."""
    di = make_import()
    with pytest.raises(JobNotFoundError, match="'ghost' does not exist") as raised:
        di.run_worker("ghost", lambda r, c: None, "me")
    assert isinstance(raised.value, LookupError) and raised.value.job_id == "ghost"
    started = time.monotonic()
    with pytest.raises(JobNotFoundError, match=r"after waiting 0\.2 s"):
        di.run_worker("ghost", lambda r, c: None, "me", wait=False, wait_for_job=0.2)
    assert time.monotonic() - started >= 0.2
    with pytest.raises(ValueError, match="wait_for_job"):
        di.run_worker("ghost", lambda r, c: None, wait_for_job=-1)


def test_run_worker_waits_for_a_job_prepared_later(make_import: Make) -> None:
    """A worker started before the orchestrator waits up to wait_for_job for the job."""
    di = make_import(batch_size=10)
    timer = threading.Timer(
        0.3, lambda: di.prepare(IterableSource({"n": i} for i in range(25)), job_id="later")
    )
    timer.start()
    summary = di.run_worker("later", lambda r, c: None, wait_for_job=30)
    timer.join()
    assert (summary.processed, summary.batches, summary.state) == (25, 3, "COMPLETED")


def test_worker_summary_tells_completed_from_failed(make_import: Make) -> None:
    """WorkerSummary.state is the job's final state: COMPLETED, FAILED or ABORTED."""
    di = make_import(Schema([Field("n", "integer")]), batch_size=2, continue_on_error=False)
    ok = di.prepare(IterableSource({"n": i} for i in range(4))).job_id
    bad = di.prepare(IterableSource({"n": "x" if i == 1 else i} for i in range(4))).job_id
    done = di.run_worker(ok, lambda r, c: None)
    failed = di.run_worker(bad, lambda r, c: None)
    assert (done.state, done.finalized) == ("COMPLETED", True)
    assert (failed.state, failed.finalized) == ("FAILED", True)
    aborted = di.prepare(IterableSource({"n": i} for i in range(4))).job_id
    assert di.abort(aborted)
    assert di.run_worker(aborted, lambda r, c: None).state == "ABORTED"
    paused = di.prepare(IterableSource({"n": i} for i in range(4))).job_id
    assert di.pause(paused)
    assert di.run_worker(paused, lambda r, c: None, wait=False).state == "PAUSED"


def test_a_job_deleted_while_a_worker_runs_ends_it_with_no_state(
    make_import: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """A job deleted under a running worker ends its loop: the summary so far, state None,
    and a warning."""
    di = make_import(batch_size=2)
    job = di.prepare(IterableSource({"n": i} for i in range(10))).job_id

    def processor(record: Any, ctx: Any) -> None:
        if ctx.record_index == 5:
            di.delete(job)

    with caplog.at_level("WARNING", logger="redisbatch"):
        summary = di.run_worker(job, processor)
    assert (summary.state, summary.batches, summary.processed) == (None, 2, 4)
    assert any("is gone" in r.getMessage() for r in caplog.records)


def test_heartbeat_keeps_a_slow_workers_batch(make_import: Make) -> None:
    """A batch running longer than the stale timeout is not reclaimed while heartbeating."""
    di = make_import(batch_size=3, stale_batch_timeout=0.3)
    job = di.prepare(IterableSource({"n": i} for i in range(3))).job_id
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(
            di.process_worker_batch(job, lambda r, c: time.sleep(0.25), "slow")
        )
    )
    thread.start()
    time.sleep(0.45)
    other = di.process_worker_batch(job, lambda r, c: None, "eager")
    assert other.reason == "NO_PENDING_BATCHES"
    thread.join()
    assert results[0].accepted and results[0].job_complete


def test_a_worker_that_lost_its_batch_stops_early(make_import: Make) -> None:
    """Once a heartbeat finds the batch reclaimed, the worker stops and its commit is refused."""
    di = make_import(batch_size=20, stale_batch_timeout=0.15)
    job = di.prepare(IterableSource({"n": i} for i in range(20))).job_id
    calls: list[int] = []
    results: list[Any] = []

    def slow(record: Any, ctx: Any) -> None:
        calls.append(ctx.record_index)
        time.sleep(0.02)

    thread = threading.Thread(
        target=lambda: results.append(di.process_worker_batch(job, slow, "loser"))
    )
    thread.start()
    time.sleep(0.08)
    assert di.reclaim_stale_batches(job, timeout=0) == 1
    thread.join()
    [lost] = results
    assert (lost.claimed, lost.accepted, lost.processed_count) == (True, False, 0)
    assert len(calls) < 20, "the worker kept going after losing its batch"
    assert di.run_worker(job, lambda r, c: None).processed == 20
    assert di.status(job).processed_records == 20  # type: ignore[union-attr]


def test_a_job_deleted_while_preparing_is_an_error(make_import: Make) -> None:
    """prepare raises when its job vanishes (deleted, or a server that lost its data)."""
    from redisbatch import RedisBatchError

    di = make_import(batch_size=10)

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(2000):
            if i == 500:
                assert di.delete("gone")
            yield {"n": i}

    with pytest.raises(RedisBatchError, match="disappeared"):
        di.prepare(IterableSource(rows()), job_id="gone")
    with pytest.raises(JobNotFoundError):
        di.run_worker("gone", lambda r, c: None)

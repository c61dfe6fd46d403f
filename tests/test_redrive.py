"""retry_failed: a redrive within the same job, on both facades, fakeredis and a
real server."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from redisbatch import (
    ConfigurationError,
    DistributedImport,
    Field,
    FieldCheck,
    IterableSource,
    JobNotFoundError,
    Schema,
)
from redisbatch._codec import encode_failed
from redisbatch._redrive import redrive_flow
from redisbatch._results import ProcessedRecord
from redisbatch._scripts import Reply, ScriptCall
from tests.test_store import Raw

Make = Callable[..., DistributedImport]


def numbered(n: int) -> IterableSource:
    return IterableSource({"n": i} for i in range(n))


class Outage:
    """A processor that fails the records ``down(index)`` says while the outage
    lasts, and counts each record's successful deliveries."""

    def __init__(self, down: Callable[[int], bool]) -> None:
        self.down = down
        self.on = True
        self.succeeded: Counter[int] = Counter()
        self.keys: dict[int, str] = {}

    def __call__(self, record: Any, ctx: Any) -> None:
        if self.on and self.down(ctx.record_index):
            raise ConnectionError("API unreachable")
        self.succeeded[ctx.record_index] += 1
        self.keys[ctx.record_index] = ctx.idempotency_key


def completions(di: Any) -> list[Any]:
    seen: list[Any] = []
    di.on("job:completed", seen.append)
    return seen


def status_of(di: Any, job: str) -> Any:
    status = di.status(job)
    assert status is not None
    return status


SCHEMA = Schema([Field("n", "integer", required=True, max=55)])  # 56..59 are invalid


def test_redrive_after_an_outage_counts_every_record_once(make_import: Make) -> None:
    """After an outage the redrive ends COMPLETED: each record once, a job:completed per attempt."""
    di = make_import(SCHEMA, batch_size=10)
    done = completions(di)
    job = di.prepare(numbered(60)).job_id
    outage = Outage(lambda i: i % 3 == 0)
    first = di.run_worker(job, outage, "w1")
    assert first.finalized
    status = status_of(di, job)
    assert (status.state, status.attempt, status.processed_records, status.failed_records) == (
        "COMPLETED", 1, 37, 23,
    )  # fmt: skip
    assert len(done) == 1
    assert di.retry_failed(job) == 19  # 0, 3, ..., 54; the invalid 57 stays (not asked)
    status = status_of(di, job)
    assert (status.state, status.attempt, status.processed_records, status.failed_records) == (
        "PROCESSING", 2, 37, 4,
    )  # fmt: skip
    assert (status.total_records, status.is_complete) == (60, False)
    assert status.workers == 0  # the first attempt's worker is not one of this attempt's
    outage.on = False
    second = di.run_worker(job, outage, "w2")
    assert second.finalized and (second.processed, second.failed) == (19, 0)
    status = status_of(di, job)
    assert (status.state, status.attempt, status.processed_records, status.failed_records) == (
        "COMPLETED", 2, 56, 4,
    )  # fmt: skip
    assert status.total_records == 60
    assert outage.succeeded == Counter(range(56))  # each valid record succeeded exactly once
    assert outage.keys[3] == f"{job}:3"  # a redriven record keeps its index and key
    assert [e.summary.state for e in done] == ["COMPLETED", "COMPLETED"]
    assert [e.summary.processed for e in done] == [37, 56]
    assert [r.index for r in di.failed_records(job)] == [56, 57, 58, 59]


def test_failed_records_lists_latest_outcomes_in_source_order(make_import: Make) -> None:
    """After redrives, failed_records gives each record's latest failure once, in source order."""
    di = make_import(SCHEMA, batch_size=10)
    job = di.prepare(numbered(60)).job_id
    di.run_worker(job, Outage(lambda i: i % 3 == 0), "w")
    assert di.retry_failed(job) == 19
    di.run_worker(job, Outage(lambda i: i % 9 == 0), "w")  # some fail again
    listed = list(di.failed_records(job))
    assert [r.index for r in listed] == [0, 9, 18, 27, 36, 45, 54, 56, 57, 58, 59]
    assert listed[0].processing_error == "API unreachable" and listed[-1].status == "invalid"
    status = status_of(di, job)
    assert (status.state, status.processed_records, status.failed_records) == ("COMPLETED", 49, 11)
    assert di.retry_failed(job) == 7
    di.run_worker(job, Outage(lambda i: i == 27), "w")
    status = status_of(di, job)
    assert (status.attempt, status.processed_records, status.failed_records) == (3, 55, 5)
    assert [r.index for r in di.failed_records(job)] == [27, 56, 57, 58, 59]


def test_nothing_to_retry_answers_zero_and_changes_nothing(make_import: Make) -> None:
    """A job without failures in processing: retry_failed returns 0 and the job stays as it was."""
    di = make_import(SCHEMA, batch_size=10)
    job = di.prepare(numbered(60)).job_id
    di.run_worker(job, Outage(lambda i: False), "w")
    before = status_of(di, job)
    assert di.retry_failed(job) == 0
    after = status_of(di, job)
    assert (after.state, after.attempt, after.failed_records) == ("COMPLETED", 1, 4)
    assert after.completed_at == before.completed_at


def test_only_a_finished_job_can_be_redriven(make_import: Make) -> None:
    """A running, paused or aborted job: ConfigurationError; an unknown one: JobNotFoundError."""
    di = make_import(batch_size=10)
    job = di.prepare(numbered(30)).job_id
    with pytest.raises(ConfigurationError, match="PROCESSING"):
        di.retry_failed(job)
    di.pause(job)
    with pytest.raises(ConfigurationError, match="PAUSED"):
        di.retry_failed(job)
    di.abort(job)
    with pytest.raises(ConfigurationError, match="ABORTED"):
        di.retry_failed(job)
    with pytest.raises(JobNotFoundError):
        di.retry_failed("no-such-job")


def test_include_invalid_runs_invalid_records_again_but_not_duplicates(make_import: Make) -> None:
    """include_invalid re-validates invalid records; DUPLICATE_VALUE records stay as they were."""
    strict = {"on": True}

    def checked(value: Any) -> FieldCheck:
        return FieldCheck(not (strict["on"] and value.startswith("x")), "rejected for now")

    schema = Schema([Field("code", required=True, validator=checked)], unique_fields=("code",))
    rows = [{"code": c} for c in ("a", "x1", "b", "a", "x2", "c")]
    di = make_import(schema, batch_size=2)
    job = di.prepare(IterableSource(rows)).job_id
    di.run_worker(job, Outage(lambda i: False), "w")
    assert status_of(di, job).failed_records == 3  # x1, x2 rejected; record 3 duplicates 0
    assert di.retry_failed(job) == 0  # no failure in processing; invalid ones not asked for
    strict["on"] = False
    assert di.retry_failed(job, include_invalid=True) == 2
    di.run_worker(job, Outage(lambda i: False), "w")
    status = status_of(di, job)
    assert (status.state, status.processed_records, status.failed_records) == ("COMPLETED", 5, 1)
    [left] = list(di.failed_records(job))
    assert left.index == 3 and left.errors[0].code == "DUPLICATE_VALUE"


def test_dead_lettered_and_unclaimed_batches_run_again(make_import: Make) -> None:
    """A job failed over a threshold: its dead-lettered and unclaimed batches run in the redrive."""
    di = make_import(
        batch_size=5, max_batch_attempts=1, stale_batch_timeout=0.05, tolerated_failure_count=4
    )
    raw = Raw(di)
    done = completions(di)
    job = di.prepare(numbered(30)).job_id
    raw.claim(job, "dies")  # batch 0: its worker dies
    time.sleep(0.1)
    held = raw.claim(job, "slow")  # dead-letters batch 0 (5 failed > 4: FAILED), takes none
    assert held.batch_index is None and held.finalized is not None
    status = status_of(di, job)
    assert (status.state, status.failed_records, status.failed_batches) == ("FAILED", 5, 1)
    assert di.retry_failed(job) == 30
    status = status_of(di, job)
    assert (status.state, status.failed_records, status.failed_batches) == ("PROCESSING", 0, 0)
    outage = Outage(lambda i: False)
    di2 = make_import(batch_size=5, stale_batch_timeout=5)
    di2.on("job:completed", done.append)
    assert di2.run_worker(job, outage, "w").finalized
    status = status_of(di, job)
    assert (status.state, status.processed_records, status.failed_records) == ("COMPLETED", 30, 0)
    assert outage.succeeded == Counter(range(30))
    assert [e.summary.state for e in done] == ["COMPLETED"]  # the raw claim emitted nothing


def _failed_part(indexes: range) -> bytes:
    return encode_failed(
        [
            ProcessedRecord(
                index=i, raw={"n": i}, parsed={"n": i}, status="failed", errors=[],
                processing_error="late failure", retry_count=0,
            )
            for i in indexes
        ]
    )  # fmt: skip


def _drive(raw: Raw, flow: Any, before_apply: Callable[[], None]) -> Any:
    """Runs a redrive flow by hand, calling ``before_apply`` just before its
    first redriveJob call is sent; returns the flow's result and the replies."""
    replies: list[str] = []
    effect = next(flow)
    called = False
    try:
        while True:
            if isinstance(effect, ScriptCall) and effect.script.name == "redriveJob":
                if not called:
                    called = True
                    before_apply()
                reply = raw.run_call(effect)
                replies.append(reply[0].decode())
            else:
                reply = raw.run_call(effect)
            effect = flow.send(reply)
    except StopIteration as stop:
        return stop.value, replies


def test_a_late_commit_racing_the_redrive_counts_nothing_twice(make_import: Make) -> None:
    """A first-attempt commit landing between the redrive's read and apply is read again."""
    di = make_import(batch_size=5, tolerated_failure_count=2)
    raw = Raw(di)
    job = di.prepare(numbered(20)).job_id
    held = raw.claim(job, "late")  # batch 0, held through the end of the attempt
    assert di.process_worker_batch(job, Outage(lambda i: i >= 7), "w").job_complete  # batch 1
    assert held.batch_index == 0

    def late_commit() -> None:
        reply = raw.run(
            raw.store.commit(
                job, 0, held.token, processed=2, failed=3, batch_state="COMPLETED",
                failed_payload=_failed_part(range(2, 5)),
            )
        )  # fmt: skip
        assert reply.accepted  # the job is FAILED, but in-flight commits still count

    count, replies = _drive(raw, redrive_flow(raw.store, job), late_commit)
    assert replies == [Reply.STALE, Reply.OK]
    assert count == 3 + 3 + 10  # batch 0's and 1's failures, batches 2 and 3 never claimed
    status = status_of(di, job)
    assert (status.processed_records, status.failed_records, status.attempt) == (4, 0, 2)
    outage = Outage(lambda i: False)
    assert di.run_worker(job, outage, "w").finalized
    status = status_of(di, job)
    assert (status.state, status.processed_records, status.failed_records) == ("COMPLETED", 20, 0)
    assert set(outage.succeeded) == {2, 3, 4, *range(7, 20)}


def test_a_commit_of_the_earlier_attempt_after_the_redrive_is_refused(make_import: Make) -> None:
    """A batch still held when the job was redriven is revoked: its late commit is refused."""
    di = make_import(batch_size=5, tolerated_failure_count=0)
    raw = Raw(di)
    job = di.prepare(numbered(15)).job_id
    held = raw.claim(job, "late")
    outage = Outage(lambda i: i == 5)
    assert di.process_worker_batch(job, outage, "w").job_complete
    assert di.retry_failed(job) == 1 + 5 + 5  # record 5, the held batch, the unclaimed one
    late = raw.commit(job, held)
    assert not late.accepted and late.reason == Reply.STALE
    outage.on = False
    assert di.run_worker(job, outage, "w").finalized
    status = status_of(di, job)
    assert (status.state, status.processed_records, status.failed_records) == ("COMPLETED", 15, 0)
    assert outage.succeeded == Counter(range(15))  # each once, across both attempts


def test_a_resent_redrive_answers_as_the_first(make_import: Make) -> None:
    """The redrive script sent twice (a lost reply) applies once and answers the same."""
    di = make_import(batch_size=5)
    raw = Raw(di)
    job = di.prepare(numbered(10)).job_id
    di.run_worker(job, Outage(lambda i: i < 3), "w")
    sent: list[Any] = []
    flow = redrive_flow(raw.store, job)
    effect = next(flow)
    while not (isinstance(effect, ScriptCall) and effect.script.name == "redriveJob"):
        effect = flow.send(raw.run_call(effect))
    sent.append(raw.run_call(effect))
    sent.append(raw.run_call(effect))
    assert [int(r[1]) for r in sent] == [3, 3] and [int(r[2]) for r in sent] == [2, 2]
    status = status_of(di, job)
    assert (status.attempt, status.total_batches, status.failed_records) == (2, 3, 0)


def test_retention_is_lifted_while_redriven_and_applied_at_each_end(
    make_import: Make, client: Any
) -> None:
    """A redriven job's keys lose their TTL until the new attempt ends, then all get it again."""
    from tests.test_protocol_edges import _keys_without_ttl

    di = make_import(batch_size=5, retention=100, tolerated_failure_count=0)
    namespace = di._core.store.namespace
    job = di.prepare(numbered(20)).job_id
    outage = Outage(lambda i: i == 7)
    di.run_worker(job, outage, "w")
    assert status_of(di, job).state == "FAILED"
    assert _keys_without_ttl(client, namespace) == []  # the threshold applied retention
    assert di.retry_failed(job) == 1 + 10
    assert client.pttl(di._core.store.keys(job).job) == -1
    outage.on = False
    di.run_worker(job, outage, "w")
    assert status_of(di, job).state == "COMPLETED"
    assert _keys_without_ttl(client, namespace) == []


def test_a_redriven_batch_handed_back_keeps_its_records_indexes(make_import: Make) -> None:
    """A time budget ending inside a redriven batch hands the rest back under the right indexes."""
    di = make_import(batch_size=10)
    job = di.prepare(numbered(10)).job_id
    outage = Outage(lambda i: i % 2 == 0)
    di.run_worker(job, outage, "w")
    assert di.retry_failed(job) == 5
    outage.on = False
    slow = Outage(lambda i: False)

    def slowly(record: Any, ctx: Any) -> None:
        time.sleep(0.05)
        slow(record, ctx)

    first = di.process_worker_batch(job, slowly, "w", time_budget=0.12)
    assert first.accepted and 0 < first.processed_count < 5  # the rest was handed back
    di.run_worker(job, slowly, "w")
    status = status_of(di, job)
    assert (status.state, status.processed_records, status.failed_records) == ("COMPLETED", 10, 0)
    assert slow.succeeded == Counter([0, 2, 4, 6, 8])
    assert {slow.keys[i] for i in (0, 8)} == {f"{job}:0", f"{job}:8"}


def test_continue_on_error_false_redrives_the_failing_record_only(make_import: Make) -> None:
    """continue_on_error=False: the failing record runs again; the ones it stopped stay skipped."""
    di = make_import(batch_size=5, continue_on_error=False)
    done = completions(di)
    job = di.prepare(numbered(10)).job_id
    outage = Outage(lambda i: i == 2)
    di.run_worker(job, outage, "w")
    status = status_of(di, job)
    assert (status.state, status.processed_records, status.failed_records) == ("FAILED", 7, 1)
    assert di.retry_failed(job) == 1
    outage.on = False
    di.run_worker(job, outage, "w")
    status = status_of(di, job)
    assert (status.state, status.processed_records, status.failed_records) == ("COMPLETED", 8, 0)
    assert [e.summary.skipped for e in done] == [2, 2]  # records 3 and 4 never ran


def test_redriven_records_keep_their_source_lines(make_import: Make) -> None:
    """A record failing again after a redrive still names its line in the source."""
    from redisbatch import BytesSource, CsvParser

    text = "n\n" + "".join(f"{i}\n" for i in range(12))
    di = make_import(batch_size=4)
    job = di.prepare(BytesSource(text), CsvParser()).job_id
    di.run_worker(job, Outage(lambda i: True), "w")
    assert di.retry_failed(job) == 12
    di.run_worker(job, Outage(lambda i: i % 5 == 0), "w")
    assert [(r.index, r.line) for r in di.failed_records(job)] == [(0, 2), (5, 7), (10, 12)]


def test_dead_lettered_records_are_listed_with_their_lines(make_import: Make) -> None:
    """failed_records lists a dead-lettered batch's records under their indexes and lines."""
    from redisbatch import BytesSource, CsvParser

    text = "n\n" + "".join(f"{i}\n" for i in range(6))
    di = make_import(batch_size=3, max_batch_attempts=1, stale_batch_timeout=0.05)
    raw = Raw(di)
    job = di.prepare(BytesSource(text), CsvParser()).job_id
    raw.claim(job, "dies")
    time.sleep(0.1)
    di.run_worker(job, Outage(lambda i: False), "w")
    listed = [(r.index, r.line, r.processing_error) for r in di.failed_records(job)]
    assert listed == [(i, i + 2, "batch dead-lettered after 1 attempts") for i in range(3)]

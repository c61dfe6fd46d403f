"""Claims riding on commits: a worker running batch after batch commits one batch
and claims the next in one call, with exactly-once intact. On fakeredis and on a
real server, through both facades."""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redisbatch import DistributedImport, IterableSource
from redisbatch._keys import CONSUMER_GROUP, JobKeys
from redisbatch._store import NextClaim

from .test_failover import failing_scripts
from .test_protocol_edges import _drop_reply_of, _retrying
from .test_store import Raw

Make = Callable[..., DistributedImport]


def records(n: int) -> IterableSource:
    return IterableSource({"n": i} for i in range(n))


def test_a_worker_claims_once_then_each_commit_claims_the_next(make_import: Make) -> None:
    """Five batches, one worker: one claim of its own, then five commits, each
    claiming the next batch (the last finds the job complete); counts exact."""
    di = make_import(batch_size=4)
    job = di.prepare(records(20)).job_id
    called = failing_scripts(di, "none", [])
    summary = di.run_worker(job, lambda r, c: None, "w")
    assert (summary.batches, summary.processed, summary.finalized) == (5, 20, True)
    assert summary.state == "COMPLETED"
    assert called.count("claimBatch") == 1
    assert called.count("commitBatch") == 5


def test_a_worker_with_time_to_spare_chains_its_claims(make_import: Make) -> None:
    """Under a time budget far from spent, commits claim the next batch too."""
    di = make_import(batch_size=4)
    job = di.prepare(records(12)).job_id
    called = failing_scripts(di, "none", [])
    summary = di.run_worker(job, lambda r, c: None, "w", time_budget=60)
    assert (summary.batches, summary.processed, summary.state) == (3, 12, "COMPLETED")
    assert called.count("claimBatch") == 1


def test_a_commit_claims_under_a_budget_as_the_worker_would(make_import: Make) -> None:
    """Under a time budget, a commit claims the next batch while the budget is
    not spent; the budget then cuts that batch and its rest goes back."""
    di = make_import(batch_size=4)
    job = di.prepare(records(12)).job_id
    called = failing_scripts(di, "none", [])

    def slow(record: dict[str, Any], ctx: Any) -> None:
        time.sleep(0.1)

    # Batch 0 takes 0.4 s: committed with 0.2 s of budget left, it claims batch 1,
    # which the budget cuts after a record or two.
    summary = di.run_worker(job, slow, "w", time_budget=0.6)
    assert summary.batches == 2 and 4 < summary.processed < 8
    assert called.count("claimBatch") == 1 and called.count("commitBatch") == 2
    status = di.status(job)
    assert status is not None
    assert status.processed_records == summary.processed
    assert (status.processing_batches, status.pending_batches) == (0, 2)


def test_a_chained_batch_the_budget_overtakes_goes_back_whole(make_import: Make) -> None:
    """A batch claimed by a commit, the budget spent before it runs (here: in an
    event handler): handed back at once, not run, its claim not counted as an
    attempt; the next worker takes it as a first delivery."""
    di = make_import(batch_size=2)
    job = di.prepare(records(6)).job_id
    ran: list[int] = []

    def overrun(event: Any) -> None:
        time.sleep(0.3)

    di.on("batch:completed", overrun)
    summary = di.run_worker(job, lambda r, c: ran.append(r["n"]), "w", time_budget=0.2)
    assert ran == [0, 1], "the chained batch was not run"
    assert summary.processed == 2
    status = di.status(job)
    assert status is not None
    assert (status.processing_batches, status.pending_batches) == (0, 2)
    raw = Raw(di)
    attempts = {}
    for _ in range(2):
        claim = raw.claim(job, "next")
        attempts[claim.batch_index] = claim.attempt
    assert attempts == {1: 1, 2: 1}, "the batch handed back whole was delivered once"


def test_a_single_batch_call_claims_nothing_more(make_import: Make) -> None:
    """process_worker_batch commits its one batch and holds nothing afterwards."""
    di = make_import(batch_size=4)
    job = di.prepare(records(12)).job_id
    result = di.process_worker_batch(job, lambda r, c: None, "w")
    assert result.accepted and result.processed_count == 4
    status = di.status(job)
    assert status is not None
    assert (status.processing_batches, status.pending_batches) == (0, 2)


def test_a_repeated_commit_repeats_its_claim(make_import: Make, client: Any) -> None:
    """A commit sent again after a lost reply answers with the same next batch and
    token as the first; the worker holds that one batch only."""
    di = make_import(batch_size=2)
    job = di.prepare(records(8)).job_id
    raw = Raw(di)
    first = raw.claim(job, "w")
    assert first.batch_index == 0 and first.batch is not None
    next_claim = NextClaim("w")
    once, again = (raw.commit(job, first, claim_next=next_claim) for _ in range(2))
    assert once.accepted and again.accepted
    assert once.next_claim is not None and again.next_claim is not None
    assert once.next_claim.batch_index == again.next_claim.batch_index == 1
    assert once.next_claim.token == again.next_claim.token
    assert once.next_claim.attempt == again.next_claim.attempt == 1
    assert again.next_claim.batch is not None and len(again.next_claim.batch) == 2
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.completed_batches) == (2, 1)
    assert (status.processing_batches, status.pending_batches) == (1, 2)
    # A fresh claim takes another batch: the repeat held nothing more.
    assert raw.claim(job, "w").batch_index == 2


def test_a_stale_commit_claims_nothing(make_import: Make) -> None:
    """A commit refused as stale claims no batch for its worker."""
    di = make_import(batch_size=2, stale_batch_timeout=0.05)
    job = di.prepare(records(6)).job_id
    raw = Raw(di)
    lost = raw.claim(job, "slow")
    time.sleep(0.1)
    taken = raw.claim(job, "other")
    assert taken.batch_index == lost.batch_index == 0
    reply = raw.commit(job, lost, claim_next=NextClaim("slow"))
    assert not reply.accepted and reply.next_claim is None
    status = di.status(job)
    assert status is not None and (status.processing_batches, status.pending_batches) == (1, 2)


def test_the_finalizing_commit_leaves_no_consumer(make_import: Make, client: Any) -> None:
    """The commit that completes the job claims nothing and drops its worker's consumer."""
    namespace = f"t{uuid.uuid4().hex[:8]}"
    di = make_import(batch_size=3, namespace=namespace)
    job = di.prepare(records(9)).job_id
    summary = di.run_worker(job, lambda r, c: None, "w")
    assert summary.finalized and summary.state == "COMPLETED"
    queue = JobKeys.of(namespace, job).queue
    assert client.exists(queue)
    assert client.xinfo_consumers(queue, CONSUMER_GROUP) == []


def test_a_paused_job_stops_the_chain_until_resumed(make_import: Make) -> None:
    """A commit into a paused job claims nothing; the worker polls and finishes
    the job once it is resumed."""
    di = make_import(batch_size=2)
    job = di.prepare(records(6)).job_id
    seen: list[int] = []

    def processor(record: dict[str, Any], ctx: Any) -> None:
        seen.append(record["n"])
        if len(seen) == 2:
            di.pause(job)

    result = di.run_worker(job, processor, "w", wait=False)
    assert (result.batches, result.processed) == (1, 2)
    status = di.status(job)
    assert status is not None and status.state == "PAUSED"
    assert (status.processing_batches, status.pending_batches) == (0, 2)
    assert di.resume(job)
    rest = di.run_worker(job, processor, "w")
    assert (rest.batches, rest.processed, rest.state) == (2, 4, "COMPLETED")


def test_a_lost_reply_of_a_chained_commit_is_sent_again(
    real_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real connection cut after the server ran a commit that claimed the
    next batch, the commit is sent again and brings the same batch: the job ends
    with exact counts, and no batch waits for the 60 s stale timeout."""
    client = _retrying(real_url)
    di = DistributedImport(
        client, batch_size=2, namespace=f"chain{uuid.uuid4().hex[:8]}", stale_batch_timeout=60
    )
    job = di.prepare(records(6)).job_id
    done: list[int] = []
    dropped = _drop_reply_of(monkeypatch, di._core.store._scripts["commitBatch"].sha)
    started = time.monotonic()
    summary = di.run_worker(job, lambda r, c: done.append(r["n"]), "w")
    assert time.monotonic() - started < 20
    assert dropped == [1]
    assert (summary.batches, summary.processed, summary.state) == (3, 6, "COMPLETED")
    assert sorted(done) == list(range(6)), "no batch processed twice"
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.completed_batches) == (6, 3)
    client.close()


def _applied_then_failing(di: Any, name: str, until: float) -> list[int]:
    """Makes the facade's calls of script ``name`` reach the server and then raise
    a connection error (as a lost reply does) until ``time.monotonic()`` passes
    ``until``; returns one entry per such call."""
    driver = di._async._driver if hasattr(di, "_async") else di._driver
    original = driver.script
    lost: list[int] = []

    def check(call: Any) -> None:
        if call.script.name == name and time.monotonic() < until:
            lost.append(1)
            raise redis.exceptions.ConnectionError("reply lost (test)")

    if inspect.iscoroutinefunction(original):

        async def async_script(call: Any) -> Any:
            reply = await original(call)
            check(call)
            return reply

        driver.script = async_script
    else:

        def script(call: Any) -> Any:
            reply = original(call)
            check(call)
            return reply

        driver.script = script
    return lost


def test_a_batch_claimed_by_a_commit_whose_replies_were_lost_is_given_back(
    make_import: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """A commit that claimed the next batch, its reply lost and every resend's too
    for longer than the worker rides out: the worker then gives that batch back
    at once (not after the stale timeout), takes it again and ends the job with
    exact counts."""
    di = make_import(batch_size=2, stale_batch_timeout=1.0)
    job = di.prepare(records(6)).job_id
    lost = _applied_then_failing(di, "commitBatch", time.monotonic() + 1.5)
    done: list[int] = []
    with caplog.at_level(logging.INFO, logger="redisbatch"):
        summary = di.run_worker(job, lambda r, c: done.append(r["n"]), "w")
    assert len(lost) >= 2, "the commit was sent again"
    # The first batch's commit went through, but the worker never learned it:
    # its summary counts the two batches after it (the job's counts are exact).
    assert (summary.processed, summary.state) == (4, "COMPLETED")
    assert sorted(set(done)) == list(range(6)) and len(done) == 6
    assert "gives back batch 1 after a lost reply" in caplog.text
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.completed_batches) == (6, 3)

"""The exactly-once promise at its edges: repeated calls after a lost reply, job
ids used again, deep pending lists, worker ids, consumers, retention, names."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from redisbatch import (
    ConfigurationError,
    DistributedImport,
    Field,
    IterableSource,
    JobExistsError,
    Schema,
    SourceError,
)
from redisbatch._codec import encode_failed
from redisbatch._results import ProcessedRecord
from redisbatch._scripts import Reply, ScriptCall
from redisbatch._store import Store
from tests.test_store import Raw, records

Make = Callable[..., DistributedImport]


def answer(raw: Raw, flow: Any, reply: Any) -> Any:
    """What a store flow returns when its first script call answered ``reply``
    (any later effects of the flow are run as usual)."""

    def rest() -> Any:
        try:
            effect = flow.send(reply)
            while True:
                effect = flow.send((yield effect))
        except StopIteration as stop:
            return stop.value

    return raw.run(rest())


def sent_twice(raw: Raw, make_flow: Callable[[], Any]) -> tuple[Any, Any]:
    """Sends the first script call of a store flow twice, as redis-py does when
    the first reply was lost; returns the flow's result for each reply."""
    flow = make_flow()
    call = next(flow)
    assert isinstance(call, ScriptCall)
    first_reply = raw.run_call(call)
    second_reply = raw.run_call(call)
    first = answer(raw, flow, first_reply)
    replay = make_flow()
    next(replay)  # a flow of the same kind, to read the repeat's reply
    return first, answer(raw, replay, second_reply)


def job_events(client: Any, store: Store, job: str, kind: str) -> int:
    entries = client.xrange(store.keys(job).events)
    return sum(1 for _, fields in entries if fields.get(b"type") == kind.encode())


# ---------------------------------------------------------------- repeats


def test_a_repeated_finalizing_commit_answers_finalized(make_import: Make, client: Any) -> None:
    """A commit sent twice (lost reply) answers OK and finalized both times; counted once."""
    di = make_import(batch_size=5)
    job = di.prepare(records(5)).job_id
    raw = Raw(di)
    store = di._core.store
    held = raw.claim(job, "w")
    assert held.batch_index is not None and held.batch is not None

    def commit() -> Any:
        assert held.batch_index is not None
        return store.commit(
            job,
            held.batch_index,
            held.token,
            processed=5,
            failed=0,
            batch_state="COMPLETED",
            failed_payload=b"",
        )

    first, second = sent_twice(raw, commit)
    assert first.accepted and first.finalized is not None
    assert second == first, "the repeat answers as the first: accepted and finalized"
    status = di.status(job)
    assert status is not None and status.processed_records == 5
    assert status.completed_batches == 1 and status.state == "COMPLETED"
    assert job_events(client, store, job, "job:completed") == 1


def _drop_reply_of(monkeypatch: pytest.MonkeyPatch, sha: str) -> list[int]:
    """Makes the next reply to ``EVALSHA sha`` vanish after the server ran it:
    the connection raises ConnectionError, and redis-py's retry sends it again."""
    dropped: list[int] = []
    send, read = redis.connection.Connection.send_command, redis.connection.Connection.read_response

    def send_command(self: Any, *args: Any, **kwargs: Any) -> None:
        self._redisbatch_last = args
        send(self, *args, **kwargs)

    def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = read(self, *args, **kwargs)
        last = getattr(self, "_redisbatch_last", ())
        if not dropped and len(last) > 1 and last[0] == "EVALSHA" and last[1] == sha:
            dropped.append(1)
            raise redis.exceptions.ConnectionError("reply lost (test)")
        return response

    monkeypatch.setattr(redis.connection.Connection, "send_command", send_command)
    monkeypatch.setattr(redis.connection.Connection, "read_response", read_response)
    return dropped


def _retrying(url: str) -> redis.Redis:
    """A client that retries a command after a connection error, as redis.Redis()
    does by default (from_url alone does not)."""
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 3))


def test_a_lost_commit_reply_still_reports_job_complete(
    real_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real connection cut after the server ran the finalizing commit, the
    worker still sees job_complete, and exactly one job:completed fires."""
    client = _retrying(real_url)
    di = DistributedImport(client, batch_size=4, namespace=f"lost{uuid.uuid4().hex[:8]}")
    completed: list[Any] = []
    di.on("job:completed", completed.append)
    job = di.prepare(records(4)).job_id
    dropped = _drop_reply_of(monkeypatch, di._core.store._scripts["commitBatch"].sha)
    result = di.process_worker_batch(job, lambda r, c: None, "w")
    assert dropped == [1], "the reply was lost once and the call re-sent"
    assert result.accepted and result.job_complete
    assert len(completed) == 1
    status = di.status(job)
    assert status is not None and (status.state, status.processed_records) == ("COMPLETED", 4)
    client.close()


def test_a_lost_claim_reply_does_not_hold_a_second_batch(
    real_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim re-sent after a lost reply returns the same batch; the worker holds one."""
    client = _retrying(real_url)
    di = DistributedImport(client, batch_size=1, namespace=f"lost{uuid.uuid4().hex[:8]}")
    job = di.prepare(records(3)).job_id
    dropped = _drop_reply_of(monkeypatch, di._core.store._scripts["claimBatch"].sha)
    claim = Raw(di).claim(job, "w")
    assert dropped == [1]
    assert claim.batch_index == 0 and claim.attempt == 1
    status = di.status(job)
    assert status is not None and status.processing_batches == 1
    client.close()


def test_a_repeated_claim_answers_the_same_batch(make_import: Make) -> None:
    """A claim sent twice gives the same batch and token, and holds one batch."""
    di = make_import(batch_size=1)
    job = di.prepare(records(3)).job_id
    raw = Raw(di)
    store = di._core.store
    first, second = sent_twice(raw, lambda: store.claim(job, "w"))
    assert (first.batch_index, first.token, first.attempt) == (0, second.token, 1)
    assert second.batch_index == 0 and second.attempt == 1
    status = di.status(job)
    assert status is not None and status.processing_batches == 1
    assert raw.commit(job, second).accepted


def test_a_repeated_hand_back_answers_ok_and_queues_once(make_import: Make) -> None:
    """A partial commit sent twice answers OK twice, counts once, queues the rest once."""
    di = make_import(batch_size=4)
    job = di.prepare(records(4)).job_id
    raw = Raw(di)
    store = di._core.store
    held = raw.claim(job, "w")
    assert held.batch_index is not None

    def hand_back() -> Any:
        assert held.batch_index is not None
        return store.commit(
            job,
            held.batch_index,
            held.token,
            processed=1,
            failed=0,
            batch_state="COMPLETED",
            failed_payload=b"",
            remainder=b"rest",
            remainder_count=3,
        )

    first, second = sent_twice(raw, hand_back)
    assert first.accepted and second == first
    status = di.status(job)
    assert status is not None
    assert (status.processed_records, status.pending_batches, status.processing_batches) == (
        1,
        1,
        0,
    )


def test_a_repeated_store_answers_ok_and_stores_once(make_import: Make, client: Any) -> None:
    """A storeBatch sent twice answers OK twice and counts, queues and owns once:
    total_records and total_batches as after one call, one queue entry, and the
    batch's unique values still owned by its own records (not duplicates of
    themselves)."""
    from redisbatch._batcher import Batcher
    from redisbatch._unique import UniqueKeys

    di = make_import(Schema([Field("email"), Field("n")], unique_fields=["email"]), batch_size=2)
    store = di._core.store
    raw = Raw(di)
    validator = di._core.pipeline.validator
    assert validator is not None
    batcher = Batcher(2, skip_empty_rows=False, origin="test", unique=UniqueKeys(validator))
    assert batcher.add({"email": "a@x.io", "n": "1"}) is None
    batch = batcher.add({"email": "a@x.io", "n": "2"})
    assert batch is not None and batch.unique_entries
    raw.run(store.create("s", 2))
    call = store.store_pipeline("s", [batch]).calls[0]
    first, second = raw.run_call(call), raw.run_call(call)
    assert store.store_reply([first]).stopped_state is None, "the first store answered OK"
    assert store.store_reply([first]) == store.store_reply([second])
    keys = store.keys("s")
    total_records, total_batches = client.hmget(keys.job, "total_records", "total_batches")
    assert (int(total_records), int(total_batches)) == (2, 1), "counted once"
    assert client.xlen(keys.queue) == 1, "queued once"
    assert client.hlen(keys.unique) == 1
    assert client.hget(keys.batches, "d:0") == b"[[1,0,0]]", "record 1 duplicates record 0"
    claim = raw.claim("s", "w")
    assert claim.batch_index == 0 and claim.duplicates == ((1, 0, 0),)
    assert raw.claim("s", "w2").batch_index is None, "one batch stored"


def test_a_store_repeated_late_leaves_no_payload_and_keeps_a_remainder(
    make_import: Make, client: Any
) -> None:
    """The payload goes ahead of storeBatch as a plain HSETNX: a repeat sent
    after the batch was committed (its records deleted) does not bring the
    payload back; a repeat after a partial commit keeps the remainder (HSETNX
    does not overwrite it); a store refused (sealed job, deleted job) leaves no
    payload behind. Memory stays bounded by the unfinished batches."""
    from redisbatch._batcher import Batcher

    di = make_import(batch_size=2)
    store = di._core.store
    raw = Raw(di)
    batcher = Batcher(2, skip_empty_rows=False, origin="test")
    batcher.add({"n": "1"})
    first = batcher.add({"n": "2"})
    batcher.add({"n": "3"})
    second = batcher.add({"n": "4"})
    batcher.add({"n": "5"})
    third = batcher.add({"n": "6"})
    assert first is not None and second is not None and third is not None
    raw.run(store.create("s", 2))
    keys = store.keys("s")
    store_first = store.store_pipeline("s", [first]).calls[0]
    store_second = store.store_pipeline("s", [second]).calls[0]
    raw.run_call(store_first)
    raw.run_call(store_second)

    committed = raw.claim("s", "w")
    assert committed.batch_index == 0
    assert raw.commit("s", committed).accepted
    assert client.hexists(keys.records, "0") == 0
    assert store.store_reply([raw.run_call(store_first)]).stopped_state is None
    assert client.hexists(keys.records, "0") == 0, "a committed batch's payload stays deleted"

    handed = raw.claim("s", "w")
    assert handed.batch_index == 1
    reply = raw.run(
        store.commit(
            "s", 1, handed.token, processed=1, failed=0, batch_state="COMPLETED",
            failed_payload=b"", remainder=b"rest", remainder_count=1,
        )
    )  # fmt: skip
    assert reply.accepted
    raw.run_call(store_second)
    assert client.hget(keys.records, "1") == b"rest", "the remainder is kept"

    raw.run(store.seal("s"))
    refused = raw.run_call(store.store_pipeline("s", [third]).calls[0])
    assert store.store_reply([refused]).stopped_state is not None
    assert client.hexists(keys.records, str(third.index)) == 0, "refused: no payload left"
    client.delete(*keys.all)
    gone = raw.run_call(store.store_pipeline("s", [third]).calls[0])
    assert store.store_reply([gone]).stopped_state == "DELETED"
    assert client.exists(keys.records) == 0, "deleted job: no records hash left"


def test_repeated_release_create_seal_and_controls_answer_as_the_first(
    make_import: Make,
) -> None:
    """release, create, seal, pause, resume, abort and reclaim sent twice answer the same."""
    di = make_import(batch_size=2, stale_batch_timeout=60)
    store = di._core.store
    raw = Raw(di)
    created = sent_twice(raw, lambda: store.create("c", 2, nonce="n1"))
    assert created[0] == created[1]
    with pytest.raises(JobExistsError):
        raw.run(store.create("c", 2, nonce="n2"))
    sealed = sent_twice(raw, lambda: store.seal("c", nonce="n1"))
    assert sealed[0] == sealed[1] and sealed[0].finalized is not None, "empty job: sealed final"

    job = di.prepare(records(4)).job_id
    held = raw.claim(job, "w")
    released = sent_twice(raw, lambda: store.release(job, held.batch_index or 0, "w"))
    assert released == (True, True)
    assert sent_twice(raw, lambda: store.pause(job)) == (True, True)
    resumed = sent_twice(raw, lambda: store.resume(job))
    assert resumed[0] == resumed[1] == (True, None)
    raw.claim(job, "w")
    time.sleep(0.02)
    assert sent_twice(raw, lambda: store.reclaim_stale(job, 0.01)) == (1, 1)
    assert sent_twice(raw, lambda: store.end(job, "ABORTED")) == (True, True)


# ---------------------------------------------------------------- incarnations


def test_tokens_of_a_deleted_job_are_refused_by_its_successor(make_import: Make) -> None:
    """A job deleted and prepared again under its id refuses the old holder's
    heartbeat and commit; the new holder's commit is accepted."""
    di = make_import(batch_size=1)
    raw = Raw(di)
    di.prepare(records(2), job_id="again")
    old = raw.claim("again", "old")
    assert old.batch_index == 0
    assert di.delete("again")
    di.prepare(records(2), job_id="again")
    new = raw.claim("again", "new")
    assert new.batch_index == 0
    assert raw.heartbeat("again", "old", old)[0] == b"STALE"
    late = raw.commit("again", old)
    assert not late.accepted and late.reason == Reply.STALE
    assert raw.commit("again", new).accepted
    status = di.status("again")
    assert status is not None and (status.processed_records, status.completed_batches) == (1, 1)


# ---------------------------------------------------------------- stale reclaim


def test_a_dead_batch_behind_live_ones_is_reclaimed_by_the_next_claim(make_import: Make) -> None:
    """A dead batch behind 12 heartbeating ones goes to the first claim after its timeout."""
    di = make_import(batch_size=1, stale_batch_timeout=0.5)
    job = di.prepare(records(13)).job_id
    raw = Raw(di)
    live = [raw.claim(job, f"live{i}") for i in range(12)]
    dead = raw.claim(job, "dead")
    assert dead.batch_index == 12
    time.sleep(0.6)
    for i, claim in enumerate(live):
        assert raw.heartbeat(job, f"live{i}", claim)[0] == b"OK"
    taken = raw.claim(job, "rescuer")
    assert taken.batch_index == 12 and taken.attempt == 2
    assert not raw.commit(job, dead).accepted
    assert raw.commit(job, taken).accepted


# ---------------------------------------------------------------- worker ids


def test_a_worker_named_reclaimer_keeps_its_batch(make_import: Make) -> None:
    """A worker named like a former internal consumer keeps its batch through a reclaim."""
    di = make_import(batch_size=1)
    job = di.prepare(records(1)).job_id
    raw = Raw(di)
    held = raw.claim(job, "reclaimer")
    assert di.reclaim_stale_batches(job, timeout=60) == 0
    status = di.status(job)
    assert status is not None and status.processing_batches == 1
    assert raw.commit(job, held).finalized is not None


@pytest.mark.parametrize("worker_id", ["", "a{b}", "x}", "w\udc80"])
def test_worker_ids_are_checked(make_import: Make, worker_id: str) -> None:
    """An empty worker id, one with braces or one not encodable as UTF-8 is refused."""
    di = make_import(batch_size=1)
    job = di.prepare(records(1)).job_id
    with pytest.raises(ConfigurationError, match="worker_id"):
        di.process_worker_batch(job, lambda r, c: None, worker_id)
    with pytest.raises(ConfigurationError, match="worker_id"):
        di.release_batch(job, "batch-0", worker_id)


# ---------------------------------------------------------------- consumers


def test_workers_do_not_accumulate_as_consumers(make_import: Make, client: Any) -> None:
    """50 workers doing one batch each, then polling once, leave no consumer behind."""
    di = make_import(batch_size=1)
    job = di.prepare(records(50)).job_id
    for i in range(50):
        assert di.process_worker_batch(job, lambda r, c: None, f"worker-{i}").accepted
    assert not di.process_worker_batch(job, lambda r, c: None, "late").claimed
    queue = di._core.store.keys(job).queue
    assert len(client.xinfo_consumers(queue, "workers")) <= 2


def test_a_consumer_holding_a_batch_is_kept(make_import: Make, client: Any) -> None:
    """A worker is dropped as a consumer only once it holds nothing."""
    di = make_import(batch_size=1)
    job = di.prepare(records(3)).job_id
    raw = Raw(di)
    a, b = raw.claim(job, "w"), raw.claim(job, "w")
    queue = di._core.store.keys(job).queue
    assert raw.commit(job, a).accepted
    consumers = {c["name"]: c["pending"] for c in client.xinfo_consumers(queue, "workers")}
    assert consumers == {b"w": 1}
    assert raw.commit(job, b).accepted
    assert client.xinfo_consumers(queue, "workers") == []


# ---------------------------------------------------------------- retention


def _failed_part(index: int) -> bytes:
    record = ProcessedRecord(
        index=index,
        raw={"n": index},
        parsed={"n": index},
        status="failed",
        errors=[],
        processing_error="boom",
        retry_count=0,
    )
    return encode_failed([record])


def _keys_without_ttl(client: Any, namespace: str) -> list[bytes]:
    index = f"{namespace}:jobs".encode()
    return [
        key
        for key in client.scan_iter(match=f"{namespace}:*")
        if key != index and client.pttl(key) < 0
    ]


def test_a_hand_back_after_abort_settles_and_keeps_retention(
    make_import: Make, client: Any
) -> None:
    """A hand-back arriving after abort is counted, queues nothing again, and every
    key of the job (the failed hash it created included) carries the TTL."""
    di = make_import(batch_size=4, retention=100)
    job = di.prepare(records(4)).job_id
    raw = Raw(di)
    store = di._core.store
    held = raw.claim(job, "w")
    assert held.batch_index is not None
    assert di.abort(job)
    reply = raw.run(
        store.commit(
            job,
            held.batch_index,
            held.token,
            processed=1,
            failed=1,
            batch_state="COMPLETED",
            failed_payload=_failed_part(1),
            remainder=b"rest",
            remainder_count=2,
        )
    )
    assert reply.accepted and reply.finalized is None
    status = di.status(job)
    assert status is not None and status.state == "ABORTED"
    assert (status.processed_records, status.failed_records, status.processing_batches) == (
        1,
        1,
        0,
    )
    keys = store.keys(job)
    assert client.xlen(keys.queue) == 0, "the rest was not queued into the ended job"
    assert client.hlen(keys.records) == 0
    assert client.exists(keys.failed)
    assert _keys_without_ttl(client, store.namespace) == []


def test_every_key_of_a_finished_job_has_a_ttl(make_import: Make, client: Any) -> None:
    """After a job finalizes (with failed records) or is aborted, no key of it lacks a TTL."""
    di = make_import(batch_size=2, retention=100)
    job = di.prepare(records(6)).job_id

    def fail_odd(record: dict[str, Any], ctx: Any) -> None:
        if record["n"] % 2:
            raise RuntimeError("odd")

    di.run_worker(job, fail_odd)
    aborted = di.prepare(records(6)).job_id
    raw = Raw(di)
    held = raw.claim(aborted, "w")
    assert di.abort(aborted)
    assert raw.commit(aborted, held).accepted
    assert _keys_without_ttl(client, di._core.store.namespace) == []


def test_the_job_index_drops_expired_jobs(make_import: Make, client: Any) -> None:
    """Jobs whose keys expired leave the namespace's index at a later create."""
    di = make_import(batch_size=2, retention=100)
    store = di._core.store
    gone = [di.prepare(records(2), job_id=f"old{i}").job_id for i in range(3)]
    kept = di.prepare(records(2), job_id="kept").job_id
    for job in gone:
        for key in store.keys(job).all:
            client.pexpire(key, 1)
    time.sleep(0.05)
    di.prepare(records(2), job_id="new")
    members = {m.decode() for m in client.zrange(store.index_key, 0, -1)}
    assert members == {kept, "new"}


# ---------------------------------------------------------------- prepare resume


def _gated(count: int, gate: threading.Event, after: int) -> Iterator[dict[str, int]]:
    for i in range(count):
        if i == after:
            assert gate.wait(30)
        yield {"n": i}


def test_of_two_concurrent_resumes_one_completes_and_the_other_raises(client: Any) -> None:
    """Two prepare(..., resume=True) of one interrupted job: one returns the totals,
    the other raises JobExistsError."""
    namespace = f"twin{uuid.uuid4().hex[:8]}"
    first = DistributedImport(client, batch_size=10, namespace=namespace)
    second = DistributedImport(client, batch_size=10, namespace=namespace)
    first._driver.run(first._core.store.create("r", 10))  # an interrupted prepare
    gate = threading.Event()
    outcome: list[Any] = []

    def slow_resume() -> None:
        try:
            outcome.append(
                first.prepare(IterableSource(_gated(50, gate, 20)), job_id="r", resume=True)
            )
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slow_resume)
    thread.start()
    try:
        done = second.prepare(IterableSource({"n": i} for i in range(50)), job_id="r", resume=True)
    finally:
        gate.set()
        thread.join(30)
    assert (done.total_records, done.total_batches) == (50, 5)
    assert len(outcome) == 1 and isinstance(outcome[0], JobExistsError), outcome
    status = first.status("r")
    assert status is not None and (status.total_records, status.total_batches) == (50, 5)


def test_resuming_a_failed_job_says_why_and_what_to_do(make_import: Make) -> None:
    """resume=True on a job a source error left FAILED says its state, error and way out."""
    di = make_import(batch_size=2)

    def broken() -> Iterator[dict[str, int]]:
        yield {"n": 0}
        raise OSError("disk gone")

    with pytest.raises(SourceError):
        di.prepare(IterableSource(broken()), job_id="broken")
    with pytest.raises(JobExistsError) as caught:
        di.prepare(records(2), job_id="broken", resume=True)
    message = str(caught.value)
    assert "FAILED" in message and "disk gone" in message
    assert "delete" in message and "new job_id" in message


# ---------------------------------------------------------------- names


def test_names_not_encodable_as_utf8_are_configuration_errors(make_import: Make) -> None:
    """A job id or namespace with a lone surrogate raises ConfigurationError naming it."""
    di = make_import(batch_size=2)
    with pytest.raises(ConfigurationError, match="job_id") as caught:
        di.prepare(records(2), job_id="a\udc80")
    assert "a\\udc80" in str(caught.value)
    with pytest.raises(ConfigurationError, match="namespace"):
        make_import(namespace="n\udc80")


def test_reclaimable_in_tells_when_the_stalest_lease_runs_out(make_import: Make) -> None:
    """reclaimable_in is None with nothing claimed, else the time left on the stalest lease."""
    di = make_import(batch_size=1, stale_batch_timeout=30)
    job = di.prepare(records(2)).job_id
    raw = Raw(di)
    store = di._core.store
    assert raw.run(store.reclaimable_in(job)) is None
    raw.claim(job, "w")
    left = raw.run(store.reclaimable_in(job))
    assert left is not None and 25 < left <= 30

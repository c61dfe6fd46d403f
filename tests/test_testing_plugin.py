"""redisbatch.testing: the pytest plugin's fixtures and run_job, used as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from redisbatch import (
    BatchContext,
    CsvParser,
    DistributedImport,
    Field,
    IterableSource,
    ProcessingContext,
    Schema,
    batch_processor,
)
from redisbatch.testing import Crash, ImportFactory, JobRun, run_job

pytest_plugins = ["pytester"]
#: Options of the pytest runs inside tests: the plugins a user's project would not have
#: (hypothesis would be imported afresh, and assert-rewritten, in each run).
INNER = ("-p", "no:valkey", "-p", "no:hypothesispytest", "-p", "no:cacheprovider")

SCHEMA = Schema([Field("email", "email", required=True), Field("n", "integer")])


def rows(count: int, *, invalid: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """``count`` users; the rows at the ``invalid`` positions have a bad email."""
    return [
        {"email": f"user{i}.example.com" if i in invalid else f"user{i}@example.com", "n": i}
        for i in range(count)
    ]


class Store:
    """A processor writing to a dict keyed by the idempotency key, as a real one would."""

    def __init__(self) -> None:
        self.rows: dict[str, Any] = {}

    def __call__(self, record: dict[str, Any], ctx: ProcessingContext) -> None:
        self.rows[ctx.idempotency_key] = record["n"]


def test_the_plugin_is_loaded_by_its_entry_point(request: pytest.FixtureRequest) -> None:
    """pytest registers the plugin under the name "redisbatch" by itself."""
    plugin = request.config.pluginmanager.get_plugin("redisbatch")
    assert plugin is not None
    assert plugin.__name__ == "_redisbatch_pytestplugin"


def test_redisbatch_import_builds_facades_on_one_fake_server(
    redisbatch_import: ImportFactory, redisbatch_redis: redis.Redis
) -> None:
    """redisbatch_import(schema, **options) builds DistributedImports sharing the test's server."""
    orchestrator = redisbatch_import(SCHEMA, batch_size=3)
    worker = redisbatch_import(SCHEMA, batch_size=3)
    assert isinstance(orchestrator, DistributedImport)
    assert orchestrator.redis is redisbatch_redis
    job = orchestrator.prepare(IterableSource(rows(7, invalid=(4,))))
    assert job.total_batches == 3
    store = Store()
    summary = worker.run_worker(job.job_id, store)
    assert summary.finalized
    status = orchestrator.status(job.job_id)
    assert status is not None and status.state == "COMPLETED"
    assert (status.processed_records, status.failed_records) == (6, 1)
    assert redisbatch_redis.dbsize() > 0


def test_loading_the_plugin_costs_nothing() -> None:
    """Loading the plugin, as pytest does in every session, imports neither redisbatch
    nor fakeredis; importing redisbatch.testing does not import fakeredis either."""
    code = (
        "import sys, _redisbatch_pytestplugin; "
        "print(sorted({'redisbatch', 'redis', 'fakeredis'} & set(sys.modules))); "
        "import redisbatch.testing; print('fakeredis' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split("\n")[:2] == ["[]", "False"]


def test_run_job_reports_status_failures_and_calls(client: redis.Redis) -> None:
    """run_job prepares, works the job to its end, and returns status, failed records, calls."""
    store = Store()
    run = run_job(store, rows(10, invalid=(3,)), schema=SCHEMA, batch_size=4, client=client)
    assert isinstance(run, JobRun)
    assert run.state == "COMPLETED"
    assert (run.status.processed_records, run.status.failed_records) == (9, 1)
    assert [(r.index, r.errors[0].field) for r in run.failed] == [(3, "email")]
    assert run.calls == {i: 1 for i in range(10) if i != 3}
    assert len(run.batches) == 3 and all(b.accepted for b in run.batches)
    assert run.crashes == 0
    assert [e.type for e in run.events].count("job:completed") == 1
    assert len(store.rows) == 9


def test_run_job_reads_text_with_a_parser() -> None:
    """A str source is the content, read by the parser given."""
    text = "email,n\na@example.com,1\nnot-an-email,2\nb@example.com,x\n"
    run = run_job(Store(), text, CsvParser(), schema=SCHEMA)
    assert run.state == "COMPLETED"
    assert [r.index for r in run.failed] == [1, 2]


def test_a_worker_dying_mid_batch_is_redone_by_another(client: redis.Redis) -> None:
    """A worker dying after 2 records of batch 1: its batch is reclaimed and redone by
    another worker; counts exact, the 2 records processed twice, nothing else."""
    store = Store()
    run = run_job(
        store,
        rows(20),
        schema=SCHEMA,
        batch_size=5,
        workers=2,
        crashes=[Crash(batch=1, after=2)],
        client=client,
    )
    assert run.state == "COMPLETED"
    assert run.crashes == 1
    assert (run.status.processed_records, run.status.failed_records) == (20, 0)
    assert run.calls == {i: 2 if i in (5, 6) else 1 for i in range(20)}
    assert sorted(b.batch_index for b in run.batches) == [0, 1, 2, 3]
    assert all(b.accepted for b in run.batches)
    claims = [(e.batch_index, e.worker_id) for e in run.events if e.type == "batch:claimed"]
    died = next(worker for index, worker in claims if index == 1)
    redone = [worker for index, worker in claims if index == 1][1]
    assert redone != died
    assert len(store.rows) == 20


@pytest.mark.parametrize(
    ("after", "twice"),
    [
        (0, set()),  # dies as soon as it has claimed the batch
        (5, {5, 6, 7, 8, 9}),  # dies after every record, before committing
        (50, {5, 6, 7, 8, 9}),  # more than the batch holds: the same
    ],
)
def test_where_a_worker_dies(after: int, twice: set[int]) -> None:
    """Crash.after counts records handed to the processor; at or past the batch's end the
    worker dies just before committing."""
    run = run_job(Store(), rows(15), batch_size=5, crashes=[Crash(batch=1, after=after)])
    assert run.state == "COMPLETED"
    assert run.status.processed_records == 15
    assert run.crashes == 1
    assert {i for i, n in run.calls.items() if n == 2} == twice
    assert set(run.calls) == set(range(15))


def test_a_batch_processor_dying_is_redone_whole() -> None:
    """A batch_processor's worker that dies after its call sees the whole batch again."""
    seen: list[list[int]] = []

    @batch_processor
    def insert(records: list[dict[str, Any]], ctx: BatchContext) -> None:
        seen.append(list(ctx.record_indexes))

    run = run_job(insert, rows(6), batch_size=3, crashes=[Crash(batch=0, after=1)])
    assert run.state == "COMPLETED" and run.status.processed_records == 6
    assert sorted(seen) == [[0, 1, 2], [0, 1, 2], [3, 4, 5]]
    assert run.calls == {0: 2, 1: 2, 2: 2, 3: 1, 4: 1, 5: 1}


def test_a_batch_that_kills_every_worker_is_dead_lettered(client: redis.Redis) -> None:
    """A batch whose every delivery dies is dead-lettered after max_batch_attempts; the job
    ends FAILED with its records failed, the others processed."""
    run = run_job(
        Store(),
        rows(9),
        batch_size=3,
        max_batch_attempts=2,
        crashes=[Crash(batch=1, after=1, times=5)],
        client=client,
    )
    assert run.state == "FAILED"
    assert run.crashes == 2
    assert (run.status.processed_records, run.status.failed_records) == (6, 3)
    assert [r.index for r in run.failed] == [3, 4, 5]
    assert all("dead-lettered after" in (r.processing_error or "") for r in run.failed)


def test_processor_failures_and_retries_are_counted() -> None:
    """A record whose processor raises is retried max_retries times, then failed."""

    def flaky(record: dict[str, Any], ctx: ProcessingContext) -> None:
        if record["n"] == 2:
            raise RuntimeError("the database said no")

    run = run_job(flaky, rows(4), schema=SCHEMA, max_retries=2)
    assert run.state == "COMPLETED"
    assert [(r.index, r.processing_error) for r in run.failed] == [(2, "the database said no")]
    assert run.calls == {0: 1, 1: 1, 2: 3, 3: 1}


def test_run_job_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    """Mistakes are named: an async processor, a path given as a str, a bad Crash."""

    async def save(record: dict[str, Any], ctx: ProcessingContext) -> None:
        pass

    with pytest.raises(TypeError, match="must not be async"):
        run_job(save, rows(1))
    with pytest.raises(ValueError, match="FileSource"):
        run_job(Store(), "users.csv", CsvParser())
    with pytest.raises(ValueError, match="after"):
        Crash(after=-1)
    with pytest.raises(ValueError, match="workers"):
        run_job(Store(), rows(1), workers=0)
    with pytest.raises(ValueError, match=r"Crash\(batch=2, after=0, times=1\) can never happen"):
        run_job(Store(), rows(4), batch_size=2, crashes=[Crash(batch=2)])
    path = tmp_path / "users.csv"
    path.write_text("email,n\na@example.com,1\n")
    assert run_job(Store(), path, CsvParser(), schema=SCHEMA).status.processed_records == 1


USER_TESTS = """
from redisbatch import Field, IterableSource, Schema
from redisbatch.testing import Crash, run_job

schema = Schema([Field("email", "email", required=True)])
saved = {}


def save_user(record, ctx):
    saved[ctx.idempotency_key] = record["email"]


def test_with_the_fixture(redisbatch_import):
    di = redisbatch_import(schema, batch_size=2)
    job = di.prepare(IterableSource([{"email": "a@example.com"}, {"email": "nope"}]))
    assert di.run_worker(job.job_id, save_user).finalized
    assert [r.index for r in di.failed_records(job.job_id)] == [1]


def test_with_run_job():
    records = [{"email": f"u{i}@example.com"} for i in range(10)]
    run = run_job(save_user, records, schema=schema, batch_size=5, workers=2,
                  crashes=[Crash(batch=0, after=3)])
    assert run.status.state == "COMPLETED"
    assert run.status.processed_records == 10
    assert run.calls[0] == 2 and run.calls[9] == 1
"""


def test_a_users_test_suite_uses_the_plugin(pytester: pytest.Pytester) -> None:
    """In a user's project the fixtures and run_job work with warnings as errors."""
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_users=USER_TESTS)
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(passed=2)


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    """-p no:redisbatch removes the fixtures (the plugin is the entry point, nothing else)."""
    pytester.makepyfile(test_users=USER_TESTS)
    result = pytester.runpytest(*INNER, "-p", "no:redisbatch")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'redisbatch_import' not found*"])


def test_the_plugin_without_autoloading(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With plugin autoloading off, pytest_plugins = ["redisbatch.testing"] registers it."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makeconftest('pytest_plugins = ["redisbatch.testing"]\n')
    pytester.makepyfile(test_users=USER_TESTS)
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(passed=2)


def test_the_readme_example_runs(pytester: pytest.Pytester) -> None:
    """The README's "Testing your processor" example passes as it is written."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Testing your processor") :]
    code = section[section.index("```python\n") + 10 : section.index("```\n\n")]
    assert code.startswith("# test_users.py")
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_users=code)
    pytester.runpytest(*INNER).assert_outcomes(passed=2)

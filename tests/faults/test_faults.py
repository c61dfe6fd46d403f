"""The fault scenarios of ``scenarios`` at CI sizes (benchmarks/chaos.py runs
them long). Each asserts: every record processed at least once, counts exact,
one finalization per job (told to one caller, one event heard, one on the
event stream), the job COMPLETED and every key on a TTL."""

from __future__ import annotations

import pytest

from . import scenarios

pytestmark = pytest.mark.real_only


@pytest.mark.parametrize("facade", ["sync", "async"])
def test_workers_killed_at_random_lose_nothing(facade: str) -> None:
    """A 200-batch job, 4 workers SIGKILLed at random and replaced: nothing lost or doubled."""
    outcome = scenarios.worker_kills(
        facade=facade, rounds=2, batches=200, seed=11, kill_every=(0.1, 0.3)
    )
    assert outcome.ok, outcome.problems()
    assert outcome.faults >= 3, "too few kills landed to mean anything"


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_redis_killed_and_restarted_mid_job(fsync: str) -> None:
    """The server SIGKILLed twice mid-job, restarted from its AOF: counts exact, job completes."""
    outcome = scenarios.redis_restarts(fsync=fsync, rounds=1, batches=200, seed=5)
    assert outcome.faults == 2, "the server was not killed mid-job"
    assert outcome.ok, outcome.problems()


@pytest.mark.parametrize("facade", ["sync", "async"])
def test_connections_cut_before_and_after_the_server_runs_a_call(facade: str) -> None:
    """A proxy cutting 1% of requests and of replies: retried calls count once, one finalization
    (the async workers with several lanes, holding two batches at times)."""
    outcome = scenarios.cut_connections(rounds=1, batches=200, seed=3, facade=facade)
    assert outcome.faults >= 5, "too few cuts to mean anything"
    assert outcome.ok, outcome.problems()


def test_workers_with_clocks_minutes_apart() -> None:
    """Workers at -10..+10 minutes, one killed: the server's clock decides; the job is exact."""
    outcome = scenarios.skewed_clocks(rounds=1, batches=200, seed=2)
    assert outcome.faults == 4 + 1, "the worker was not killed mid-job (4 skewed workers + 1 kill)"
    assert outcome.ok, outcome.problems()


@pytest.mark.parametrize("facade", ["sync", "async"])
def test_serverless_invocations_leave_nothing_in_redis(facade: str) -> None:
    """200 invocations with time budgets, each its own client and worker id: no consumer or
    per-worker field left in Redis, the job exact."""
    outcome = scenarios.serverless(invocations=200, batches=60, seed=4, facade=facade)
    assert outcome.ok, outcome.problems()


@pytest.mark.parametrize("facade", ["sync", "async"])
def test_serverless_invocations_leave_no_thread(facade: str) -> None:
    """Invocations leave no thread running in the process once they returned."""
    outcome = scenarios.serverless(invocations=100, batches=30, seed=6, facade=facade)
    assert outcome.threads_left == 0


def test_cluster_failover_of_the_jobs_master() -> None:
    """3 masters + replicas, the job's master SIGKILLed mid-job and its replica promoted: exact."""
    outcome = scenarios.cluster_failover(rounds=1, batches=200, seed=7)
    assert outcome.faults == 1, "the master was not killed mid-job"
    assert outcome.ok, outcome.problems()
    assert outcome.restarts == 0, "run_worker raised during the failover"

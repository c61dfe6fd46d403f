"""The long fault run: the scenarios of tests/faults at full size, and the
store's model test with many more examples, on a server this script starts.

    python benchmarks/chaos.py                 # the full run (tens of minutes)
    python benchmarks/chaos.py --quick         # CI sizes, a smoke run
    REDISBATCH_TEST_SERVER=valkey python benchmarks/chaos.py   # on Valkey

Prints one table row per scenario: rounds, faults injected, records lost,
double counts, finalizations per job (told to a caller / job:completed heard
by a handler / on the job's event stream), threads left after serverless
invocations, run_worker restarts by a supervisor loop (cluster failover,
where run_worker does not ride it out by itself), time. Exits 1 if any
scenario lost or doubled a record or finalized other than once.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redisbatch._embedded import EmbeddedServer, find_server_binary, server_version  # noqa: E402
from tests.faults import scenarios  # noqa: E402
from tests.faults.scenarios import Outcome  # noqa: E402


def model_run(examples: int, steps: int) -> Outcome:
    """The hypothesis model test of the store (tests/test_model.py) on the real server."""
    import redis
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import run_state_machine_as_test

    from tests.test_model import machine_for

    outcome = Outcome("store model (hypothesis, steps)")
    started = time.monotonic()
    with EmbeddedServer() as server:
        client = redis.Redis.from_url(server.url)
        try:
            run_state_machine_as_test(
                machine_for(client),
                settings=settings(
                    max_examples=examples,
                    stateful_step_count=steps,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
        except AssertionError as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            outcome.notes.append(f"model broken at {frame.name}:{frame.lineno} {frame.line} {exc}")
            traceback.print_exc()
        client.close()
    outcome.rounds = examples
    outcome.faults = examples * steps  # calls made against the model (an upper bound)
    outcome.seconds = time.monotonic() - started
    return outcome


def plan(quick: bool, rounds: int) -> list[tuple[str, Callable[[], Outcome]]]:
    big = 200 if quick else 1000
    kill_rounds = 1 if quick else rounds
    other_rounds = 1 if quick else max(1, rounds // 4)
    invocations = 200 if quick else 1000
    return [
        *(
            (
                f"kill-{facade}",
                lambda facade=facade: scenarios.worker_kills(
                    facade=facade, rounds=kill_rounds, batches=big, seed=1
                ),
            )
            for facade in ("sync", "async")
        ),
        *(
            (
                f"restart-{fsync}",
                lambda fsync=fsync: scenarios.redis_restarts(
                    fsync=fsync, rounds=other_rounds, batches=big, restarts=3, seed=2
                ),
            )
            for fsync in ("always", "everysec")
        ),
        ("proxy", lambda: scenarios.cut_connections(rounds=other_rounds, batches=big, seed=3)),
        ("skew", lambda: scenarios.skewed_clocks(rounds=other_rounds, batches=big, seed=4)),
        *(
            (
                f"serverless-{facade}",
                lambda facade=facade: scenarios.serverless(
                    invocations=invocations, batches=invocations // 3, seed=5, facade=facade
                ),
            )
            for facade in ("sync", "async")
        ),
        ("cluster", lambda: scenarios.cluster_failover(rounds=other_rounds, batches=big, seed=6)),
        ("model", lambda: model_run(50 if quick else 1000, 50)),
    ]


def table(outcomes: list[Outcome]) -> str:
    head = (
        "| scenario | rounds | faults injected | records | records lost | double counts "
        "| finalizations per job (told/heard/stream) | threads left | worker restarts "
        "| seconds | result |"
    )
    rows = [head, "|" + "---|" * 11]
    for o in outcomes:
        final = "/".join(Outcome.spread(v) for v in (o.told, o.heard, o.streamed))
        is_model = o.scenario.startswith("store model")
        ok = not o.notes if is_model else o.ok
        rows.append(
            f"| {o.scenario} | {o.rounds} | {o.faults} | {o.records} | {o.lost} "
            f"| {o.double_counts} | {final} | {o.threads_left} | {o.restarts} | {o.seconds:.0f} "
            f"| {'ok' if ok else 'FAILED: ' + '; '.join(o.notes)} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI sizes")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the kill scenarios")
    parser.add_argument("--only", nargs="*", help="scenario names (kill-sync, proxy, model, ...)")
    args = parser.parse_args()
    binary = find_server_binary()
    if binary is None:
        print("no redis-server/valkey-server found", file=sys.stderr)
        return 2
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    print(f"server: {server_version(binary)} ({binary}); commit {commit or '?'}")
    print(f"command: python benchmarks/chaos.py {' '.join(sys.argv[1:])}".rstrip())
    outcomes = []
    for name, run in plan(args.quick, args.rounds):
        if args.only and name not in args.only:
            continue
        started = time.monotonic()
        outcome = run()
        outcomes.append(outcome)
        print(f"  {name}: {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    print(table(outcomes))
    failed = [
        o for o in outcomes if (o.notes if o.scenario.startswith("store model") else not o.ok)
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

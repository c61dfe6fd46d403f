"""The pure parts behind the command line: flows run in step, rate and ETA,
the progress line, formats told from names."""

from __future__ import annotations

import io
from typing import Any

import pytest

from redisbatch import JobStatus
from redisbatch._effects import Command, Pipeline, Sleep
from redisbatch._exceptions import ConfigurationError
from redisbatch._jobs import gather
from redisbatch._progress import Progress, Rate, describe_eta
from redisbatch._scripts import ScriptCall
from redisbatch._source_spec import format_of


def _flow(name: str, steps: int) -> Any:
    got = []
    for step in range(steps):
        got.append((yield ScriptCall(name, (f"{name}{step}",), ())))  # type: ignore[arg-type]
    return got


def test_gather_pipelines_script_calls_and_passes_other_effects() -> None:
    """Flows waiting on script calls share one pipeline; other effects go one by one."""

    def other() -> Any:
        first = yield Command(("PING",))
        yield Sleep(0)
        return first

    flows = [_flow("a", 2), _flow("b", 1), other()]
    runner = gather(flows)
    effect = next(runner)
    assert isinstance(effect, ScriptCall)  # mixed: one by one
    effect = runner.send("a0!")
    assert isinstance(effect, ScriptCall)
    assert isinstance(runner.send("b0!"), Command)
    assert isinstance(runner.send("PONG"), ScriptCall)  # a's second step, b and other ran on
    assert isinstance(runner.send("a1!"), Sleep)
    with pytest.raises(StopIteration) as stop:
        runner.send(None)
    assert stop.value.value == [["a0!", "a1!"], ["b0!"], "PONG"]

    runner = gather([_flow("a", 1), _flow("b", 1)])
    effect = next(runner)
    assert isinstance(effect, Pipeline) and len(effect.calls) == 2
    with pytest.raises(StopIteration) as stop:
        runner.send(["x", "y"])
    assert stop.value.value == [["x"], ["y"]]


def test_gather_throws_a_pipeline_error_into_its_flow() -> None:
    """An error reply in a pipeline is raised inside the flow that made the call."""

    def careful() -> Any:
        try:
            yield ScriptCall("s", ("k",), ())  # type: ignore[arg-type]
        except ValueError as exc:
            return f"caught {exc}"
        return "no error"

    runner = gather([careful(), careful()])
    next(runner)
    with pytest.raises(StopIteration) as stop:
        runner.send([ValueError("boom"), "fine"])
    assert stop.value.value == ["caught boom", "no error"]


def test_gather_throws_a_failed_effect_into_its_flow_when_run_one_by_one() -> None:
    """An effect that fails outside a pipeline is raised inside the flow that
    yielded it; the other flows go on."""

    def careful() -> Any:
        try:
            yield Command(("GET", "k"))
        except ValueError as exc:
            return f"caught {exc}"
        return "no error"

    runner = gather([careful(), _flow("a", 1)])
    assert isinstance(next(runner), Command)
    assert isinstance(runner.throw(ValueError("boom")), ScriptCall)
    with pytest.raises(StopIteration) as stop:
        runner.send("a0!")
    assert stop.value.value == ["caught boom", ["a0!"]]


def test_rate_over_a_window() -> None:
    """The rate is the count's change over the samples in the window."""
    rate = Rate(window=10)
    assert rate.add(0, now=0.0) is None
    assert rate.add(50, now=1.0) == 50.0
    assert rate.add(100, now=2.0) == 50.0
    assert rate.add(100, now=30.0) == pytest.approx(0.0)  # old samples leave the window


def _status(done: int, total: int = 1000, state: str = "PROCESSING") -> JobStatus:
    return JobStatus(
        job_id="j", state=state, total_records=total, total_batches=10, pending_batches=0,
        processing_batches=0, completed_batches=0, failed_batches=0,
        processed_records=done - 1 if done else 0, failed_records=1 if done else 0,
        is_complete=state in ("COMPLETED", "FAILED", "ABORTED"), created_at=0.0,
        started_at=None, completed_at=None, error=None,
    )  # fmt: skip


def test_progress_plain_lines_are_throttled() -> None:
    """Off a terminal: one plain line every few seconds, and the final one."""
    out = io.StringIO()
    progress = Progress("watch", stream=out, live=False, every=3600)
    progress.update(_status(0))
    progress.update(_status(500))
    progress.update(_status(1000, state="COMPLETED"), final=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("PROCESSING 0/1,000 (0%)  failed 0")
    assert lines[1].startswith("COMPLETED  1,000/1,000 (100%)  failed 1") and "ETA 0s" in lines[1]
    assert "\r" not in out.getvalue()


def test_progress_live_line_rewrites_in_place() -> None:
    """On a terminal: a bar rewritten with carriage returns, a newline at the end."""
    out = io.StringIO()
    progress = Progress("watch", stream=out, live=True)
    progress.update(_status(250))
    progress.update(_status(500))
    progress.update(_status(1000, state="COMPLETED"), final=True)
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    assert "[######------------------] 250/1,000 (25%)" in text
    rate, eta = progress.measure(_status(600))
    assert rate is not None and eta is not None and eta >= 0
    assert (
        describe_eta(3725) == "1h02m" and describe_eta(75) == "1m15s" and describe_eta(None) == "?"
    )


def test_format_from_names() -> None:
    """The format comes from the extension, compression suffixes and URLs included."""
    assert format_of("a.csv") == "csv" and format_of("a.CSV.gz") == "csv"
    assert format_of("https://h/x/users.ndjson?token=1") == "ndjson"
    assert format_of("a.jsonl.xz") == "ndjson" and format_of("a.xml") == "xml"
    with pytest.raises(ConfigurationError, match="pass --format"):
        format_of("data.bin")

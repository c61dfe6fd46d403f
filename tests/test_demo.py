"""The demo runs end to end, on a real server and on the fakeredis fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from redisbatch import _demo
from redisbatch._cli import main


def test_demo_on_a_server(real_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With REDIS_URL set, the demo prepares and runs worker processes on that server."""
    monkeypatch.setenv("REDIS_URL", real_url)
    lines: list[str] = []
    assert _demo.run_demo(3000, 2, lines.append, csv_path=tmp_path / "users.csv") == 0
    assert lines[0].startswith("redisbatch demo on REDIS_URL")
    summary = next(line for line in lines if line.startswith("COMPLETED"))
    assert "failed" in summary and "records/s" in summary
    assert sum("<- finalized the job" in line for line in lines) == 1


def test_demo_falls_back_to_fakeredis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without REDIS_URL or a server binary, the demo runs in-process on fakeredis."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(_demo, "find_server_binary", lambda: None)
    lines: list[str] = []
    assert _demo.run_demo(2000, 2, lines.append, csv_path=tmp_path / "users.csv") == 0
    assert "fakeredis" in lines[0]
    assert any(line.startswith("COMPLETED") for line in lines)


def test_cli_rejects_bad_arguments(capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--records", "0"])
    assert exit_info.value.code == 2
    assert "at least 1" in capsys.readouterr().err

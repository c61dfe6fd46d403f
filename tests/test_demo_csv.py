"""The demo's CSV outlives the demo, and the rows it names can be found in it."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from redisbatch import _demo


@pytest.fixture
def on_fakeredis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(_demo, "find_server_binary", lambda: None)


@pytest.mark.usefixtures("on_fakeredis")
def test_the_generated_csv_is_kept_where_the_demo_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo prints the full path of its CSV, and the file is still there afterwards."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the system temp folder, here
    lines: list[str] = []
    assert _demo.run_demo(records=300, workers=1, say=lines.append) == 0
    generated = next(line for line in lines if line.startswith("generated"))
    found = re.search(r" in (\S+users\.csv) \(kept\)", generated)
    assert found, generated
    path = Path(found.group(1))
    assert path.is_absolute() and path.is_relative_to(tmp_path)
    assert len(path.read_text().splitlines()) == 301


@pytest.mark.usefixtures("on_fakeredis")
def test_failed_records_are_named_by_their_line(tmp_path: Path) -> None:
    """csv_path chooses the file; each failed record shown names its line in it."""
    path = tmp_path / "mine.csv"
    lines: list[str] = []
    assert _demo.run_demo(records=2000, workers=2, say=lines.append, csv_path=path) == 0
    assert any(str(path) in line for line in lines)
    rows = path.read_text().splitlines()
    failed = [
        re.search(r"failed: record (\d+) \(line (\d+) of mine\.csv\)", line) for line in lines
    ]
    shown = [(int(m.group(1)), int(m.group(2))) for m in failed if m]
    assert len(shown) == 3
    for index, line in shown:
        email, _, age, country, _ = rows[line - 1].split(",")
        assert email.startswith(f"user{index}")
        assert "@" not in email or age == "unknown" or country == "XX"

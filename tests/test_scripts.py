"""The Lua scripts' contracts: names, headers, keys and reply codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from redisbatch._scripts import Reply, lua_dir, scripts

LUA = lua_dir()
SCRIPT_FILES = sorted(p for p in LUA.glob("*.lua"))


def test_scripts_are_found_in_the_checkout() -> None:
    """The loader finds every script file and inlines its includes."""
    loaded = scripts()
    assert {s.name for s in loaded.values()} == {p.name.split("-")[0] for p in SCRIPT_FILES}
    for script in loaded.values():
        assert "@include" not in script.source, script.name


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.name)
def test_file_name_matches_declared_and_used_keys(path: Path) -> None:
    """The key count in the file name equals the header's KEYS and the highest KEYS[i] used."""
    numkeys = int(path.stem.rsplit("-", 1)[1])
    source = path.read_text()
    header = source.split("]]", 1)[0]
    assert header.startswith("--[["), "every script starts with a --[[ ]] header"
    assert "Input:" in header and "Output:" in header
    declared = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", header)}
    assert declared == set(range(1, numkeys + 1)), declared
    body = scripts()[path.stem.rsplit("-", 1)[0]].source.split("]]", 1)[1]
    used = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", body)}
    assert max(used, default=numkeys) <= numkeys
    assert "local rcall = redis.call" in body


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.name)
def test_every_reply_code_is_known_to_python(path: Path) -> None:
    """Every string code a script returns is a member of the Reply enum."""
    source = scripts()[path.stem.rsplit("-", 1)[0]].source
    codes = set(re.findall(r'\{"([A-Z][A-Z_]+)"', source))
    assert codes <= {r.value for r in Reply}, codes - {r.value for r in Reply}


def test_includes_define_one_function_named_as_the_file() -> None:
    """Each include file holds one local function named after the file."""
    for path in sorted((LUA / "includes").glob("*.lua")):
        names = re.findall(r"^local function (\w+)", path.read_text(), re.MULTILINE)
        assert names == [path.stem], (path.name, names)


def test_no_key_is_built_inside_lua() -> None:
    """Scripts touch keys only through KEYS (never concatenated names)."""
    for script in scripts().values():
        assert not re.search(r'rcall\("\w+", "\w*:', script.source), script.name

"""The Lua scripts: found on disk, includes inlined once, hashed once.

Scripts live in the top-level ``lua/`` folder of a checkout and in
``redisbatch/lua`` of an installed wheel. A script ``lua/<name>-<numkeys>.lua``
pulls shared functions from ``lua/includes/`` with a line
``--- @include "includes/<function>"``; each include is inlined once, after
its own includes.

Scripts reply with a table whose first element is a :class:`Reply` code (or,
for the few scripts documented so, a plain integer).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from redis.exceptions import NoScriptError

__all__ = ["PipelineReplies", "Reply", "Script", "ScriptCall", "lua_dir", "scripts"]

_INCLUDE = re.compile(r'^--- @include "([\w/]+)"\s*$', re.MULTILINE)
_SCRIPT_NAME = re.compile(r"^(?P<name>[a-z][A-Za-z]*)-(?P<numkeys>\d+)\.lua$")


class Reply(StrEnum):
    """Every code a script can reply with; the only place they are named."""

    OK = "OK"
    JOB_EXISTS = "JOB_EXISTS"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    JOB_NOT_PROCESSING = "JOB_NOT_PROCESSING"
    NO_PENDING_BATCHES = "NO_PENDING_BATCHES"
    STALE = "STALE"


@dataclass(frozen=True, slots=True)
class Script:
    """One loaded script: its inlined source and SHA1."""

    name: str
    numkeys: int
    source: str
    sha: str


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """A request to run a script, yielded by the store flows to a driver.

    ``before`` is a plain command sent just ahead of the script, in the same
    pipeline on the same connection (so it runs first): a large value the
    script only checks for is written this way instead of passing through Lua,
    whose strings cost server time for every byte. It must be safe to repeat,
    as the script is; its reply is dropped, an error reply raised."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    before: tuple[Any, ...] = ()

    def commands(self) -> list[tuple[Any, ...]]:
        """The commands that send this call: ``before`` (if any), then EVALSHA."""
        evalsha = ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)
        return [self.before, evalsha] if self.before else [evalsha]


def lua_dir() -> Path:
    """The folder holding the scripts, in a wheel or in a checkout."""
    packaged = Path(__file__).with_name("lua")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "lua"


def _inline(path: Path, root: Path, seen: set[str]) -> str:
    text = path.read_text(encoding="utf-8")

    def expand(match: re.Match[str]) -> str:
        include = match.group(1)
        if include in seen:
            return ""
        seen.add(include)
        return _inline(root / f"{include}.lua", root, seen)

    return _INCLUDE.sub(expand, text)


@cache
def scripts() -> dict[str, Script]:
    """Every script by name (``claimBatch``, ``commitBatch``, ...), loaded once."""
    root = lua_dir()
    loaded: dict[str, Script] = {}
    for path in sorted(root.glob("*.lua")):
        match = _SCRIPT_NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"script file name must be <verbNoun>-<numkeys>.lua: {path}")
        source = _inline(path, root, set())
        loaded[match["name"]] = Script(
            name=match["name"],
            numkeys=int(match["numkeys"]),
            source=source,
            sha=hashlib.sha1(source.encode("utf-8")).hexdigest(),
        )
    if not loaded:
        raise RuntimeError(f"no Lua scripts found in {root}")
    return loaded


class PipelineReplies:
    """The replies of script calls sent in one pipeline, for either driver.

    A call that met NOSCRIPT (the server restarted and lost its script cache)
    ran nothing: ``take`` returns the scripts to load, and those calls are
    sent again. Any other error is raised.
    """

    def __init__(self, calls: tuple[ScriptCall, ...]) -> None:
        self.calls = calls
        self.replies: list[Any] = [None] * len(calls)
        self.todo = list(range(len(calls)))
        self._rounds = 0

    def pending_calls(self) -> list[tuple[Any, ...]]:
        """Command argument tuples of the calls still to send (each call's
        ``before`` command, then its EVALSHA)."""
        return [command for i in self.todo for command in self.calls[i].commands()]

    def take(self, results: list[Any]) -> set[Script]:
        """Records the results of ``pending_calls``; returns the scripts to load."""
        missing: list[int] = []
        replies = iter(results)
        for i in self.todo:
            if self.calls[i].before:
                before = next(replies)
                if isinstance(before, Exception):
                    raise before
            result = next(replies)
            if isinstance(result, NoScriptError):
                missing.append(i)
            elif isinstance(result, Exception):
                raise result
            else:
                self.replies[i] = result
        self._rounds += 1
        if missing and self._rounds > 2:
            raise NoScriptError("scripts could not be loaded")
        self.todo = missing
        return {self.calls[i].script for i in missing}

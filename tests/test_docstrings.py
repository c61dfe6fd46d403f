"""help() is the manual: every public name documents itself."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import redisbatch
import redisbatch.metrics
import redisbatch.testing

MODULES = (redisbatch, redisbatch.testing, redisbatch.metrics)

# Words that point the reader at a document they do not have.
ELSEWHERE = re.compile(r"contract|\bsection\s+\d|§", re.IGNORECASE)


def _own_doc(obj: Any) -> str:
    """The docstring written for ``obj`` itself (not one a dataclass generates)."""
    documented = isinstance(obj, type | ModuleType | property) or callable(obj)
    doc = (obj.__doc__ if documented else None) or ""
    if inspect.isclass(obj) and doc.startswith(obj.__name__ + "("):
        return ""  # the signature a dataclass writes when there is no docstring
    return doc.strip()


def _public() -> Iterator[tuple[str, Any]]:
    for module in MODULES:
        yield module.__name__, module
        for name in module.__all__:
            yield f"{module.__name__}.{name}", getattr(module, name)


def _is_data(obj: Any) -> bool:
    """A constant, alias or sentinel: documented by its module or by its type."""
    return not (inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, ModuleType))


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    """The public attributes the library defines on ``cls`` (inherited ones included)."""
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        for klass in cls.__mro__:
            if name in vars(klass):
                if klass.__module__.startswith("redisbatch"):
                    yield name, vars(klass)[name]
                break


def _documented() -> Iterator[tuple[str, Any]]:
    """Every module, function, class and class member users reach."""
    for qualname, obj in _public():
        if _is_data(obj):
            continue
        yield qualname, obj
        if inspect.isclass(obj):
            for name, member in _members(obj):
                wrapped = isinstance(member, staticmethod | classmethod)
                inner = member.__func__ if wrapped else member
                if inspect.isroutine(inner) or isinstance(inner, property):
                    yield f"{qualname}.{name}", inner


DOCUMENTED = dict(_documented())


@pytest.mark.parametrize("qualname", sorted(DOCUMENTED))
def test_public_name_has_a_docstring_that_stands_alone(qualname: str) -> None:
    """Each public module, function, class and method has a docstring citing no other document."""
    doc = _own_doc(DOCUMENTED[qualname])
    assert doc, f"{qualname} has no docstring"
    assert not ELSEWHERE.search(doc), f"{qualname} refers to a document users do not have"


CLASSES = {q: o for q, o in _public() if inspect.isclass(o)}


@pytest.mark.parametrize("qualname", sorted(CLASSES))
def test_class_docstring_explains_every_constructor_argument(qualname: str) -> None:
    """A class docstring names every argument of its constructor, and every field it carries."""
    cls = CLASSES[qualname]
    doc = _own_doc(cls)
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - a class without a signature
        params = []  # type: ignore[assignment]
    names = {
        p.name
        for p in params
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and not p.name.startswith("_")
    }
    names |= set(getattr(cls, "__struct_fields__", ()))
    missing = sorted(n for n in names if not re.search(rf"\b{re.escape(n)}\b", doc))
    assert not missing, f"{qualname}'s docstring does not explain {missing}"


def test_module_docstrings_name_their_constants() -> None:
    """Constants and aliases, which help() cannot show alone, are described in their module."""
    for module in MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if _is_data(obj) and type(obj).__module__ in ("builtins", "typing", "collections.abc"):
                assert re.search(rf"\b{name}\b", module.__doc__ or ""), (module.__name__, name)


def test_distributed_import_documents_its_options_and_control() -> None:
    """DistributedImport's help covers the retry backoff, the heartbeat and the control calls."""
    doc = _own_doc(redisbatch.DistributedImport)
    assert "retry_delay * 2**(k-1)" in doc
    assert "60" in doc and "third" in doc
    for method in ("pause", "resume", "abort", "delete"):
        for cls in (redisbatch.DistributedImport, redisbatch.AsyncDistributedImport):
            text = _own_doc(getattr(cls, method))
            assert "True" in text and "False" in text, f"{cls.__name__}.{method} return value"


def test_the_checks_reach_every_public_method() -> None:
    """The walk reaches inherited facade methods and parser and source methods."""
    for name in (
        "redisbatch.DistributedImport.on",
        "redisbatch.AsyncDistributedImport.pause",
        "redisbatch.CsvParser.records",
        "redisbatch.FileSource.open",
        "redisbatch.Schema.from_struct",
    ):
        assert name in DOCUMENTED, name

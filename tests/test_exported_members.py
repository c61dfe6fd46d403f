"""The package surface."""

from __future__ import annotations

from types import ModuleType

import redisbatch


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, and every public name of the package is in it."""
    exported = redisbatch.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    public = {  # submodules (redisbatch.testing, loaded by pytest) are not names to export
        name
        for name, value in vars(redisbatch).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert set(exported) == public
    for name in exported:
        assert getattr(redisbatch, name) is not None

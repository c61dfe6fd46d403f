"""The package says which version it is."""

from __future__ import annotations

from importlib.metadata import version

import redisbatch


def test_version_is_the_installed_distribution_version() -> None:
    """redisbatch.__version__ is the version the installed distribution declares."""
    assert redisbatch.__version__ == version("redisbatch")
    assert redisbatch.__version__.count(".") >= 2

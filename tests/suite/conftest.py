"""Set-up for the suite tests: their helper module importable (tests are imported with importlib)."""
from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from suite_helpers import Services  # noqa: E402


@pytest.fixture
def services(peer):
    return Services(peer)

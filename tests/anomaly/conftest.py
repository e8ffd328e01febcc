"""Set-up for the anomaly tests: their helpers importable (a plain module: tests import with importlib)."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from anomaly_helpers import simulated  # noqa: E402


@pytest.fixture(scope="session")
def sim_streams():
    return simulated()

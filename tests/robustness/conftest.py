"""Set-up for the fuzz suite: its helper modules importable (the tests are imported with importlib)."""
from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

"""Where the repository's data lives, found relative to this checkout (never an absolute path).

``shared_data_dir()`` is the real sensor samples folder that sits beside the repository (``../shared/data``
from the repository root); ``$FOVEA_SHARED_DATA`` overrides it. ``repo_root()`` is the checkout itself
(``$FOVEA_ROOT`` when set by env.sh).
"""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    if os.environ.get("FOVEA_ROOT"):
        return Path(os.environ["FOVEA_ROOT"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "ros2_ws" / "src").is_dir() and (parent / "config").is_dir():
            return parent
    raise FileNotFoundError("cannot find the Fovea checkout above " + __file__ + "; set FOVEA_ROOT")


def shared_data_dir() -> Path:
    if os.environ.get("FOVEA_SHARED_DATA"):
        return Path(os.environ["FOVEA_SHARED_DATA"])
    return repo_root().parent / "shared" / "data"


def models_dir() -> Path:
    return repo_root() / "models"

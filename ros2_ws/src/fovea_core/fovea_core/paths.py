"""Where the repository's data lives, found relative to this checkout or install (never an absolute path).

- ``repo_root()``: the checkout (``$FOVEA_ROOT`` when set by env.sh, else found above this file).
- ``shared_data_dir()``: the real sensor samples beside the checkout (``../shared/data``;
  ``$FOVEA_SHARED_DATA`` overrides).
- ``resolve_data_path(p)``: a relative path such as ``models/tpv/tpv_cpu.onnx`` taken from the checkout, or,
  in an installed workspace on a robot (no checkout above the installed code), from the ``fovea_bringup``
  share directory, which installs ``models/``, ``config/``, ``launch/`` and ``rviz/``.
"""
from __future__ import annotations

import os
from pathlib import Path


def find_repo_root() -> Path | None:
    if os.environ.get("FOVEA_ROOT"):
        return Path(os.environ["FOVEA_ROOT"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "ros2_ws" / "src").is_dir() and (parent / "config").is_dir():
            return parent
    return None


def repo_root() -> Path:
    root = find_repo_root()
    if root is None:
        raise FileNotFoundError("cannot find the Fovea checkout above " + __file__ + "; set FOVEA_ROOT")
    return root


def installed_share_dir() -> Path | None:
    """fovea_bringup's share directory in a built workspace, if there is one."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory("fovea_bringup"))
    except PackageNotFoundError:
        return None


def resolve_data_path(path: str | Path) -> Path:
    """An absolute path as it is; a relative one under the checkout, else under the installed share dir."""
    path = Path(path)
    if path.is_absolute():
        return path
    for base in (find_repo_root(), installed_share_dir()):
        if base is not None and (base / path).exists():
            return base / path
    base = find_repo_root() or installed_share_dir()
    return base / path if base is not None else path


def shared_data_dir() -> Path:
    if os.environ.get("FOVEA_SHARED_DATA"):
        return Path(os.environ["FOVEA_SHARED_DATA"])
    return repo_root().parent / "shared" / "data"


def models_dir() -> Path:
    return resolve_data_path("models")

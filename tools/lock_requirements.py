#!/usr/bin/env python3
"""Rewrite requirements.lock from the current .venv: every pip-installed distribution, pinned.

Only ``.dist-info`` distributions count: the ROS 2 wheels also unpack ``.egg-info`` folders of the ROS
packages they contain (``action_msgs``, ``rclpy`` …), which no index serves. Editable Fovea packages are left
out (colcon builds them), and torch is pinned without its local ``+cpu`` tag so ``pip install torch==2.13.0``
takes the machine's CPU wheel. The comment header of the file is kept.
"""
import importlib.metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


def pinned() -> list[str]:
    pins = set()
    for dist in importlib.metadata.distributions():
        if not str(getattr(dist, "_path", "")).endswith(".dist-info"):
            continue
        name = dist.metadata["Name"]
        if name.lower().startswith("fovea"):
            continue
        version = dist.version.split("+")[0] if name.lower() == "torch" else dist.version
        pins.add(f"{name}=={version}")
    return sorted(pins, key=str.lower)


def main() -> None:
    header = [line for line in LOCK.read_text().splitlines() if line.startswith("#")] if LOCK.exists() else []
    LOCK.write_text("\n".join(header + pinned()) + "\n")
    print(f"wrote {LOCK}")


if __name__ == "__main__":
    main()

"""Make ``fovea_ros`` importable from the source tree when it is not installed yet (before colcon/pip)."""
import importlib.util
import pathlib
import sys

if importlib.util.find_spec("fovea_ros") is None:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "fovea_ros"))

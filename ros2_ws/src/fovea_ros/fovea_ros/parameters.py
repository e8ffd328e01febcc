"""Node parameters: declared with descriptors, defaults read from ``config/<node>.yaml``, validated at start.

Precedence, lowest first: the ``Param`` default in code, the node's YAML in ``config/`` (the same file the
launch files pass), then anything given at launch (``--ros-args -p`` / ``--params-file``). A value that is
out of range, of the wrong type, not among the allowed choices, or a key that no parameter declares, fails
the node's configure transition with a message that names the parameter. Parameters marked ``dynamic``
change at run time (``ros2 param set``, validated the same way); the others only while unconfigured.
"""
from __future__ import annotations

import array
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml


class ParameterError(ValueError):
    """A parameter value (or a config key) is invalid; the message names the parameter."""


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    choices: Sequence[Any] = ()
    min_value: float | None = None
    max_value: float | None = None
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)  # returns why it is bad
    dynamic: bool = False  # may change while the node is configured (ros2 param set); else only while unconfigured

    def validate(self, value: Any) -> None:
        """Raise ParameterError naming this parameter when ``value`` is not acceptable."""
        expected = type(self.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise ParameterError(f"parameter '{self.name}': expected {expected.__name__}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ParameterError(f"parameter '{self.name}': {value!r} is not one of {list(self.choices)}")
        if self.min_value is not None and value < self.min_value:
            raise ParameterError(f"parameter '{self.name}': {value!r} is below the minimum {self.min_value}")
        if self.max_value is not None and value > self.max_value:
            raise ParameterError(f"parameter '{self.name}': {value!r} is above the maximum {self.max_value}")
        problem = self.check(value) if self.check else None
        if problem:
            raise ParameterError(f"parameter '{self.name}': {problem}")


def config_dir() -> Path | None:
    """Where the node YAMLs are: $FOVEA_CONFIG_DIR, $FOVEA_ROOT/config, or fovea_bringup's share dir."""
    if os.environ.get("FOVEA_CONFIG_DIR"):
        return Path(os.environ["FOVEA_CONFIG_DIR"])
    if os.environ.get("FOVEA_ROOT"):
        return Path(os.environ["FOVEA_ROOT"]) / "config"
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory("fovea_bringup")) / "config"
    except Exception:  # not installed as a ROS package: no default config
        return None


def load_node_config(path: str | Path, *node_names: str) -> dict[str, Any]:
    """The ``ros__parameters`` of a ROS 2 parameter file for ``/**`` and then each of ``node_names``
    (later sections win): a node renamed at launch still finds the section of its default name."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    values: dict[str, Any] = {}
    keys = ["/**"] + [k for name in node_names for k in (name, f"/{name}")]
    for key in keys:
        section = data.get(key) or {}
        values.update(section.get("ros__parameters") or {})
    return values


def flatten_parameters(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """ROS parameter files may nest names (``a: {b: 1}`` is parameter ``a.b``)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_parameters(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _descriptor(p: Param):
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    when = "changes at run time" if p.dynamic else "read at configure: set it while the node is unconfigured"
    # dynamic typing: a value of the wrong type from a file or launch reaches our validation (and its message
    # naming the parameter) at configure instead of an rclpy exception in the constructor
    descriptor = ParameterDescriptor(description=f"{p.description} ({when})", dynamic_typing=True)
    if p.choices:
        descriptor.additional_constraints = f"one of {list(p.choices)}"
    if isinstance(p.default, float) and (p.min_value is not None or p.max_value is not None):
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(p.min_value if p.min_value is not None else -1e300),
            to_value=float(p.max_value if p.max_value is not None else 1e300), step=0.0)]
    elif isinstance(p.default, int) and not isinstance(p.default, bool) and (
            p.min_value is not None or p.max_value is not None):
        descriptor.integer_range = [IntegerRange(
            from_value=int(p.min_value if p.min_value is not None else -(2 ** 62)),
            to_value=int(p.max_value if p.max_value is not None else 2 ** 62), step=1)]
    return descriptor


def declare_parameters(node, params: Sequence[Param], config_values: dict[str, Any], config_source: str) -> list[str]:
    """Declare every parameter on an rclpy node (config-file values as defaults, launch overrides on top).

    Nothing is validated here: a managed node validates at configure, so a bad value leaves it
    unconfigured with the reason instead of failing its constructor. Returns the problems found while
    declaring (unknown keys in the file or at launch), for configure to report.
    """
    problems: list[str] = []
    known = {p.name for p in params} | {"use_sim_time"}
    config_values = flatten_parameters(config_values)
    unknown = sorted(set(config_values) - known)
    if unknown:
        problems.append(f"parameter '{unknown[0]}' in {config_source} is not a parameter of {node.get_name()} "
                        f"(known: {', '.join(sorted(known - {'use_sim_time'}))})")
    overrides = getattr(node, "_parameter_overrides", {}) or {}
    unknown = sorted(set(overrides) - known)
    if unknown:
        problems.append(f"parameter '{unknown[0]}' given at launch is not a parameter of {node.get_name()}")
    for p in params:
        default = config_values.get(p.name, p.default)
        try:
            node.declare_parameter(p.name, default, _descriptor(p))
        except Exception as exc:  # rclpy refuses a value outside the descriptor's range: report, keep the default
            given = overrides[p.name].value if p.name in overrides else default
            try:
                p.validate(normalized(p, given))
                problems.append(f"parameter '{p.name}': {exc}")
            except ParameterError as own:  # our message says it in fewer words
                problems.append(str(own))
            node.declare_parameter(p.name, p.default, _descriptor(p), ignore_override=True)
    return problems


def parameter_value(node, p: Param) -> Any:
    """The current value of ``p`` on ``node`` as Python data (numeric arrays as lists, ints as floats where
    the parameter is a float)."""
    return normalized(p, node.get_parameter(p.name).value)


def normalized(p: Param, value: Any) -> Any:
    if isinstance(value, array.array):  # rclpy hands numeric arrays back as array.array
        value = list(value)
    if isinstance(p.default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


def validated_values(node, params: Sequence[Param]) -> SimpleNamespace:
    """Every parameter's current value, validated (ParameterError names the first bad one)."""
    values = {}
    for p in params:
        value = parameter_value(node, p)
        p.validate(value)
        values[p.name] = value
    return SimpleNamespace(**values)

"""The health rules: which sensors, nodes and outputs exist, what each output depends on, the thresholds.

A rules file (YAML; ``config/health_rules.yaml`` is the suite's)::

    stale_after_s: 3.0        # default for sensors and nodes: silent this long = unreliable
    max_drop_fraction: 0.2    # a node dropping more of its work than this over drop_window_s is degraded
    drop_window_s: 10.0
    sensors:
      - name: event_camera
        topic: /event_camera/events   # shown in the health message
        input_key: event_camera/events  # the nodes' /diagnostics key inputs/<input_key> (default: topic)
        min_rate_hz: 50.0              # optional: slower is degraded
        stale_after_s: 2.0             # optional override
        anomaly: event_anomaly         # optional: an anomaly source whose verdicts judge this sensor
    anomaly_sources:
      - name: event_anomaly
        topic: /event_anomaly/score
        type: fovea_msgs/msg/AnomalyScore
        stale_after_s: 3.0
        levels: {starting: unknown, warn: unreliable, error: unreliable}   # verdict state -> level (defaults)
    outputs:
      - name: event_memory
        node: event_memory             # the node's name (its /diagnostics are fovea/<node>)
        topic: /event_memory/segmentation
        inputs: [event_camera]         # sensors or other outputs; {name: x, cap: degraded} caps the effect

Every name is checked: an input that names nothing, an output depending on itself (directly or not), a
sensor naming an unknown anomaly source, an unknown key — each fails with a message naming it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fovea_core.health.levels import Level


class RulesError(ValueError):
    """The rules file is invalid; the message names the entry and key."""


@dataclass(frozen=True)
class SensorRule:
    name: str
    topic: str
    input_key: str
    min_rate_hz: float | None
    stale_after_s: float
    anomaly: str | None


DEFAULT_VERDICT_LEVELS = {"starting": Level.UNKNOWN, "ok": Level.OK, "warn": Level.UNRELIABLE,
                          "error": Level.UNRELIABLE}


@dataclass(frozen=True)
class AnomalySource:
    name: str
    topic: str
    type: str
    stale_after_s: float
    levels: dict = field(default_factory=lambda: dict(DEFAULT_VERDICT_LEVELS))  # verdict state -> Level


@dataclass(frozen=True)
class Dependency:
    name: str
    cap: Level = Level.UNRELIABLE   # the worst this input can make the output


@dataclass(frozen=True)
class OutputRule:
    name: str
    node: str
    topic: str
    inputs: tuple[Dependency, ...]


@dataclass
class HealthRules:
    sensors: dict[str, SensorRule] = field(default_factory=dict)
    outputs: dict[str, OutputRule] = field(default_factory=dict)   # in dependency order
    anomaly_sources: dict[str, AnomalySource] = field(default_factory=dict)
    stale_after_s: float = 3.0
    max_drop_fraction: float = 0.2
    drop_window_s: float = 10.0

    @property
    def nodes(self) -> list[str]:
        """Every node an output names, in first-named order."""
        return list(dict.fromkeys(o.node for o in self.outputs.values()))


def _keys(entry: Any, where: str, required: set[str], optional: set[str]) -> dict:
    if not isinstance(entry, dict):
        raise RulesError(f"{where}: expected a mapping, got {entry!r}")
    missing, unknown = required - set(entry), set(entry) - required - optional
    if missing:
        raise RulesError(f"{where}: missing {sorted(missing)}")
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {sorted(unknown)} (known: {sorted(required | optional)})")
    return entry


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise RulesError(f"{where}: expected a positive number, got {value!r}")
    return float(value)


def _unique(names: list[str], where: str) -> None:
    seen = set()
    for name in names:
        if not isinstance(name, str) or not name:
            raise RulesError(f"{where}: every entry needs a non-empty name, got {name!r}")
        if name in seen:
            raise RulesError(f"{where}: {name!r} is named twice")
        seen.add(name)


def parse_rules(data: dict) -> HealthRules:
    top = _keys(data or {}, "rules", {"outputs"}, {"sensors", "anomaly_sources", "stale_after_s",
                                                   "max_drop_fraction", "drop_window_s"})
    rules = HealthRules(stale_after_s=_positive(top.get("stale_after_s", 3.0), "stale_after_s"),
                        max_drop_fraction=_positive(top.get("max_drop_fraction", 0.2), "max_drop_fraction"),
                        drop_window_s=_positive(top.get("drop_window_s", 10.0), "drop_window_s"))
    for i, e in enumerate(top.get("anomaly_sources") or []):
        e = _keys(e, f"anomaly_sources[{i}]", {"name", "topic", "type"}, {"stale_after_s", "levels"})
        where = f"anomaly source {e['name']}"
        levels = dict(DEFAULT_VERDICT_LEVELS)
        for state, level in (e.get("levels") or {}).items():
            if state not in levels:
                raise RulesError(f"{where}: levels: {state!r} is not a verdict state ({', '.join(levels)})")
            try:
                levels[state] = Level.parse(level)
            except ValueError as exc:
                raise RulesError(f"{where}: levels: {state}: {exc}") from None
        rules.anomaly_sources[e["name"]] = AnomalySource(
            e["name"], e["topic"], e["type"],
            _positive(e.get("stale_after_s", rules.stale_after_s), f"{where}: stale_after_s"), levels)
    _unique([e.get("name") for e in top.get("anomaly_sources") or []], "anomaly_sources")
    sensors = top.get("sensors") or []
    _unique([e.get("name") if isinstance(e, dict) else None for e in sensors], "sensors")
    for i, e in enumerate(sensors):
        e = _keys(e, f"sensors[{i}]", {"name", "topic"}, {"input_key", "min_rate_hz", "stale_after_s", "anomaly"})
        where = f"sensor {e['name']}"
        if e.get("anomaly") is not None and e["anomaly"] not in rules.anomaly_sources:
            raise RulesError(f"{where}: anomaly source {e['anomaly']!r} is not in anomaly_sources")
        rules.sensors[e["name"]] = SensorRule(
            e["name"], e["topic"], str(e.get("input_key") or e["topic"]).lstrip("/"),
            _positive(e["min_rate_hz"], f"{where}: min_rate_hz") if e.get("min_rate_hz") is not None else None,
            _positive(e.get("stale_after_s", rules.stale_after_s), f"{where}: stale_after_s"), e.get("anomaly"))
    outputs = top["outputs"] or []
    if not isinstance(outputs, list) or not outputs:
        raise RulesError("outputs: name at least one output")
    _unique([e.get("name") if isinstance(e, dict) else None for e in outputs], "outputs")
    if clash := set(rules.sensors) & {e["name"] for e in outputs}:
        raise RulesError(f"{sorted(clash)[0]!r} is both a sensor and an output")
    parsed: dict[str, OutputRule] = {}
    for i, e in enumerate(outputs):
        e = _keys(e, f"outputs[{i}]", {"name", "node"}, {"topic", "inputs"})
        deps = []
        for j, dep in enumerate(e.get("inputs") or []):
            if isinstance(dep, str):
                dep = {"name": dep}
            dep = _keys(dep, f"output {e['name']}: inputs[{j}]", {"name"}, {"cap"})
            try:
                cap = Level.parse(dep.get("cap", "unreliable"))
            except ValueError as exc:
                raise RulesError(f"output {e['name']}: input {dep['name']}: cap {exc}") from None
            deps.append(Dependency(dep["name"], cap))
        parsed[e["name"]] = OutputRule(e["name"], str(e["node"]), str(e.get("topic", "")), tuple(deps))
    for out in parsed.values():
        for dep in out.inputs:
            if dep.name not in rules.sensors and dep.name not in parsed:
                raise RulesError(f"output {out.name}: input {dep.name!r} is neither a sensor nor an output")
    rules.outputs = _dependency_order(parsed)
    return rules


def _dependency_order(outputs: dict[str, OutputRule]) -> dict[str, OutputRule]:
    ordered: dict[str, OutputRule] = {}
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name):] + [name])
            raise RulesError(f"output {name}: depends on itself ({cycle})")
        visiting.append(name)
        for dep in outputs[name].inputs:
            if dep.name in outputs:
                visit(dep.name)
        visiting.pop()
        ordered[name] = outputs[name]

    for name in outputs:
        visit(name)
    return ordered


def load_rules(path: str | Path) -> HealthRules:
    """Parse a rules file; RulesError (naming the file and entry) when it is invalid."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"cannot read the health rules {path}: {exc}") from None
    try:
        return parse_rules(data)
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from None

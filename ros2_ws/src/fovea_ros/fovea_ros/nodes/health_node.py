"""Health node: one judgement per sensor, node and output of the suite, from what the nodes report.

Subscribes ``/diagnostics`` (every Fovea node's status: lifecycle state, input counts and rates, drops,
processing p99 against its latency budget) and each anomaly source of the rules (the anomaly node's
fovea_msgs/msg/StreamAnomaly verdicts); the rules (``rules_file``, e.g. ``config/health_rules.yaml``: sensors, outputs and what each
depends on, thresholds) are applied by ``fovea_core.health``. Publishes ``health_topic``
(fovea_msgs/msg/HealthArray, reliable + transient local so a late subscriber gets the latest) at once when a
level changes and every ``publish_period`` seconds; its own ``/diagnostics`` name the worst entries.
"""
from __future__ import annotations

import time
from pathlib import Path

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from fovea_core.health import HealthMonitor, Level, NodeReport, RulesError, Verdict, load_rules
from fovea_msgs.msg import Health, HealthArray
from fovea_ros.bag.typestore import import_message_class
from fovea_ros.node_base import FoveaNode, run_node
from fovea_ros.parameters import Param, ParameterError, config_dir

def health_qos() -> QoSProfile:
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _level(value) -> int:
    return int.from_bytes(value, "little") if isinstance(value, bytes) else int(value)


def verdict_from_message(source: str, msg) -> Verdict:
    """fovea_msgs/msg/StreamAnomaly (the anomaly node's score) as a Verdict: its state constant's name
    (STARTING, OK, WARN, ERROR) is the verdict's state; NaN score / offset mean "does not tell"."""
    names = {getattr(type(msg), c): c.lower() for c in ("STARTING", "OK", "WARN", "ERROR") if hasattr(type(msg), c)}
    state = names.get(msg.state)
    if state is None:
        raise ValueError(f"unknown anomaly state {msg.state}")

    def number(value):
        return float(value) if value == value else None  # NaN: not known

    return Verdict(source, state, score=number(msg.score), threshold=number(msg.threshold),
                   fault=str(msg.suspected_fault), offset_ms=number(msg.offset_ms))


class HealthNode(FoveaNode):
    NAME = "health"
    PARAMETERS = (
        Param("rules_file", "health_rules.yaml", "the health rules (a path, or a file name in config/)"),
        Param("health_topic", "/fovea/health", "fovea_msgs/msg/HealthArray output"),
        Param("publish_period", 1.0, "seconds between HealthArray messages (also sent at once on a change)",
              min_value=0.05, max_value=60.0, dynamic=True),
    )

    def configure(self) -> None:
        path = self._rules_path(self.params.rules_file)
        try:
            self.rules = load_rules(path)
        except RulesError as exc:
            raise ParameterError(f"parameter 'rules_file': {exc}") from None
        self.anomaly_types = {}
        for source in self.rules.anomaly_sources.values():
            msg_class = import_message_class(source.type)
            if msg_class is None:
                raise ParameterError(f"parameter 'rules_file': anomaly source {source.name}: message type "
                                     f"{source.type} is not built here")
            self.anomaly_types[source.name] = msg_class
        self.monitor = HealthMonitor(self.rules)
        self._since: dict[tuple[str, str], tuple[Level, Time]] = {}
        self.get_logger().info(f"health rules {path}: {len(self.rules.sensors)} sensors, {len(self.rules.nodes)} "
                               f"nodes, {len(self.rules.outputs)} outputs")

    @staticmethod
    def _rules_path(name: str) -> str:
        path = Path(name)
        base = config_dir()
        if not path.is_absolute() and not path.is_file() and base is not None:
            path = base / path
        return str(path)

    def activate(self) -> None:
        self.publisher = self.create_publisher(HealthArray, self.params.health_topic, health_qos())
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 100)
        for source in self.rules.anomaly_sources.values():
            self.create_subscription(self.anomaly_types[source.name], source.topic,
                                     lambda msg, name=source.name: self.on_verdict(name, msg), 50)
        self.create_timer(self.params.publish_period, lambda: self.publish_health(force=True))

    def cleanup(self) -> None:
        self.monitor = None

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.count_input("/diagnostics")
        now = time.monotonic()
        for status in msg.status:
            if status.name.startswith("fovea/") and status.name != f"fovea/{self.get_name()}":
                self.monitor.on_diagnostics(NodeReport(status.name, _level(status.level), status.message,
                                                       {kv.key: kv.value for kv in status.values}), now)
        self.publish_health(force=False)

    def on_verdict(self, source: str, msg) -> None:
        self.count_input(self.rules.anomaly_sources[source].topic)
        try:
            verdict = verdict_from_message(source, msg)
        except ValueError as exc:
            self.drop("malformed verdict", f"{source}: {exc}")
            return
        self.monitor.on_verdict(verdict, time.monotonic())
        self.publish_health(force=False)

    def publish_health(self, force: bool) -> None:
        with self.timed():
            entries = self.monitor.evaluate(time.monotonic())
            now = self.get_clock().now().to_msg()
            changed = False
            out = HealthArray()
            out.header.stamp = now
            for e in entries:
                key = (e.kind, e.name)
                previous = self._since.get(key)
                if previous is None or previous[0] != e.level:
                    changed = True
                    self._since[key] = (e.level, now)
                    if previous is not None:
                        self._log_change(e, previous[0])
                out.entries.append(Health(name=e.name, kind=e.kind, topic=e.topic, level=int(e.level),
                                          reasons=e.judgement.reasons, since=self._since[key][1]))
            if force or changed:
                self.publisher.publish(out)
        counts = {level: sum(1 for e in entries if e.level == level) for level in Level}
        self.set_diagnostic("entries", f"{counts[Level.OK]} ok, {counts[Level.DEGRADED]} degraded, "
                                       f"{counts[Level.UNRELIABLE]} unreliable, {counts[Level.UNKNOWN]} unknown")
        worst = [e for e in entries if e.level in (Level.UNRELIABLE, Level.DEGRADED)]
        self.set_diagnostic("flagged", "; ".join(f"{e.kind} {e.name} {e.level.name.lower()}" for e in worst) or "none")

    def _log_change(self, entry, before: Level) -> None:
        line = f"{entry.kind} {entry.name}: {before.name} -> {entry.level.name}" + (
            f" ({entry.judgement.reasons[0]})" if entry.judgement.reasons else "")
        if entry.level.severity > before.severity:
            self.get_logger().warning(line)
        else:
            self.get_logger().info(line)


NODE_CLASS = HealthNode


def main(args=None) -> int:
    return run_node(HealthNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

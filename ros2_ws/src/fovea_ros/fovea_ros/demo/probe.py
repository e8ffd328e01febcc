"""The demo's listener: which messages of a stage's inputs and outputs were seen, when, and the nodes' /diagnostics.

Only the header stamp of each message is kept. (Raw CDR subscriptions would save deserialising large messages,
but here they received nothing from other processes over the shared-memory transport, so messages are
deserialised.)
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict

from fovea_ros.bag.typestore import import_message_class


class Probe:
    """Counts messages per topic and keeps the first arrival time of each header stamp, in its own context."""

    def __init__(self, topics: dict[str, str]) -> None:
        """``topics``: topic -> message type (``pkg/msg/Name``)."""
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data

        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self.node = rclpy.create_node("fovea_demo_probe", context=self._context)
        self._lock = threading.Lock()
        self.counts: dict[str, int] = defaultdict(int)
        self.arrivals: dict[str, dict[int, float]] = defaultdict(dict)  # topic -> stamp ns -> first arrival
        self.diagnostics: dict[str, dict[str, str]] = {}
        self._subscriptions = {}
        for topic, msgtype in topics.items():
            msg_class = import_message_class(msgtype)
            if msg_class is None:
                raise ValueError(f"probe: message type {msgtype} of {topic} is not importable")
            self._subscriptions[topic] = self.node.create_subscription(
                msg_class, topic, lambda msg, t=topic: self._on_message(t, msg), qos_profile_sensor_data)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def _on_message(self, topic: str, msg) -> None:
        now = time.monotonic()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec if hasattr(msg, "header") else None
        with self._lock:
            self.counts[topic] += 1
            if stamp is not None:
                self.arrivals[topic].setdefault(stamp, now)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            level = status.level
            values = {kv.key: kv.value for kv in status.values}
            with self._lock:
                self.diagnostics[status.name] = {
                    "level": int.from_bytes(level, "little") if isinstance(level, bytes) else int(level),
                    "message": status.message, **values}

    def count(self, topic: str) -> int:
        with self._lock:
            return self.counts.get(topic, 0)

    def status(self, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self.diagnostics.get(name, {}))

    def latencies_ms(self, input_topic: str, output_topic: str) -> list[float]:
        """Output arrival - input arrival for every output whose stamp an input carried."""
        with self._lock:
            inputs, outputs = dict(self.arrivals[input_topic]), dict(self.arrivals[output_topic])
        return [(outputs[s] - inputs[s]) * 1e3 for s in outputs if s in inputs]

    def subscribers(self, topic: str) -> int:
        """Subscriptions on ``topic`` in the graph (discovered; this probe's own included)."""
        return self.node.count_subscribers(topic)

    def matched(self, topic: str) -> int:
        """Publishers this probe's subscription on ``topic`` is connected to (discovery finished both ways).
        Seeing a publisher in the graph is not enough: until it is matched, its messages pass the probe by."""
        return self._subscriptions[topic].get_publisher_count()

    def stamps(self, topic: str) -> set[int]:
        with self._lock:
            return set(self.arrivals[topic])

    def close(self) -> None:
        self._executor.shutdown()
        self._thread.join(timeout=5.0)  # destroying the node under a spinning executor aborts the process
        self.node.destroy_node()
        self._context.try_shutdown()

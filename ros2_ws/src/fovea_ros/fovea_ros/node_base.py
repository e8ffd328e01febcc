"""The base every Fovea node stands on.

A node declares ``NAME`` and ``PARAMETERS``; the base loads ``config/<NAME>.yaml``, declares and validates
the parameters (failing at start with the parameter's name), publishes ``/diagnostics`` (processing time
p50/p99, input rate per topic, drops by reason, the method's own values), drops out-of-order stamps, and
runs slow work on a worker thread behind a bounded latest-wins queue so the executor never blocks.
Outputs carry their input's header stamp, never the wall clock, so bag replay with ``use_sim_time`` works.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data

from fovea_core.telemetry import DropCounter, LatencyWindow, RateMeter
from fovea_ros.parameters import Param, ParameterError, config_dir, declare_and_validate, load_node_config
from fovea_ros.worker import LatestWinsWorker

# Parameters every node has, before its own.
COMMON_PARAMETERS: tuple[Param, ...] = (
    Param("sensor_qos", "sensor_data", "QoS of sensor subscriptions: sensor_data (best effort) or reliable",
          choices=("sensor_data", "reliable")),
    Param("diagnostics_period", 1.0, "seconds between /diagnostics messages", min_value=0.05, max_value=60.0),
    Param("queue_size", 1, "inputs waiting for the worker; when full the oldest is dropped (latest wins)",
          min_value=1, max_value=100),
    Param("time_jump_reset", 5.0, "a stamp this many seconds older than the last one is a clock reset "
          "(bag looped), not an out-of-order message", min_value=0.0),
)


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class FoveaNode(Node):
    NAME: ClassVar[str] = ""
    PARAMETERS: ClassVar[Sequence[Param]] = ()

    def __init__(self, *, config_path: str | None = None, **node_kwargs: Any) -> None:
        if not self.NAME:
            raise TypeError(f"{type(self).__name__} must set NAME")
        node_kwargs.setdefault("node_name", self.NAME)
        super().__init__(**node_kwargs)
        source, values = self._config(config_path)
        self.params = declare_and_validate(self, (*COMMON_PARAMETERS, *self.PARAMETERS), values, source)
        self.latency = LatencyWindow()
        self.drops = DropCounter()
        self._rates: dict[str, RateMeter] = {}
        self._last_stamp_ns: dict[str, int] = {}
        self._diag_values: dict[str, str] = {}
        self._last_error = ""
        self._worker: LatestWinsWorker | None = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.params.diagnostics_period, self.publish_diagnostics)

    # ---- configuration ---------------------------------------------------------------------------
    def _config(self, config_path: str | None) -> tuple[str, dict[str, Any]]:
        if config_path is None:
            folder = config_dir()
            candidate = folder / f"{self.NAME}.yaml" if folder else None
            if candidate is None or not candidate.is_file():
                return "defaults", {}
            config_path = str(candidate)
        try:
            return config_path, load_node_config(config_path, self.NAME, self.get_name())
        except OSError as exc:
            raise ParameterError(f"cannot read the config file {config_path}: {exc}") from exc

    def sensor_qos(self, depth: int | None = None) -> QoSProfile:
        """The QoS of sensor subscriptions; ``depth`` overrides the history depth for high-rate streams
        (sensor-data QoS keeps 5, which a 200 Hz event stream overflows during a single slow callback)."""
        if self.params.sensor_qos == "reliable":
            return QoSProfile(depth=depth or 10)
        if depth is None:
            return qos_profile_sensor_data
        return QoSProfile(depth=depth, reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability, history=qos_profile_sensor_data.history)

    # ---- inputs, drops, stamps -------------------------------------------------------------------
    def count_input(self, topic: str) -> None:
        self._rates.setdefault(topic, RateMeter()).tick(time.monotonic())

    def drop(self, reason: str, detail: str = "", n: int = 1) -> None:
        """Count a dropped input under ``reason`` and log it (throttled): nothing disappears silently."""
        self.drops.add(reason, n)
        self.get_logger().warning(f"dropped {n} input(s): {reason}{': ' + detail if detail else ''}",
                                  throttle_duration_sec=2.0)

    def accept_stamp(self, topic: str, stamp) -> bool:
        """False (and a counted drop) for a stamp older than the last one accepted on ``topic``."""
        now_ns = stamp_to_ns(stamp)
        last = self._last_stamp_ns.get(topic)
        if last is not None and now_ns < last:
            if (last - now_ns) / 1e9 > self.params.time_jump_reset:
                self.get_logger().warning(f"{topic}: time jumped back {(last - now_ns) / 1e9:.1f} s; "
                                          "treating it as a clock reset")
            else:
                self.drop("out-of-order stamp", f"{topic}: {(last - now_ns) / 1e6:.1f} ms older than the last")
                return False
        self._last_stamp_ns[topic] = now_ns
        return True

    def receive(self, topic: str, msg: Any, convert: Callable[[Any], Any], what: str = "message") -> Any:
        """Count ``msg`` as an input on ``topic``, drop it when its stamp is out of order, and return
        ``convert(msg)``; None, with a counted "malformed <what>" drop, when the conversion refuses it."""
        self.count_input(topic)
        if not self.accept_stamp(topic, msg.header.stamp):
            return None
        try:
            return convert(msg)
        except ValueError as exc:  # the conversions' layout and encoding errors are ValueErrors
            self.drop(f"malformed {what}", str(exc))
            return None

    def set_diagnostic(self, key: str, value: Any) -> None:
        self._diag_values[key] = value if isinstance(value, str) else f"{value:.4g}" if isinstance(
            value, float) else str(value)

    # ---- work off the executor -------------------------------------------------------------------
    def start_worker(self, process: Callable[[Any], None]) -> None:
        """Run ``process(item)`` on a worker thread for items given to ``submit`` (timed, errors caught)."""
        self._worker = LatestWinsWorker(
            lambda item: self.run_timed(process, item), maxsize=self.params.queue_size,
            name=f"{self.NAME}-worker", on_drop=lambda item: self.drop("superseded: worker busy"),
            on_error=self._on_worker_error)

    def submit(self, item: Any) -> bool:
        """Queue ``item`` for the worker; False when an older pending item was discarded (and counted) for it."""
        if self._worker is None:
            raise RuntimeError("start_worker() was not called")
        return self._worker.submit(item)

    def run_timed(self, process: Callable[[Any], None], item: Any) -> None:
        with self.timed():
            process(item)

    @contextmanager
    def timed(self):
        start = time.perf_counter()
        yield
        self.latency.add(time.perf_counter() - start)

    def _on_worker_error(self, item: Any, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        self.drop(f"processing error ({type(exc).__name__})", str(exc))

    @property
    def backlog(self) -> int:
        return self._worker.backlog if self._worker else 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._worker.wait_idle(timeout) if self._worker else True

    # ---- diagnostics -----------------------------------------------------------------------------
    def diagnostic_status(self) -> DiagnosticStatus:
        now = time.monotonic()
        p50, p99 = self.latency.percentile(50), self.latency.percentile(99)
        values = {
            "processed": str(self.latency.total),
            "processing_time_p50_ms": f"{p50 * 1e3:.2f}" if p50 is not None else "n/a",
            "processing_time_p99_ms": f"{p99 * 1e3:.2f}" if p99 is not None else "n/a",
            "backlog": str(self.backlog),
            "drops_total": str(self.drops.total),
        }
        values.update({f"input_rate_hz/{topic.lstrip('/')}": f"{meter.rate(now):.2f}" for topic, meter in self._rates.items()})
        values.update({f"inputs/{topic.lstrip('/')}": str(meter.count) for topic, meter in self._rates.items()})
        values.update({f"drops/{reason}": str(n) for reason, n in sorted(self.drops.by_reason().items())})
        values.update(self._diag_values)
        if self._last_error:
            level, message = DiagnosticStatus.WARN, f"last error: {self._last_error}"
        elif self.drops.total:
            level, message = DiagnosticStatus.WARN, f"{self.drops.total} input(s) dropped"
        else:
            level, message = DiagnosticStatus.OK, "ok"
        return DiagnosticStatus(level=level, name=f"fovea/{self.get_name()}", message=message,
                                hardware_id=self.get_fully_qualified_name(),
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.diagnostic_status()]
        self._diag_pub.publish(msg)

    def destroy_node(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        super().destroy_node()


def run_node(node_class: type[FoveaNode], args: list[str] | None = None) -> int:
    """The ``main`` of a node executable: init, spin until shutdown, report bad parameters clearly."""
    rclpy.init(args=args)
    try:
        node = node_class()
    except ParameterError as exc:
        print(f"[{node_class.NAME}] invalid configuration: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0

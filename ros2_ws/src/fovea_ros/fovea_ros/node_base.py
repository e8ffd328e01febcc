"""The base every Fovea node stands on: a managed (``rclpy.lifecycle``) node.

A node declares ``NAME`` and ``PARAMETERS`` and fills in the transitions it needs:

- ``configure()`` — parameters are validated first (``self.params``); check cross-parameter rules (raise
  ``ParameterError`` naming the parameter), load the model, build buffers. Any exception leaves the node
  *unconfigured*, with the reason logged and on ``/diagnostics``.
- ``activate()`` — create publishers, subscriptions, services, timers (``self.create_*``) and the worker
  (``self.start_worker``). Everything created here is destroyed again on deactivate, so an inactive node
  neither listens nor publishes (``ros2 lifecycle set <node> deactivate`` pauses it).
- ``cleanup()`` — release what configure loaded (optional); ``on_parameter_change(name, value)`` (optional)
  reacts to a ``dynamic`` parameter set at run time (``ros2 param set``), after the same validation as at
  configure. Parameters that are not dynamic can only be set while the node is unconfigured.

The common ``autostart`` parameter (default true) makes ``run_node`` / ``fovea run`` configure and activate
the node at start, as Nav2's lifecycle manager does; with ``autostart:=false`` the node waits in
*unconfigured* for ``ros2 lifecycle set``. ``/diagnostics`` is published in every state (processing time
p50/p99 against the node's latency budget, input rate per topic, drops by reason, lifecycle state).

Every callback created through ``create_subscription`` / ``create_service`` / ``create_timer`` is guarded:
an unexpected exception becomes a counted drop ``internal error: <ExceptionType>`` (the first line of each
kind logged once, with its traceback at debug level) and the node keeps running. Out-of-order stamps are
dropped; slow work runs on a worker thread behind a bounded latest-wins queue so the executor never blocks.
Outputs carry their input's header stamp, never the wall clock, so bag replay with ``use_sim_time`` works.
"""
from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, qos_profile_sensor_data

from fovea_core.model_files import ModelFileError
from fovea_core.telemetry import DropCounter, LatencyWindow, RateMeter
from fovea_ros.delivery import DeliveryTracker
from fovea_ros.parameters import (Param, ParameterError, config_dir, declare_parameters, load_node_config,
                                  normalized, validated_values)
from fovea_ros.worker import LatestWinsWorker

# Parameters every node has, before its own.
COMMON_PARAMETERS: tuple[Param, ...] = (
    Param("autostart", True, "configure and activate at start; false: wait for `ros2 lifecycle set`"),
    Param("sensor_qos", "sensor_data", "QoS of sensor subscriptions: sensor_data (best effort) or reliable",
          choices=("sensor_data", "reliable")),
    Param("diagnostics_period", 1.0, "seconds between /diagnostics messages", min_value=0.05, max_value=60.0),
    Param("queue_size", 1, "inputs waiting for the worker; when full the oldest is dropped (latest wins)",
          min_value=1, max_value=100),
    Param("time_jump_reset", 5.0, "a stamp this many seconds older than the last one is a clock reset "
          "(bag looped), not an out-of-order message", min_value=0.0, dynamic=True),
    Param("latency_budget_ms", 0.0, "processing-time budget per input; /diagnostics warns when p99 exceeds it "
          "(0 = no budget)", min_value=0.0, dynamic=True),
)
DROP_LOG_PERIOD_S = 2.0  # per reason: a second reason within this period is still logged


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class FoveaNode(LifecycleNode):
    NAME: ClassVar[str] = ""
    PARAMETERS: ClassVar[Sequence[Param]] = ()

    def __init__(self, *, config_path: str | None = None, **node_kwargs: Any) -> None:
        if not self.NAME:
            raise TypeError(f"{type(self).__name__} must set NAME")
        node_name = node_kwargs.pop("node_name", self.NAME)
        self._activation_entities: list[Any] | None = None  # collecting while activate() runs
        self._active_entities: list[Any] = []
        super().__init__(node_name, **node_kwargs)
        self._all_params = {p.name: p for p in (*COMMON_PARAMETERS, *self.PARAMETERS)}
        self._declare_problems: list[str] = []
        source, values = self._config(config_path)
        self._declare_problems += declare_parameters(self, tuple(self._all_params.values()), values, source)
        # until configure validates them: the declared values, so hooks can read self.params in any state
        from types import SimpleNamespace
        self.params = SimpleNamespace(**{name: normalized(p, self.get_parameter(name).value)
                                         for name, p in self._all_params.items()})
        self.latency = LatencyWindow()
        self.drops = DropCounter()
        self._rates: dict[str, RateMeter] = {}
        self._last_stamp_ns: dict[str, int] = {}
        self._diag_values: dict[str, str] = {}
        self._last_error = ""
        self._configure_error = ""
        self._last_drop_log: dict[str, float] = {}
        self._logged_internal: set[str] = set()
        self._worker: LatestWinsWorker | None = None
        self.delivery = DeliveryTracker()  # inputs lost before the callback, from the publishers' numbering
        self._published: dict[str, int] = {}  # output topic -> messages published (for books kept elsewhere)
        self._lifecycle_label = "unconfigured"
        self._diag_pub = super().create_publisher(DiagnosticArray, "/diagnostics", 10)
        period = self.params.diagnostics_period if isinstance(self.params.diagnostics_period, float) else 1.0
        super().create_timer(max(0.05, period), self._guard(self.publish_diagnostics, "timer"))
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ---- what a node fills in ----------------------------------------------------------------------
    def configure(self) -> None:
        """Validate cross-parameter rules, load the model (parameters are in ``self.params``)."""

    def activate(self) -> None:
        """Create publishers, subscriptions, services, timers and the worker."""

    def cleanup(self) -> None:
        """Release what ``configure`` loaded."""

    def on_parameter_change(self, name: str, value: Any) -> None:
        """A dynamic parameter changed (already validated and stored in ``self.params``); raise
        ParameterError to refuse it."""

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
        except Exception as exc:  # unreadable or not YAML: reported at configure, the node stays up
            self._declare_problems.append(f"cannot read the config file {config_path}: {one_line(exc)}")
            return config_path, {}

    def _check_names(self) -> None:
        """Topic and service parameters must be valid ROS names (empty = disabled, where a node allows it)."""
        from rclpy.expand_topic_name import expand_topic_name
        from rclpy.validate_full_topic_name import validate_full_topic_name

        for name, p in self._all_params.items():
            if not name.endswith(("_topic", "_topics", "_service")):
                continue
            value = getattr(self.params, name)
            for topic in (value if isinstance(value, list) else [value]):
                if not topic:
                    continue
                try:
                    validate_full_topic_name(expand_topic_name(topic, self.get_name(), self.get_namespace()))
                except Exception as exc:
                    why = str(exc).split(", at /")[0].split("is invalid: ")[-1]  # drop rcl's source location
                    raise ParameterError(f"parameter '{name}': {topic!r} is not a valid ROS name: {why}") from exc

    @property
    def lifecycle_state(self) -> str:
        return self._lifecycle_label

    def sensor_qos(self, depth: int | None = None) -> QoSProfile:
        """The QoS of sensor subscriptions; ``depth`` overrides the history depth for high-rate streams
        (sensor-data QoS keeps 5, which a 200 Hz event stream overflows during a single slow callback)."""
        if self.params.sensor_qos == "reliable":
            return QoSProfile(depth=depth or 10)
        if depth is None:
            return qos_profile_sensor_data
        return QoSProfile(depth=depth, reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability, history=qos_profile_sensor_data.history)

    # ---- lifecycle transitions -------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            if self._declare_problems:
                raise ParameterError(self._declare_problems[0])
            self.params = validated_values(self, tuple(self._all_params.values()))
            self._check_names()
            self.configure()
        except Exception as exc:
            one_line_already = isinstance(exc, (ParameterError, ModelFileError)) and exc.args
            self._configure_error = str(exc) if one_line_already else one_line(exc)
            self.get_logger().error(f"configure failed: {self._configure_error}")
            self.get_logger().debug(traceback.format_exc())
            self._safe_cleanup()
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ""
        self._lifecycle_label = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activation_entities = []
        try:
            self.activate()
        except Exception as exc:
            self._active_entities, self._activation_entities = self._activation_entities, None
            self._release_io()
            self._configure_error = f"activate failed: {one_line(exc)}"
            self.get_logger().error(self._configure_error)
            self.get_logger().debug(traceback.format_exc())
            return TransitionCallbackReturn.FAILURE
        self._active_entities, self._activation_entities = self._activation_entities, None
        self._configure_error = ""
        self._lifecycle_label = "active"
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_io()
        self._lifecycle_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._safe_cleanup()
        self._lifecycle_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_io()
        if self._lifecycle_label != "unconfigured":
            self._safe_cleanup()
        self._lifecycle_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_io()
        self._safe_cleanup()
        self._lifecycle_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _safe_cleanup(self) -> None:
        try:
            self.cleanup()
        except Exception as exc:  # cleanup must not stop the transition; say what went wrong
            self.get_logger().error(f"cleanup failed: {one_line(exc)}")

    def _release_io(self) -> None:
        """Stop the worker (pending inputs are counted as dropped) and destroy what activate created."""
        if self._worker is not None:
            pending = self._worker.stop()
            if pending:
                self.drop("discarded at deactivation", n=pending)
            self._worker = None
        for entity in reversed(self._active_entities):
            for destroy in (self.destroy_subscription, self.destroy_publisher, self.destroy_service,
                            self.destroy_timer, self.destroy_client):
                try:
                    if destroy(entity):
                        break
                except Exception:  # an entity of another kind: try the next destroyer
                    continue
        self._active_entities = []

    def bring_up(self) -> str:
        """Configure and activate now (what ``autostart`` does); returns '' or the reason it failed."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return self._configure_error or "configure failed"
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            return self._configure_error or "activate failed"
        return ""

    # ---- runtime parameters ----------------------------------------------------------------------
    def _on_set_parameters(self, changes) -> SetParametersResult:
        updates = []
        for change in changes:
            p = self._all_params.get(change.name)
            if p is None:
                continue  # use_sim_time and other rclpy parameters
            if not p.dynamic and self._lifecycle_label in ("inactive", "active"):
                return SetParametersResult(successful=False, reason=(
                    f"parameter '{p.name}' cannot change while the node is {self._lifecycle_label}: it is read at configure "
                    "(deactivate and clean up the node, set it, configure again)"))
            value = normalized(p, change.value)
            try:
                p.validate(value)
            except ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            updates.append((p.name, value))
        previous = {name: getattr(self.params, name) for name, _ in updates}
        for name, value in updates:
            setattr(self.params, name, value)
        if self._lifecycle_label in ("inactive", "active"):
            try:
                for name, value in updates:
                    self.on_parameter_change(name, value)
            except Exception as exc:
                for name, value in previous.items():
                    setattr(self.params, name, value)
                return SetParametersResult(successful=False, reason=str(exc) if isinstance(exc, ParameterError)
                                           else one_line(exc))
        return SetParametersResult(successful=True)

    # ---- entities: recorded while activating, callbacks guarded ----------------------------------
    def _record(self, entity: Any) -> Any:
        if self._activation_entities is not None:
            self._activation_entities.append(entity)
        return entity

    def _internal_error(self, where: str, exc: BaseException) -> None:
        reason = f"internal error: {type(exc).__name__}"
        self._last_error = one_line(exc)
        self.drops.add(reason)
        if reason not in self._logged_internal:
            self._logged_internal.add(reason)
            self.get_logger().error(f"{where}: {one_line(exc)} (counted as '{reason}'; logged once)")
            self.get_logger().debug(traceback.format_exc())

    def _guard(self, callback: Callable, where: str) -> Callable:
        @functools.wraps(callback)
        def guarded(*args):
            try:
                return callback(*args)
            except Exception as exc:
                self._internal_error(where, exc)
                return None
        return guarded

    def _guard_service(self, srv_type, callback: Callable, where: str) -> Callable:
        def guarded(request, response):
            try:
                return callback(request, response)
            except Exception as exc:
                self._internal_error(where, exc)
                response = srv_type.Response()
                for field, value in (("success", False), ("message", f"internal error: {one_line(exc)}")):
                    if hasattr(response, field):
                        setattr(response, field, value)
                return response
        return guarded

    def create_subscription(self, msg_type, topic, callback, qos_profile, **kwargs):
        guarded = self._guard(callback, f"subscription {topic}")
        created: list[Any] = []

        def with_message_info(msg, info):  # two parameters: rclpy then passes the MessageInfo too
            try:
                self.delivery.observe(topic, info, created[0].get_publisher_count() if created else 1)
            except Exception as exc:  # bookkeeping must never cost the message
                self._internal_error(f"subscription {topic} (delivery)", exc)
            return guarded(msg)

        created.append(super().create_subscription(msg_type, topic, with_message_info, qos_profile, **kwargs))
        return self._record(created[0])

    def create_service(self, srv_type, srv_name, callback, **kwargs):
        return self._record(super().create_service(
            srv_type, srv_name, self._guard_service(srv_type, callback, f"service {srv_name}"), **kwargs))

    def create_timer(self, timer_period_sec, callback, *args, **kwargs):
        return self._record(super().create_timer(timer_period_sec, self._guard(callback, "timer"), *args, **kwargs))

    def create_publisher(self, *args, **kwargs):
        publisher = super().create_publisher(*args, **kwargs)
        if self._activation_entities is not None:  # an output of the node: count what it publishes
            topic, publish = publisher.topic_name, publisher.publish

            def counted_publish(msg):
                publish(msg)
                self._published[topic] = self._published.get(topic, 0) + 1
            publisher.publish = counted_publish
        return self._record(publisher)

    def create_client(self, *args, **kwargs):
        return self._record(super().create_client(*args, **kwargs))

    # ---- inputs, drops, stamps -------------------------------------------------------------------
    def count_input(self, topic: str) -> None:
        self._rates.setdefault(topic, RateMeter()).tick(time.monotonic())

    def drop(self, reason: str, detail: str = "", n: int = 1) -> None:
        """Count a dropped input under ``reason`` and log it (throttled per reason): nothing disappears
        silently, and a second reason is never hidden behind the first one's throttle."""
        self.drops.add(reason, n)
        now = time.monotonic()
        if now - self._last_drop_log.get(reason, -1e9) >= DROP_LOG_PERIOD_S:
            self._last_drop_log[reason] = now
            self.get_logger().warning(f"dropped {n} input(s): {reason}{': ' + detail if detail else ''}")

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
            # a conversion error may name its own reason (fovea_ros.conversions: bad xyz field type, ...)
            self.drop(getattr(exc, "reason", None) or f"malformed {what}", str(exc))
            return None

    def set_diagnostic(self, key: str, value: Any) -> None:
        self._diag_values[key] = value if isinstance(value, str) else f"{value:.4g}" if isinstance(
            value, float) else str(value)

    # ---- work off the executor -------------------------------------------------------------------
    def start_worker(self, process: Callable[[Any], None]) -> None:
        """Run ``process(item)`` on a worker thread for items given to ``submit`` (timed, errors caught);
        call it from ``activate`` (deactivate stops it)."""
        self._worker = LatestWinsWorker(
            lambda item: self.run_timed(process, item), maxsize=self.params.queue_size,
            name=f"{self.NAME}-worker", on_drop=lambda item: self.drop("superseded: worker busy"),
            on_error=lambda item, exc: self._internal_error("worker", exc))

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

    @property
    def backlog(self) -> int:
        return self._worker.backlog if self._worker else 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._worker.wait_idle(timeout) if self._worker else True

    # ---- diagnostics -----------------------------------------------------------------------------
    def diagnostic_status(self) -> DiagnosticStatus:
        now = time.monotonic()
        p50, p99 = self.latency.percentile(50), self.latency.percentile(99)
        budget_ms = float(self.params.latency_budget_ms or 0.0)
        values = {
            "lifecycle_state": self._lifecycle_label,
            "processed": str(self.latency.total),
            "processing_time_p50_ms": f"{p50 * 1e3:.2f}" if p50 is not None else "n/a",
            "processing_time_p99_ms": f"{p99 * 1e3:.2f}" if p99 is not None else "n/a",
            "latency_budget_ms": f"{budget_ms:g}" if budget_ms else "none",
            "backlog": str(self.backlog),
            "drops_total": str(self.drops.total),
        }
        over_budget = bool(budget_ms and p99 is not None and p99 * 1e3 > budget_ms)
        values["over_budget"] = str(over_budget).lower()
        values.update({f"input_rate_hz/{topic.lstrip('/')}": f"{meter.rate(now):.2f}" for topic, meter in self._rates.items()})
        values.update({f"inputs/{topic.lstrip('/')}": str(meter.count) for topic, meter in self._rates.items()})
        values.update({f"drops/{reason}": str(n) for reason, n in sorted(self.drops.by_reason().items())})
        delivery = self.delivery.snapshot()
        lost_before = sum(d.lost for d in delivery.values())
        values.update({f"lost_before_callback/{topic.lstrip('/')}": str(d.lost) for topic, d in delivery.items()
                       if d.lost or topic in self._rates})
        values["lost_before_callback_total"] = str(lost_before)
        values.update({f"outputs/{topic.lstrip('/')}": str(n) for topic, n in sorted(self._published.items())})
        values.update(self._diag_values)
        if self._configure_error:
            level, message = DiagnosticStatus.ERROR, f"{self._lifecycle_label}: {self._configure_error}"
        elif self._lifecycle_label != "active":
            level, message = DiagnosticStatus.OK, f"{self._lifecycle_label}"
        elif self._last_error:
            level, message = DiagnosticStatus.WARN, f"last error: {self._last_error}"
        elif over_budget:
            level, message = DiagnosticStatus.WARN, f"processing p99 {p99 * 1e3:.1f} ms over the {budget_ms:g} ms budget"
        elif self.drops.total or lost_before:
            level, message = DiagnosticStatus.WARN, ", ".join(
                part for part in (f"{self.drops.total} input(s) dropped" if self.drops.total else "",
                                  f"{lost_before} lost before the callback" if lost_before else "") if part)
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
        self._release_io()
        super().destroy_node()


class ConfigurationError(RuntimeError):
    """A node could not be brought up (its transition already logged the one line saying why)."""


def bring_up_or_raise(node: FoveaNode) -> None:
    """With ``autostart``, configure and activate ``node``; ConfigurationError naming the node otherwise."""
    if not node.params.autostart:
        node.get_logger().info("autostart is false: waiting unconfigured for `ros2 lifecycle set`")
        return
    reason = node.bring_up()
    if reason:
        raise ConfigurationError(f"[{node.get_name()}] cannot start: {reason}")


def run_node(node_class: type[FoveaNode], args: list[str] | None = None) -> int:
    """The ``main`` of a node executable: init, bring the node up (autostart), spin until shutdown. A node
    that cannot be configured logs one line saying why and exits 2."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        bring_up_or_raise(node)
        rclpy.spin(node)
    except ConfigurationError:
        return 2
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0

"""Lifecycle manager: brings a list of managed nodes up and down in order, like ``nav2_lifecycle_manager``.

It drives each node in ``node_names`` through the standard lifecycle services (``<node>/change_state``,
``<node>/get_state``: what ``ros2 lifecycle set`` calls), so it manages any ROS 2 lifecycle node, Fovea's
or not. When the manager itself is activated (its ``autostart``, the default) and ``autostart_nodes`` is
true, it runs STARTUP: configure then activate each node in list order, waiting up to
``wait_for_nodes_s`` for a node's services to appear; the first node that fails stops the bring-up (later
nodes depend on earlier ones) with the node's own reason, read from its ``/diagnostics``.

Service ``manage_service`` (fovea_msgs/srv/ManageNodes): STARTUP, PAUSE (deactivate, reverse order), RESUME,
RESET (back to unconfigured, reverse order), SHUTDOWN (finalized, reverse order); the response carries each
node's state afterwards. Every ``check_period_s`` the manager asks each node for its state and reports on
``/diagnostics`` (``fovea/<manager name>``): OK while every node is where the last command put it, ERROR
naming the node that is not (crashed, unreachable, or moved by someone else).
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState

from fovea_msgs.srv import ManageNodes
from fovea_ros.node_base import FoveaNode, run_node
from fovea_ros.parameters import Param
from fovea_ros.service_calls import ServiceCallError, ServiceCaller

# (command -> (node order, target state, {state: transitions that lead from it towards the target}))
_FORWARD, _REVERSE = 1, -1
PLANS = {
    ManageNodes.Request.STARTUP: ("STARTUP", _FORWARD, "active", {
        "unconfigured": (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE),
        "inactive": (Transition.TRANSITION_ACTIVATE,), "active": ()}),
    ManageNodes.Request.PAUSE: ("PAUSE", _REVERSE, "inactive", {
        "active": (Transition.TRANSITION_DEACTIVATE,), "inactive": ()}),
    ManageNodes.Request.RESUME: ("RESUME", _FORWARD, "active", {
        "inactive": (Transition.TRANSITION_ACTIVATE,), "active": ()}),
    ManageNodes.Request.RESET: ("RESET", _REVERSE, "unconfigured", {
        "active": (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP),
        "inactive": (Transition.TRANSITION_CLEANUP,), "unconfigured": ()}),
    ManageNodes.Request.SHUTDOWN: ("SHUTDOWN", _REVERSE, "finalized", {
        "active": (Transition.TRANSITION_ACTIVE_SHUTDOWN,), "inactive": (Transition.TRANSITION_INACTIVE_SHUTDOWN,),
        "unconfigured": (Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,), "finalized": ()}),
}
TRANSITION_NAMES = {Transition.TRANSITION_CONFIGURE: "configure", Transition.TRANSITION_ACTIVATE: "activate",
                    Transition.TRANSITION_DEACTIVATE: "deactivate", Transition.TRANSITION_CLEANUP: "cleanup",
                    Transition.TRANSITION_ACTIVE_SHUTDOWN: "shutdown",
                    Transition.TRANSITION_INACTIVE_SHUTDOWN: "shutdown",
                    Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: "shutdown"}
UNREACHABLE = "unreachable"
TRANSITIONAL = ("configuring", "activating", "deactivating", "cleaningup", "shuttingdown", "errorprocessing")
GET_STATE_TRIES = 3
DIAGNOSTIC_ERROR = 2   # DiagnosticStatus.ERROR (a bytes constant in rclpy)
REASON_WAIT_S = 3.0  # after a failed transition, how long to wait for the node's /diagnostics saying why


def _check_names(names: list) -> str | None:
    if not names or any(not isinstance(n, str) or not n.strip() for n in names):
        return "name at least one node, none empty"
    if len(set(names)) != len(names):
        return "a node is named twice"
    return None


class LifecycleManagerNode(FoveaNode):
    NAME = "lifecycle_manager"
    PARAMETERS = (
        Param("node_names", [""], "managed nodes, in bring-up order (brought down in reverse)", check=_check_names),
        Param("autostart_nodes", True, "on the manager's activation, bring the nodes up (STARTUP); false: wait "
              "for a manage_nodes call"),
        Param("wait_for_nodes_s", 60.0, "how long STARTUP waits for a node's lifecycle services to appear",
              min_value=0.0, max_value=3600.0),
        Param("transition_timeout_s", 180.0, "how long one transition may take (configure loads models and may "
              "build a TensorRT engine)", min_value=0.1, max_value=7200.0),
        Param("check_period_s", 2.0, "seconds between state checks of every node (0 = no checks)",
              min_value=0.0, max_value=600.0),
        Param("manage_service", "~/manage_nodes", "fovea_msgs/srv/ManageNodes service name"),
    )

    def __init__(self, **kwargs) -> None:
        self.calls: ServiceCaller | None = None
        self.states: dict[str, str] = {}
        self.expected: str | None = None     # where the last command left the nodes
        self.problem = ""                    # why the last command stopped
        self.drift = ""                      # nodes the periodic check found away from the expected state
        self.last_command = "none"
        super().__init__(**kwargs)

    def configure(self) -> None:
        self.calls = ServiceCaller(self)
        self._node_status: dict[str, tuple[float, DiagnosticStatus]] = {}   # fovea/<node> -> (arrival, status)
        self._diag_lock = threading.Lock()
        self._diag_sub = self.calls.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self._command_lock = threading.Lock()
        self.states = {name: "unknown" for name in self.params.node_names}
        self.expected, self.problem, self.drift, self.last_command = None, "", "", "none"

    def activate(self) -> None:
        self.create_service(ManageNodes, self.params.manage_service, self.on_manage)
        self.start_worker(self._work)
        if self.params.check_period_s > 0:
            self.create_timer(self.params.check_period_s, self._request_check)
        if self.params.autostart_nodes:
            # its own thread, not the worker: the worker's timing (/diagnostics p50/p99 against the budget) is
            # the state check's, and a bring-up waits for processes to start, which is no latency of ours
            threading.Thread(target=self.run_command, args=(ManageNodes.Request.STARTUP,),
                             name="lifecycle-startup", daemon=True).start()

    def cleanup(self) -> None:
        if self.calls is not None:
            self.calls.close()
            self.calls = None

    def destroy_node(self) -> None:
        super().destroy_node()
        self.cleanup()

    # ---- the nodes' own reasons, from /diagnostics (heard on the helper node, also while a command blocks)
    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        with self._diag_lock:
            for status in msg.status:
                self._node_status[status.name] = (now, status)

    def _reason_of(self, node: str, since: float) -> str:
        """The message of the node's first ERROR /diagnostics after ``since``, waiting a little for it."""
        key = f"fovea/{node.rsplit('/', 1)[-1]}"
        deadline = time.monotonic() + REASON_WAIT_S
        while time.monotonic() < deadline:
            with self._diag_lock:
                arrival, status = self._node_status.get(key, (0.0, None))
            level = status.level if status is not None else None
            level = int.from_bytes(level, "little") if isinstance(level, bytes) else level
            if status is not None and arrival >= since and level == DIAGNOSTIC_ERROR:
                return status.message
            time.sleep(0.05)
        return ""

    # ---- lifecycle services of the managed nodes ----------------------------------------------------
    def _node_state(self, node: str, wait_s: float = 0.0, settle: bool = False) -> str:
        """The node's lifecycle state label; with ``settle``, once it has left a transitional state (e.g. its
        own autostart still configuring)."""
        deadline = time.monotonic() + self.params.transition_timeout_s
        while True:
            state = None
            for _ in range(GET_STATE_TRIES):  # idempotent: a lost answer is simply asked again
                try:
                    state = self.calls.call(GetState, f"{node}/get_state", GetState.Request(), timeout_s=2.0,
                                            wait_for_service_s=wait_s).current_state.label
                    break
                except ServiceCallError as exc:
                    if "not offered" in str(exc):
                        return UNREACHABLE
            if state is None:
                return UNREACHABLE
            if not settle or state not in TRANSITIONAL or time.monotonic() > deadline:
                return state
            time.sleep(0.1)

    def _transition(self, node: str, transition: int) -> str:
        """'' when the transition succeeded, else why not."""
        since = time.monotonic()
        request = ChangeState.Request(transition=Transition(id=transition))
        try:
            response = self.calls.call(ChangeState, f"{node}/change_state", request,
                                       timeout_s=self.params.transition_timeout_s, wait_for_service_s=2.0)
        except ServiceCallError as exc:
            return str(exc)
        if response.success:
            return ""
        reason = self._reason_of(node, since)
        return f"{TRANSITION_NAMES[transition]} failed" + (f": {reason}" if reason else "")

    def run_command(self, command: int) -> tuple[bool, str]:
        """Carry out a ManageNodes command on every node (in the plan's order); (success, message)."""
        label, direction, target, steps = PLANS[command]
        names = list(self.params.node_names)[::direction]
        with self._command_lock:
            self.last_command, self.expected, self.problem, self.drift = label, target, "", ""
            self.set_diagnostic("command", f"{label} running")
            for node in names:
                wait = self.params.wait_for_nodes_s if command == ManageNodes.Request.STARTUP else 2.0
                state = self._node_state(node, wait_s=wait, settle=True)
                self.states[node] = state
                if state not in steps:
                    self.problem = (f"{node} is {state}: cannot {label}" if state != UNREACHABLE else
                                    f"{node} is unreachable (no {node}/get_state service)")
                    break
                for transition in steps[state]:
                    why = self._transition(node, transition)
                    self.states[node] = self._node_state(node)
                    if why:
                        self.problem = f"{node}: {why}"
                        break
                if self.problem:
                    break
                self.get_logger().info(f"{label}: {node} is {self.states[node]}")
            ok = not self.problem
            message = f"{label}: every node {target}" if ok else f"{label} stopped: {self.problem}"
            if ok:
                self.get_logger().info(message)
            else:
                self.get_logger().error(message)
            self.set_diagnostic("command", f"{label} {'done' if ok else 'failed'}")
            return ok, message

    # ---- the service and the worker ---------------------------------------------------------------
    def on_manage(self, request, response):
        if request.command not in PLANS:
            response.success, response.message = False, f"unknown command {request.command} (0..4)"
        else:
            response.success, response.message = self.run_command(request.command)
        response.node_names = list(self.params.node_names)
        response.states = [self.states[n] for n in response.node_names]
        return response

    def _request_check(self) -> None:
        if self.backlog == 0:  # a check already waiting or a command running: this one is not needed
            self.submit("check")

    def _work(self, item) -> None:
        if self._command_lock.acquire(blocking=False):  # a command in progress reports for itself
            try:
                self._check()
            finally:
                self._command_lock.release()

    def _check(self) -> None:
        for node in self.params.node_names:
            self.states[node] = self._node_state(node)
        if self.expected is None:
            return
        wrong = [f"{n} is {s}" for n, s in self.states.items() if s != self.expected]
        # kept apart from the command's own reason, which names the cause (a failed configure) that this
        # check only sees the consequences of; both stay in the message
        self.drift = f"expected every node {self.expected}, but " + ", ".join(wrong) if wrong else ""

    def diagnostic_status(self) -> DiagnosticStatus:
        status = super().diagnostic_status()
        for node, state in self.states.items():
            status.values.append(KeyValue(key=f"node/{node}", value=state))
        problems = [p for p in (self.problem, self.drift) if p]
        if self.lifecycle_state == "active" and problems:
            status.level, status.message = DiagnosticStatus.ERROR, "; ".join(problems)
        elif self.lifecycle_state == "active" and status.level == DiagnosticStatus.OK:
            status.message = f"{self.last_command}: every node {self.expected}" if self.expected else "no command yet"
        return status


NODE_CLASS = LifecycleManagerNode


def main(args=None) -> int:
    return run_node(LifecycleManagerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

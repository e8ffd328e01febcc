"""Helpers for the suite tests: lifecycle and parameter services called from the test's peer node, diagnostics."""
from __future__ import annotations

import time

from lifecycle_msgs.srv import GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters


class Services:
    """Blocking calls from the peer node (which spins in its own thread)."""

    def __init__(self, peer):
        self.peer = peer
        self._clients = {}

    def call(self, srv_type, name: str, request, timeout: float = 30.0, tries: int = 1):
        """``tries`` > 1 only for idempotent calls: a request sent while discovery settles can go unanswered."""
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.peer.node.create_client(srv_type, name)
            assert client.wait_for_service(timeout_sec=60), f"{name} never appeared"
            time.sleep(0.5)  # let the server match our response reader too (see fovea_ros.service_calls)
        for _ in range(tries):
            future = client.call_async(request)
            if self.peer.wait_for(future.done, timeout):
                return future.result()
            client.remove_pending_request(future)
        raise AssertionError(f"{name} did not answer in {tries} x {timeout} s")

    def state(self, node: str) -> str:
        return self.call(GetState, f"{node}/get_state", GetState.Request(), timeout=3.0, tries=5).current_state.label

    def set_double(self, node: str, name: str, value: float):
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        request = SetParameters.Request(parameters=[Parameter(name=name, value=pv)])
        return self.call(SetParameters, f"{node}/set_parameters", request).results[0]


def latest_status(diagnostics: list, name: str):
    mine = [s for d in list(diagnostics) for s in d.status if s.name == name]
    return mine[-1] if mine else None


def level(status) -> int:
    return int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level)

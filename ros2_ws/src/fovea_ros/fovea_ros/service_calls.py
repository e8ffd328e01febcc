"""Asking other nodes' services from inside a node's own callbacks, without deadlocking its executor.

A callback that waits for another service's answer on the executor that must deliver that answer waits
forever (a single-threaded executor runs one callback at a time; a multi-threaded one runs out of threads
under concurrent calls). The nodes that ask others (the lifecycle manager, the spatio-temporal query) keep
their clients, and the subscriptions they must hear while they wait, on a hidden helper node spun by its own
executor in a background thread — the shape of nav2's service clients, which use a dedicated callback group
and executor. Any thread may then block on an answer, with a timeout.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


# Fast DDS may report a service ready (our side matched) before the server has matched our response reader;
# a request sent in that gap is answered into the void. A service that just appeared gets this long first.
DISCOVERY_SETTLE_S = 0.5


class ServiceCallError(RuntimeError):
    """The service is not offered, did not answer in time, or raised; the message says which."""


class ServiceCaller:
    """Blocking service calls through a hidden helper node ``_<owner>_calls`` spinning in its own thread."""

    def __init__(self, owner, name: str | None = None) -> None:
        self.node = rclpy.create_node(name or f"_{owner.get_name()}_calls", namespace=owner.get_namespace(),
                                      context=owner.context, start_parameter_services=False)
        self._clients: dict[tuple[Any, str], Any] = {}
        self._lock = threading.Lock()
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{self.node.get_name()}-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:  # the process is shutting down (Ctrl-C): nothing left to deliver
            pass

    def client(self, srv_type, service: str):
        with self._lock:
            key = (srv_type, service)
            if key not in self._clients:
                self._clients[key] = self.node.create_client(srv_type, service)
            return self._clients[key]

    def available(self, srv_type, service: str) -> bool:
        return self.client(srv_type, service).service_is_ready()

    def call(self, srv_type, service: str, request, timeout_s: float, wait_for_service_s: float = 0.0):
        """The response of ``service`` to ``request``; ServiceCallError when it is not offered (after
        waiting up to ``wait_for_service_s``) or does not answer within ``timeout_s``."""
        client = self.client(srv_type, service)
        if not client.service_is_ready():
            if not client.wait_for_service(timeout_sec=wait_for_service_s):
                raise ServiceCallError(f"service {client.srv_name} is not offered")
            time.sleep(DISCOVERY_SETTLE_S)
        result = self.call_all([(srv_type, service, request)], timeout_s)[0]
        if isinstance(result, ServiceCallError):
            raise result
        return result

    def call_all(self, calls: list[tuple[Any, str, Any]], timeout_s: float) -> list[Any]:
        """Several ``(srv_type, service, request)`` calls at once; per call its response, or the
        ServiceCallError saying why there is none (all share one deadline)."""
        pending = []
        for srv_type, service, request in calls:
            client = self.client(srv_type, service)
            if not client.service_is_ready():
                pending.append((client, None, ServiceCallError(f"service {client.srv_name} is not offered")))
                continue
            done = threading.Event()
            future = client.call_async(request)
            future.add_done_callback(lambda _, d=done: d.set())
            pending.append((client, (future, done), None))
        deadline = time.monotonic() + timeout_s
        results = []
        for client, call, error in pending:
            if call is None:
                results.append(error)
                continue
            future, done = call
            if not done.wait(max(0.0, deadline - time.monotonic())):
                client.remove_pending_request(future)
                results.append(ServiceCallError(f"service {client.srv_name} did not answer within {timeout_s:g} s"))
            elif future.exception() is not None:
                results.append(ServiceCallError(f"service {client.srv_name} failed: {future.exception()}"))
            else:
                results.append(future.result())
        return results

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        self.node.destroy_node()

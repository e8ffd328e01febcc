"""Suite-wide test set-up.

One ROS domain per test process, so concurrent test runs on a host never see each other's topics (set
before any rclpy context exists; child processes inherit it). Real rclpy in tests: a test-side node spinning
in a thread (its own rclpy context) and executables started as separate processes, exchanging real messages
through the middleware (the Fast DDS profile of env.sh: shared memory for large messages).
"""
from __future__ import annotations

import os

os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 99)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

REPO = Path(__file__).resolve().parents[1]


class Peer:
    """A test-side rclpy node with its own context, spinning in a background thread."""

    def __init__(self, name: str = "test_peer") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return condition()

    def wait_for_subscribers(self, publisher, count: int = 1, timeout: float = 15.0) -> None:
        assert self.wait_for(lambda: publisher.get_subscription_count() >= count, timeout), \
            f"no subscriber on {publisher.topic_name} after {timeout} s"

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


@pytest.fixture
def start_python():
    """Start ``python ARGS...`` (e.g. ``-m module``), environment inherited (same ROS domain); stopped with
    SIGINT at teardown. Output is captured so a failing test can show it."""
    procs: list[subprocess.Popen] = []

    def start(*args: str, env: dict | None = None) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO,
                                env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(2)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

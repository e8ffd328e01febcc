"""Set-up for the bag-tool tests: their helpers importable, an isolated ROS domain per test."""
from __future__ import annotations

import itertools
import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bag_test_helpers (a plain module: the tests are imported with importlib)

from bag_test_helpers import ProbeSubscriber  # noqa: E402

_test_counter = itertools.count()


@pytest.fixture(autouse=True)
def isolated_ros_domain(monkeypatch):
    """Each test its own DDS domain (Fast DDS accepts 0..232), derived from the pid and a per-test counter, so
    tests here and concurrently running test sessions never see each other's topics. The bag tools create their
    rclpy contexts inside the test, and child processes inherit the environment, so both pick it up."""
    domain = 100 + (os.getpid() + next(_test_counter)) % 130
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return domain


@pytest.fixture
def probe_factory():
    probes: list[ProbeSubscriber] = []

    def start(*args, **kwargs) -> ProbeSubscriber:
        probes.append(ProbeSubscriber(*args, **kwargs))
        return probes[-1]

    yield start
    for probe in probes:
        probe.close()

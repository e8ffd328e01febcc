"""The health node with real rclpy: a real voxel-filter node in its own process, the health node in another;
faults are injected (a sensor goes silent, the node runs over its latency budget, the node is deactivated,
the anomaly source reports a desync) and each must reach the dependent outputs on /fovea/health with its
reason, and clear again when the fault ends."""
import threading
import time

import numpy as np
import pytest
import yaml
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2

from fovea_msgs.msg import Health, HealthArray, StreamAnomaly
from fovea_ros.conversions import array_to_pointcloud2
from fovea_ros.nodes.health_node import health_qos

pytestmark = pytest.mark.ros

RULES = {
    "stale_after_s": 2.0, "drop_window_s": 5.0,
    "anomaly_sources": [{"name": "stream_check", "topic": "/stream_check/score", "type": "fovea_msgs/msg/StreamAnomaly",
                         "stale_after_s": 5.0}],
    "sensors": [{"name": "lidar", "topic": "/lidar/points", "min_rate_hz": 5.0, "stale_after_s": 1.5,
                 "anomaly": "stream_check"}],
    "outputs": [
        {"name": "filtered", "node": "voxel_filter", "topic": "/lidar/points_filtered", "inputs": ["lidar"]},
        {"name": "map_update", "node": "voxel_filter", "topic": "/map_update",
         "inputs": [{"name": "filtered", "cap": "degraded"}]},
    ],
}


class Lidar:
    """Publishes clouds at 10 Hz from a thread while ``running``."""

    def __init__(self, peer):
        self.pub = peer.node.create_publisher(PointCloud2, "/lidar/points", qos_profile_sensor_data)
        self.running, self.stopped, self.sec = threading.Event(), threading.Event(), 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self):
        self.stopped.set()
        self._thread.join(timeout=2)

    def _loop(self):
        while not self.stopped.is_set():
            if self.running.is_set():
                points = np.zeros(500, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
                points["x"], points["y"], points["z"] = np.random.default_rng(self.sec).uniform(2, 20, (3, 500))
                msg = array_to_pointcloud2(points)
                self.sec += 1
                msg.header.stamp.sec, msg.header.frame_id = self.sec, "lidar"
                self.pub.publish(msg)
            time.sleep(0.1)


def verdict(state, fault="", offset_ms=float("nan")):
    msg = StreamAnomaly(state=state, score=2.5 if state != StreamAnomaly.OK else 0.2, threshold=1.0,
                        suspected_fault=fault, offset_ms=offset_ms)
    msg.header.stamp.sec = int(time.time())
    return msg


@pytest.fixture
def suite(peer, start_python, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))
    health = []
    peer.node.create_subscription(HealthArray, "/fovea/health", health.append, health_qos())
    verdicts = peer.node.create_publisher(StreamAnomaly, "/stream_check/score", 10)
    start_python("-m", "fovea_ros.nodes.voxel_filter_node", "--ros-args", "-p", "diagnostics_period:=0.2",
                 "-p", "input_topic:=/lidar/points", "-p", "output_topic:=/lidar/points_filtered")
    start_python("-m", "fovea_ros.nodes.health_node", "--ros-args", "-p", f"rules_file:={rules}",
                 "-p", "publish_period:=0.2")
    lidar = Lidar(peer)
    peer.wait_for_subscribers(lidar.pub)
    peer.wait_for_subscribers(verdicts)
    yield health, lidar, verdicts
    lidar.stop()


def entry(health, kind, name):
    if not health:
        return None
    return next((e for e in health[-1].entries if e.kind == kind and e.name == name), None)


def wait_level(peer, health, kind, name, level, timeout=15.0):
    ok = peer.wait_for(lambda: (e := entry(health, kind, name)) is not None and e.level == level, timeout)
    assert ok, f"{kind} {name} never {level}: {entry(health, kind, name)}"
    return entry(health, kind, name)


def test_a_silent_sensor_and_a_late_or_inactive_node_reach_the_dependent_outputs(peer, suite, services):
    health, lidar, verdicts = suite
    lidar.running.set()
    verdicts.publish(verdict(StreamAnomaly.OK))
    for name in ("filtered", "map_update"):
        wait_level(peer, health, "output", name, Health.OK, timeout=30)

    lidar.running.clear()  # the sensor goes silent
    e = wait_level(peer, health, "sensor", "lidar", Health.UNRELIABLE)
    assert "no new message on /lidar/points" in e.reasons[0]
    e = wait_level(peer, health, "output", "filtered", Health.UNRELIABLE)
    assert e.reasons[0].startswith("input lidar unreliable: no new message on /lidar/points")
    e = wait_level(peer, health, "output", "map_update", Health.DEGRADED)  # capped by its rule
    assert e.reasons[0].startswith("input filtered unreliable: input lidar unreliable")

    lidar.running.set()      # back: everything clears
    verdicts.publish(verdict(StreamAnomaly.OK))
    wait_level(peer, health, "output", "filtered", Health.OK)

    # the node runs over its latency budget (ros2 param set of a dynamic parameter)
    assert services.set_double("/voxel_filter", "latency_budget_ms", 0.001).successful
    verdicts.publish(verdict(StreamAnomaly.OK))
    e = wait_level(peer, health, "output", "filtered", Health.DEGRADED)
    assert "node voxel_filter: processing p99" in e.reasons[0] and "over its 0.001 ms budget" in e.reasons[0]
    assert services.set_double("/voxel_filter", "latency_budget_ms", 0.0).successful

    # deactivated (ros2 lifecycle set): not active is unreliable
    reply = services.call(ChangeState, "/voxel_filter/change_state",
                          ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE)))
    assert reply.success
    e = wait_level(peer, health, "node", "voxel_filter", Health.UNRELIABLE)
    assert e.reasons == ["is inactive, not active"]
    assert entry(health, "output", "filtered").level == Health.UNRELIABLE


def test_an_anomaly_verdict_flags_the_stream_and_every_output_computed_from_it(peer, suite):
    health, lidar, verdicts = suite
    lidar.running.set()
    verdicts.publish(verdict(StreamAnomaly.OK))
    wait_level(peer, health, "output", "filtered", Health.OK, timeout=30)

    flagged_at = time.monotonic()
    verdicts.publish(verdict(StreamAnomaly.WARN, "offset", 40.0))   # the injected fault: a desync
    e = wait_level(peer, health, "output", "filtered", Health.UNRELIABLE, timeout=5)
    assert time.monotonic() - flagged_at < 2.0, "the flag must reach the output at once, not at the next period"
    assert e.reasons[0] == ("input lidar unreliable: stream_check warn: offset, offset +40 ms, "
                            "score 2.5 vs threshold 1")
    assert entry(health, "sensor", "lidar").level == Health.UNRELIABLE
    assert entry(health, "output", "map_update").level == Health.DEGRADED

    verdicts.publish(verdict(StreamAnomaly.OK))            # the fault ends
    wait_level(peer, health, "output", "filtered", Health.OK, timeout=5)

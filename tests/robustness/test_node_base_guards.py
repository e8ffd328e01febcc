"""The node base's guards in a real process: an exception nobody expected, in a subscription callback or in
the worker, is a counted drop 'internal error: <Type>' whose first line is logged once, and the node keeps
going; drop logs are throttled per reason, so a second reason is never hidden behind the first one's.

The faults are injected into the voxel node's own module (a cloud of 1111 points makes the callback raise,
one of 2222 points the worker step), so everything else is the shipped code.
"""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from rclpy.qos import QoSProfile
from sensor_msgs.msg import PointCloud2, PointField

from fovea_ros.conversions import array_to_pointcloud2

from test_burst_nodes import Diagnostics, drops

pytestmark = pytest.mark.ros
RELIABLE = QoSProfile(depth=50)
INJECT = """
import sys
import fovea_ros.nodes.voxel_filter_node as node
real_drop, real_downsample = node.drop_non_finite_xyz, node.voxel_downsample

def drop_non_finite_xyz(points):
    if len(points) == 1111:
        raise ZeroDivisionError("injected into the callback")
    return real_drop(points)

def voxel_downsample(points, *args, **kwargs):
    if len(points) == 2222:
        raise KeyError("injected into the worker")
    return real_downsample(points, *args, **kwargs)

node.drop_non_finite_xyz, node.voxel_downsample = drop_non_finite_xyz, voxel_downsample
sys.exit(node.main(sys.argv))
"""


def cloud(sec: int, n: int) -> PointCloud2:
    rng = np.random.default_rng(sec)
    points = np.zeros(n, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    points["x"], points["y"], points["z"] = rng.uniform(2, 30, (3, n))
    msg = array_to_pointcloud2(points)
    msg.header.stamp.sec, msg.header.frame_id = sec, "lidar"
    return msg


def test_unexpected_exceptions_are_counted_logged_once_and_the_node_goes_on(peer, start_python):
    outputs = []
    peer.node.create_subscription(PointCloud2, "/lidar/points_filtered", outputs.append, RELIABLE)
    diag = Diagnostics(peer, "fovea/voxel_filter")
    pub = peer.node.create_publisher(PointCloud2, "/lidar/points", RELIABLE)
    proc = start_python("-c", INJECT, "--ros-args", "-p", "diagnostics_period:=0.2", "-p", "sensor_qos:=reliable",
                        "-p", "queue_size:=20", "-p", "min_points:=1")
    peer.wait_for_subscribers(pub, timeout=60)
    assert peer.wait_for(lambda: peer.node.count_publishers("/lidar/points_filtered") >= 1, 30)
    time.sleep(0.5)

    bad_type = []
    for sec in (14, 15, 16):
        msg = cloud(sec, 500)
        msg.fields[0].count = 2
        bad_type.append(msg)
    no_xyz = cloud(17, 500)
    no_xyz.fields = [PointField(name="a", offset=0, datatype=7, count=1)]
    burst = [cloud(10, 1111), cloud(11, 1111), cloud(12, 2222), cloud(13, 2222)] + bad_type + [no_xyz]
    for msg in burst:  # all within a second: the throttle window of one reason
        pub.publish(msg)
        time.sleep(0.05)
    for sec in (20, 21):
        pub.publish(cloud(sec, 3000))
        time.sleep(0.2)
    assert peer.wait_for(lambda: len(outputs) == 2, 30), f"{len(outputs)} outputs; {diag.values()}"
    assert [m.header.stamp.sec for m in outputs] == [20, 21]
    values = diag.wait(lambda v: v.get("processed") == "2" and v.get("drops/internal error: KeyError") == "2")
    got = drops(values)
    assert got == {"internal error: ZeroDivisionError": 2, "internal error: KeyError": 2, "bad xyz field type": 3,
                   "wrong fields": 1}
    assert values["inputs/lidar/points"] == str(len(burst) + 2)
    assert proc.poll() is None, "the node died"

    proc.send_signal(signal.SIGINT)
    log = proc.communicate(timeout=20)[0]
    lines = log.splitlines()
    assert sum("injected into the callback" in line for line in lines) == 1, log   # logged once per kind
    assert sum("injected into the worker" in line for line in lines) == 1, log
    assert sum("'internal error: ZeroDivisionError'" in line for line in lines) == 1
    assert sum("dropped 1 input(s): bad xyz field type" in line for line in lines) == 1, log  # throttled ...
    assert sum("dropped 1 input(s): wrong fields" in line for line in lines) == 1, log  # ... per reason
    assert "Traceback" not in log

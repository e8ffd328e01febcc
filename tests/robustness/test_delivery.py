"""Inputs lost before a node's callback, from the publisher's DDS sequence numbers (fovea_ros.delivery): the
tracker's rules, and the numbers reaching the node's /diagnostics through the real subscription callback."""
from __future__ import annotations

import numpy as np

from fovea_ros.delivery import DeliveryTracker

from node_harness import NodeHarness


def info(seq):
    return {"publication_sequence_number": seq}


def test_gaps_from_one_publisher_are_losses_and_restarts_or_shared_topics_are_not():
    tracker = DeliveryTracker()
    assert [tracker.observe("/a", info(s), 1) for s in (1, 2, 5, 6, 10)] == [0, 0, 2, 0, 3]
    assert tracker.observe("/a", info(1), 1) == 0  # the publisher restarted: counting starts over
    assert tracker.observe("/a", info(3), 1) == 1
    snapshot = tracker.snapshot()["/a"]
    assert (snapshot.lost, snapshot.writer_restarts, snapshot.taken) == (6, 1, 7)
    # two publishers on one topic interleave their numbers: nothing can be attributed
    assert [tracker.observe("/b", info(s), 2) for s in (1, 1, 2, 7)] == [0, 0, 0, 0]
    assert tracker.snapshot()["/b"].unattributed == 4 and tracker.lost("/b") == 0
    # back to one publisher: a fresh reference, no loss invented from the switch
    assert tracker.observe("/b", info(40), 1) == 0 and tracker.observe("/b", info(41), 1) == 0
    # an rmw without numbers gives no estimate
    assert tracker.observe("/c", {"publication_sequence_number": None}, 1) == 0 and tracker.lost("/c") == 0


def test_the_node_reports_losses_before_its_callback_next_to_its_own_counts():
    from fovea_ros.conversions import array_to_pointcloud2
    from fovea_ros.nodes.voxel_filter_node import VoxelFilterNode

    import time

    import rclpy
    from sensor_msgs.msg import PointCloud2

    harness = NodeHarness(VoxelFilterNode)
    feeder = rclpy.create_node("feeder", context=harness.context)
    try:
        feeder.create_publisher(PointCloud2, "/lidar/points", 10)  # one publisher: its numbers can be trusted
        deadline = time.monotonic() + 10
        while harness.subscription("/lidar/points").get_publisher_count() != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        points = np.zeros(300, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
        points["x"] = np.linspace(2, 30, 300)
        for sec, seq in ((1, 1), (2, 2), (3, 6), (4, 7)):  # 3, 4, 5 never reached the callback
            msg = array_to_pointcloud2(points)
            msg.header.stamp.sec = sec
            harness.feed("/lidar/points", msg, publication_sequence_number=seq)
        values = harness.values()
        assert values["inputs/lidar/points"] == "4" and values["lost_before_callback/lidar/points"] == "3"
        assert values["lost_before_callback_total"] == "3" and values["drops_total"] == "0"
        assert "3 lost before the callback" in harness.node.diagnostic_status().message
    finally:
        feeder.destroy_node()
        harness.close()

"""Generated bad messages through each node's real callback path (in this process, the subscription's own
callback): no exception escapes as an internal error, and every input ends as exactly one of: work handed
to the worker, or a drop counted under a reason of its own.

One node per module (they load models); hypothesis draws the messages (strategies.py).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from node_harness import NodeHarness
from strategies import camera_infos, diagnostic_arrays, event_packets, images, pointclouds, stamps

FUZZ = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


def accounted_once(harness, feed) -> str:
    """Run ``feed()``; assert it ended as exactly one submit or one whole-input drop; returns which."""
    before = harness.account()
    feed()
    after = harness.account()
    new_errors = {r: n for r, n in (after.drops - before.drops).items() if r.startswith("internal error")}
    assert not new_errors, f"unguarded failure: {new_errors} ({harness.node._last_error})"
    submitted = after.submitted - before.submitted
    dropped = after.whole_input_drops() - before.whole_input_drops()
    assert (submitted, dropped) in ((1, 0), (0, 1)), (
        f"input neither processed nor counted once: submitted {submitted}, drops {dict(after.drops - before.drops)}")
    return "submitted" if submitted else next(iter(after.drops - before.drops))


# --------------------------------------------------------------------------------------------- voxel filter
@pytest.fixture(scope="module")
def voxel():
    from fovea_ros.nodes.voxel_filter_node import VoxelFilterNode

    harness = NodeHarness(VoxelFilterNode, {"min_points": 1})
    assert not harness.up_error, harness.up_error
    yield harness
    harness.close()


@FUZZ
@given(cloud=pointclouds())
def test_voxel_filter_accounts_for_every_generated_cloud(voxel, cloud):
    voxel.node._last_stamp_ns.clear()  # each example on its own; out-of-order stamps have their own test
    outcome = accounted_once(voxel, lambda: voxel.feed("/lidar/points", cloud))
    if outcome == "submitted":  # the worker's step must survive whatever passed the checks
        voxel.node.process(voxel.submitted[-1])


def test_voxel_filter_reasons_for_the_issue_cases(voxel):
    from fovea_ros.conversions import array_to_pointcloud2

    rng = np.random.default_rng(0)
    points = np.zeros(200, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    for name in "xyz":
        points[name] = rng.uniform(-30, 30, 200)
    reasons = []
    for case in ("x count 2", "x uint8", "byte order", "fine"):
        if case == "x count 2":  # room for both values: the layout is consistent, x is not a coordinate
            wide = np.zeros(200, [("x", "<f4", (2,)), ("y", "<f4"), ("z", "<f4")])
            wide["x"], wide["y"], wide["z"] = 3.0, 4.0, 1.0
            msg = array_to_pointcloud2(wide)
        else:
            msg = array_to_pointcloud2(points)
        msg.header.stamp.sec = 1000 + len(reasons)
        if case == "x uint8":
            msg.fields[0].datatype = 2
        elif case == "byte order":
            msg.is_bigendian = True
        reasons.append(accounted_once(voxel, lambda: voxel.feed("/lidar/points", msg)))
    assert reasons == ["bad xyz field type", "bad xyz field type", "implausible coordinates", "submitted"]


# ----------------------------------------------------------------------------------------------- registration
@pytest.fixture(scope="module")
def registration():
    from fovea_ros.nodes.registration_node import RegistrationNode

    harness = NodeHarness(RegistrationNode, {"method": "sc2"})  # the network is exercised by its own tests
    assert not harness.up_error, harness.up_error
    yield harness
    harness.close()


@FUZZ
@given(cloud=pointclouds())
def test_registration_accounts_for_every_generated_cloud(registration, cloud):
    registration.node._last_stamp_ns.clear()
    accounted_once(registration, lambda: registration.feed("/lidar/points", cloud))


# ----------------------------------------------------------------------------------------------- event memory
@pytest.fixture(scope="module")
def event_memory():
    from fovea_ros.nodes.event_memory_node import EventMemoryNode

    harness = NodeHarness(EventMemoryNode)
    assert not harness.up_error, harness.up_error
    yield harness
    harness.close()


@FUZZ
@given(packet=event_packets())
def test_event_memory_survives_every_generated_packet(event_memory, packet):
    """A packet is not one input to one output (windows span packets): each is decoded, rejected with a
    reason, or empty; nothing escapes, and the decoder's books add up."""
    node = event_memory.node
    before = event_memory.account()
    event_memory.feed("/event_camera/events", packet)
    after = event_memory.account()
    assert not (after.drops - before.drops).keys() & after.internal_errors().keys(), node._last_error
    stats = node.decoder.stats
    assert stats.packets == after.inputs["/event_camera/events"]
    accepted = stats.packets - sum(stats.rejected.values())
    assert accepted >= 0 and after.whole_input_drops() >= before.whole_input_drops()
    for _, window in event_memory.submitted[before.submitted:]:
        assert len(window.events) == 0 or (window.events["x"].max() < node.cfg.width
                                           and window.events["y"].max() < node.cfg.height)


# ------------------------------------------------------------------------------------------------ TPV occupancy
TPV_CAMERAS = ["/cam_front", "/cam_front_right", "/cam_front_left", "/cam_back", "/cam_back_left", "/cam_back_right"]


@pytest.fixture(scope="module")
def tpv():
    from fovea_ros.nodes.tpv_occupancy_node import TpvOccupancyNode

    harness = NodeHarness(TpvOccupancyNode)
    assert not harness.up_error, harness.up_error
    yield harness
    harness.close()


def good_camera_info(frame: str) -> CameraInfo:
    info = CameraInfo(width=16, height=12, k=[20.0, 0, 8, 0, 20.0, 6, 0, 0, 1], d=[0.0] * 5)
    info.header.frame_id = frame
    return info


def good_image(stamp, frame: str) -> Image:
    from fovea_ros.conversions import array_to_image

    msg = array_to_image(np.full((12, 16, 3), 90, np.uint8), "rgb8")
    msg.header.stamp, msg.header.frame_id = stamp, frame
    return msg


def good_cloud(stamp) -> PointCloud2:
    from fovea_ros.conversions import array_to_pointcloud2

    points = np.zeros(50, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    points["x"] = np.linspace(-10, 10, 50)
    msg = array_to_pointcloud2(points)
    msg.header.stamp, msg.header.frame_id = stamp, "base_link"
    return msg


@FUZZ
@given(info=camera_infos(), index=st.integers(0, 5))
def test_tpv_camera_info_is_used_or_counted(tpv, info, index):
    node = tpv.node
    before, calibration = tpv.account(), node.calibrations.get(index)
    tpv.feed(f"{TPV_CAMERAS[index]}/camera_info", info)
    after = tpv.account()
    assert not after.internal_errors(), node._last_error
    stored = node.calibrations.get(index) is not calibration
    new_drops = after.drops - before.drops
    assert stored != bool(new_drops), (stored, dict(new_drops))
    assert set(new_drops) <= {"invalid CameraInfo"}


@FUZZ
@given(bad_member=st.integers(0, 6), image=images(16, 12), cloud=pointclouds(), stamp=stamps(),
       own_stamp=st.integers(0, 4))
def test_tpv_every_camera_set_with_a_bad_member_is_counted(tpv, bad_member, image, cloud, stamp, own_stamp):
    """A complete set (six images + lidar, one stamp) in which one member is generated: the set forms and
    is processed or dropped with a reason; or the bad member's own stamp keeps it out, and the sync
    counts it (or it still waits)."""
    node = tpv.node
    for i, cam in enumerate(TPV_CAMERAS):
        tpv.feed(f"{cam}/camera_info", good_camera_info(f"{cam[1:]}_optical"))
    node._last_stamp_ns.clear()
    before = tpv.account()
    sync_before = sum(node.sync.drop_causes.values())
    for i, cam in enumerate(TPV_CAMERAS):
        msg = image if i == bad_member else good_image(stamp, f"{cam[1:]}_optical")
        if i == bad_member and own_stamp:  # mostly the set's stamp: the member's content is what is tested
            msg.header.stamp = stamp
        tpv.feed(f"{cam}/image_raw", msg)
    lidar = cloud if bad_member == 6 else good_cloud(stamp)
    if bad_member == 6 and own_stamp:
        lidar.header.stamp = stamp
    tpv.feed("/lidar_top/points", lidar)
    after = tpv.account()
    assert not after.internal_errors(), node._last_error
    sets = after.inputs.get("camera_set", 0) - before.inputs.get("camera_set", 0)
    handled = (after.submitted - before.submitted) + (after.whole_input_drops() - before.whole_input_drops())
    sync_drops = sum(node.sync.drop_causes.values()) - sync_before
    assert sets <= 1
    if sets:
        assert handled - sync_drops == 1, dict(after.drops - before.drops)
    else:  # the set did not form: its members wait in the synchronizer or were counted there
        assert sum(node.sync.queue_lengths()) + sync_drops >= 1
    for queue in range(len(node.sync.queue_lengths())):  # next example starts from empty queues
        node.sync._impl._queues[queue].clear()


# ------------------------------------------------------------------------------------------- occupancy flow
@pytest.fixture(scope="module")
def occupancy_flow():
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    from fovea_ros.nodes.occupancy_flow_node import OccupancyFlowNode

    harness = NodeHarness(OccupancyFlowNode, {"tf_timeout": 0.0})  # a sweep without TF is dropped at once
    assert not harness.up_error, harness.up_error
    odom = TransformStamped()
    odom.header.frame_id, odom.child_frame_id = "odom", "base_link"
    odom.transform.rotation.w = 1.0
    harness.feed("/tf_static", TFMessage(transforms=[odom]))
    yield harness
    harness.close()


@FUZZ
@given(cloud=pointclouds())
def test_occupancy_flow_accounts_for_every_generated_sweep(occupancy_flow, cloud):
    occupancy_flow.node._last_stamp_ns.clear()
    accounted_once(occupancy_flow, lambda: occupancy_flow.feed("/lidar/points", cloud))


# -------------------------------------------------------------------------------------------- event anomaly
@pytest.fixture(scope="module")
def event_anomaly():
    from fovea_ros.nodes.event_anomaly_node import EventAnomalyNode

    harness = NodeHarness(EventAnomalyNode)
    assert not harness.up_error, harness.up_error
    yield harness
    harness.close()


@FUZZ
@given(packet=event_packets(64, 48), frame=images(64, 48))
def test_event_anomaly_survives_generated_packets_and_counts_every_frame(event_anomaly, packet, frame):
    node = event_anomaly.node
    before = event_anomaly.account()
    event_anomaly.feed("/event_camera/events", packet)
    after = event_anomaly.account()
    assert not (after.drops - before.drops).keys() & after.internal_errors().keys(), node._last_error
    assert node.decoder.stats.packets == after.inputs["/event_camera/events"]
    node._last_stamp_ns.clear()
    accounted_once(event_anomaly, lambda: event_anomaly.feed("/camera/image_raw", frame))


# ------------------------------------------------------------------------------------------------- health
@pytest.fixture(scope="module")
def health():
    from fovea_ros.nodes.health_node import HealthNode

    harness = NodeHarness(HealthNode)
    assert not harness.up_error, harness.up_error
    yield harness
    harness.close()


@FUZZ
@given(msg=diagnostic_arrays())
def test_health_node_survives_whatever_other_nodes_report(health, msg):
    before = health.account()
    health.feed("/diagnostics", msg)
    assert not (health.account().drops - before.drops).keys() & health.account().internal_errors().keys(), \
        health.node._last_error

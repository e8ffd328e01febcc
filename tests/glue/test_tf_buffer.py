"""TfBuffer: chains, inverse direction, common ancestors, interpolation against hand-computed values,
static vs dynamic edges, latest common time, cache pruning, errors; plus generated consistency checks."""
import importlib.util
import math

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped
from hypothesis import given, settings
from hypothesis import strategies as st

from fovea_core.geometry.transforms import quaternion_to_matrix, rigid_transform
from fovea_ros.tf_buffer import (
    ExtrapolationError,
    FrameNotFoundError,
    NoPathError,
    TfBuffer,
    subscribe_tf,
    transform_stamped_to_matrix,
)

S = 1_000_000_000


def yaw(angle):
    return (0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2))


def edge(parent, child, stamp_ns, translation=(0.0, 0.0, 0.0), rotation=(0.0, 0.0, 0.0, 1.0)):
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, S)
    t, r = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = translation
    r.x, r.y, r.z, r.w = rotation
    return msg


@pytest.fixture
def robot():
    """map -> odom (dynamic, 0..2 s), odom -> base_link (dynamic, 0..2 s), base_link -> lidar and
    base_link -> camera (static)."""
    tf = TfBuffer(backend="fovea")
    for stamp in (0, 1 * S, 2 * S):
        tf.set_transform(edge("map", "odom", stamp, (10.0, 0.0, 0.0)))
    tf.set_transform(edge("odom", "base_link", 0, (0.0, 0.0, 0.0), yaw(0.0)))
    tf.set_transform(edge("odom", "base_link", 1 * S, (2.0, 0.0, 0.0), yaw(math.pi / 2)))
    tf.set_transform(edge("odom", "base_link", 2 * S, (2.0, 2.0, 0.0), yaw(math.pi)))
    tf.set_transform_static(edge("base_link", "lidar", 0, (0.5, 0.0, 1.8)))
    tf.set_transform_static(edge("base_link", "camera", 0, (1.0, 0.0, 1.5), (-0.5, 0.5, -0.5, 0.5)))
    return tf


def test_backend_is_fovea_without_tf2_ros():
    assert TfBuffer().backend == ("tf2_ros" if importlib.util.find_spec("tf2_ros") else "fovea")
    with pytest.raises(ValueError, match="backend"):
        TfBuffer(backend="magic")


def test_interpolation_between_samples_matches_hand_computation(robot):
    # At 0.25 s odom->base_link is a quarter of the way from (0,0,0), yaw 0 to (2,0,0), yaw 90 degrees:
    # (0.5, 0, 0) and yaw 22.5 degrees.
    msg = robot.lookup_transform("odom", "base_link", S // 4)
    assert msg.header.frame_id == "odom" and msg.child_frame_id == "base_link"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 250_000_000)
    t, r = msg.transform.translation, msg.transform.rotation
    assert (t.x, t.y, t.z) == pytest.approx((0.5, 0.0, 0.0))
    assert (r.x, r.y, r.z, r.w) == pytest.approx(yaw(math.radians(22.5)))


def test_chain_through_static_and_dynamic_edges(robot):
    # lidar origin in map at 1 s: map->odom (+10 x), odom->base_link at (2,0,0) facing +y, lidar 0.5 m
    # ahead of base_link and 1.8 m up: ahead is +y in odom, so (12, 0.5, 1.8).
    T_map_lidar = robot.lookup_matrix("map", "lidar", 1 * S)
    np.testing.assert_allclose(T_map_lidar[:3, 3], [12.0, 0.5, 1.8], atol=1e-12)
    np.testing.assert_allclose(T_map_lidar[:3, :3], quaternion_to_matrix(yaw(math.pi / 2)), atol=1e-12)
    # Inverse direction gives the inverse transform.
    np.testing.assert_allclose(robot.lookup_matrix("lidar", "map", 1 * S) @ T_map_lidar, np.eye(4), atol=1e-12)


def test_common_ancestor_edges_above_it_are_not_needed(robot):
    # camera and lidar meet at base_link; both edges are static, so any time works, even one where the
    # dynamic edges above base_link have no data.
    T_camera_lidar = robot.lookup_matrix("camera", "lidar", 1000 * S)
    T_base_camera = rigid_transform((1.0, 0.0, 1.5), (-0.5, 0.5, -0.5, 0.5))
    T_base_lidar = rigid_transform((0.5, 0.0, 1.8), (0, 0, 0, 1))
    np.testing.assert_allclose(T_camera_lidar, np.linalg.inv(T_base_camera) @ T_base_lidar, atol=1e-12)
    # The optical frame convention: lidar is 0.5 m behind the camera, i.e. at z = -0.5 (z forward).
    np.testing.assert_allclose(T_camera_lidar[:3, 3], [0.0, -0.3, -0.5], atol=1e-12)


def test_same_frame_is_identity(robot):
    np.testing.assert_array_equal(robot.lookup_matrix("lidar", "lidar", 123), np.eye(4))


def test_extrapolation_errors_say_direction_and_amount(robot):
    robot.set_transform(edge("odom", "base_link", 3 * S, (3.0, 0.0, 0.0)))  # odom->base_link now ends at 3 s
    with pytest.raises(ExtrapolationError) as future:
        robot.lookup_matrix("map", "lidar", 2 * S + S // 2)  # map->odom ends at 2 s
    assert future.value.direction == "future" and future.value.by_ns == S // 2
    assert "0.5 s into the future" in str(future.value) and "'odom'" in str(future.value)
    assert isinstance(future.value, LookupError)
    late = TfBuffer(backend="fovea")
    late.set_transform(edge("a", "b", 5 * S))
    late.set_transform(edge("a", "b", 6 * S))
    with pytest.raises(ExtrapolationError, match="1.25 s into the past") as past:
        late.lookup_matrix("a", "b", 3 * S + 3 * S // 4)
    assert past.value.direction == "past" and past.value.by_ns == S + S // 4


def test_unknown_frame_and_disconnected_trees(robot):
    with pytest.raises(FrameNotFoundError, match="'radar'"):
        robot.lookup_matrix("map", "radar", S)
    robot.set_transform_static(edge("world", "gps", 0))
    with pytest.raises(NoPathError, match="rooted at 'map'"):
        robot.lookup_matrix("gps", "lidar", S)
    assert isinstance(NoPathError("x"), LookupError) and isinstance(FrameNotFoundError("x"), LookupError)
    assert not robot.can_transform("gps", "lidar", S) and robot.can_transform("map", "lidar", S)


def test_latest_common_time(robot):
    robot.set_transform(edge("odom", "base_link", 5 * S, (0.0, 0.0, 0.0)))  # base_link runs ahead of odom
    T, stamp = robot.lookup_matrix_and_stamp("map", "lidar", None)
    assert stamp == 2 * S  # map->odom's newest sample
    np.testing.assert_allclose(T, robot.lookup_matrix("map", "lidar", 2 * S))
    assert robot.lookup_matrix_and_stamp("camera", "lidar", 0)[1] == 0  # all static: time 0


def test_static_is_valid_at_any_time_and_replaced_by_newer_static(robot):
    np.testing.assert_allclose(robot.lookup_matrix("base_link", "lidar", 0)[:3, 3], [0.5, 0, 1.8])
    np.testing.assert_allclose(robot.lookup_matrix("base_link", "lidar", 10**6 * S)[:3, 3], [0.5, 0, 1.8])
    robot.set_transform_static(edge("base_link", "lidar", 7 * S, (0.6, 0.0, 1.7)))
    np.testing.assert_allclose(robot.lookup_matrix("base_link", "lidar", 0)[:3, 3], [0.6, 0, 1.7])


def test_single_sample_is_exact_only_at_its_stamp():
    tf = TfBuffer(backend="fovea")
    tf.set_transform(edge("a", "b", 4 * S, (1.0, 2.0, 3.0)))
    np.testing.assert_allclose(tf.lookup_matrix("a", "b", 4 * S)[:3, 3], [1, 2, 3])
    with pytest.raises(ExtrapolationError):
        tf.lookup_matrix("a", "b", 4 * S + 1)


def test_cache_duration_prunes_and_rejects_old_samples():
    tf = TfBuffer(cache_duration_s=10.0, backend="fovea")
    for second in range(16):
        assert tf.set_transform(edge("odom", "base_link", second * S, (float(second), 0.0, 0.0)))
    with pytest.raises(ExtrapolationError, match="into the past"):
        tf.lookup_matrix("odom", "base_link", 4 * S)  # pruned: older than 15 s - 10 s
    np.testing.assert_allclose(tf.lookup_matrix("odom", "base_link", 5 * S)[:3, 3], [5, 0, 0])
    assert not tf.set_transform(edge("odom", "base_link", 2 * S))
    assert tf.rejected_old == 1


def test_same_stamp_replaces_and_parent_switch_uses_earlier_sample():
    tf = TfBuffer(backend="fovea")
    tf.set_transform(edge("odom", "base_link", 0, (1.0, 0.0, 0.0)))
    tf.set_transform(edge("odom", "base_link", 0, (2.0, 0.0, 0.0)))
    tf.set_transform(edge("map", "base_link", 2 * S, (9.0, 0.0, 0.0)))
    tf.set_transform_static(edge("map", "odom", 0, (100.0, 0.0, 0.0)))
    # Between 0 and 2 s the two samples name different parents: the earlier one (odom, x = 2) is used.
    np.testing.assert_allclose(tf.lookup_matrix("odom", "base_link", S)[:3, 3], [2, 0, 0])
    np.testing.assert_allclose(tf.lookup_matrix("map", "base_link", 2 * S)[:3, 3], [9, 0, 0])


def test_invalid_transforms_are_rejected_not_raised():
    tf = TfBuffer(backend="fovea")
    assert not tf.set_transform(edge("a", "a", 0))
    assert not tf.set_transform(edge("", "b", 0))
    assert not tf.set_transform(edge("a", "b", 0, (math.nan, 0.0, 0.0)))
    assert not tf.set_transform_static(edge("a", "b", 0, rotation=(0.0, 0.0, 0.0, 0.0)))
    assert tf.rejected_invalid == 4 and tf.known_frames() == set()


def test_tf_message_and_subscription_wiring():
    class TFMessageLike:  # tf2_msgs/TFMessage has just ``transforms``
        def __init__(self, transforms):
            self.transforms = transforms

    tf = TfBuffer(backend="fovea")
    assert tf.add_tf_message(TFMessageLike([edge("a", "b", 0), edge("b", "c", 0, (1.0, 0.0, 0.0))]), is_static=True) == 2
    np.testing.assert_allclose(tf.lookup_matrix("a", "c", 5 * S)[:3, 3], [1, 0, 0])
    if importlib.util.find_spec("tf2_msgs") is None:
        with pytest.raises(ImportError):  # the helper needs tf2_msgs; the module itself does not
            subscribe_tf(object(), tf)
        return
    created = []

    class FakeNode:
        def create_subscription(self, msg_type, topic, callback, qos):
            created.append((topic, qos.durability))
            return callback

    callbacks = subscribe_tf(FakeNode(), tf)
    assert [topic for topic, _ in created] == ["/tf", "/tf_static"]
    callbacks[0](TFMessageLike([edge("c", "d", 1 * S, (0.0, 2.0, 0.0))]))
    np.testing.assert_allclose(tf.lookup_matrix("a", "d", 1 * S)[:3, 3], [1, 2, 0])


# ----------------------------------------------------------------------------------- generated trees

pose = st.tuples(st.tuples(*[st.floats(-5, 5)] * 3),
                 st.tuples(*[st.floats(-1, 1)] * 4).filter(lambda q: np.linalg.norm(q) > 0.2))


@settings(max_examples=40, deadline=None)
@given(parents=st.lists(st.integers(0, 10), min_size=2, max_size=6), poses=st.lists(st.tuples(pose, pose), min_size=6,
       max_size=6), fraction=st.floats(0, 1), a=st.integers(0, 6), b=st.integers(0, 6), c=st.integers(0, 6))
def test_generated_trees_are_consistent(parents, poses, fraction, a, b, c):
    """Frame i+1 hangs under a random earlier frame with samples at 0 and 1 s: any lookup equals the
    chain through a third frame, and the reverse lookup is its inverse."""
    tf = TfBuffer(backend="fovea")
    for child, parent_choice in enumerate(parents, start=1):
        parent = parent_choice % child
        for stamp, (translation, rotation) in zip((0, S), poses[child - 1]):
            tf.set_transform(edge(f"f{parent}", f"f{child}", stamp, translation, rotation))
    frames = len(parents) + 1
    fa, fb, fc = f"f{a % frames}", f"f{b % frames}", f"f{c % frames}"
    stamp = int(fraction * S)
    T_ab, T_bc, T_ac = (tf.lookup_matrix(x, y, stamp) for x, y in ((fa, fb), (fb, fc), (fa, fc)))
    np.testing.assert_allclose(T_ab @ T_bc, T_ac, atol=1e-9)
    np.testing.assert_allclose(tf.lookup_matrix(fb, fa, stamp) @ T_ab, np.eye(4), atol=1e-9)
    np.testing.assert_allclose(T_ac[:3, :3] @ T_ac[:3, :3].T, np.eye(3), atol=1e-9)


def test_transform_stamped_matrix_round_trip(robot):
    msg = robot.lookup_transform("map", "camera", S // 3)
    np.testing.assert_allclose(transform_stamped_to_matrix(msg), robot.lookup_matrix("map", "camera", S // 3),
                               atol=1e-12)


def test_rejections_are_counted_by_reason_and_reported_per_transform():
    class TFMessageLike:
        def __init__(self, transforms):
            self.transforms = transforms

    tf = TfBuffer(backend="fovea", cache_duration_s=1.0)
    reports = []
    batch = TFMessageLike([edge("base_link", "cam", 0, rotation=(math.nan, 0.0, 0.0, 1.0)),
                           edge("base_link", "lidar", 0), edge("base_link", "base_link", 0)])
    assert tf.add_tf_message(batch, True, lambda *r: reports.append(r)) == 1
    assert tf.rejections == {"non-finite values": 1, "parent equals child": 1}
    assert reports == [("non-finite values", "/tf_static: 'base_link' -> 'cam'"),
                       ("parent equals child", "/tf_static: 'base_link' -> 'base_link'")]
    tf.set_transform(edge("odom", "base_link", 5 * S))
    assert not tf.set_transform(edge("odom", "base_link", 3 * S))
    assert tf.rejected_old == 1 and tf.rejected_invalid == 2
    assert tf.last_rejection == "older than the cache: 'odom' -> 'base_link'"


def test_the_subscription_counts_rejected_transforms_as_node_drops():
    from tf2_msgs.msg import TFMessage

    class FakeFoveaNode:
        def __init__(self):
            self.callbacks, self.drops = {}, []

        def create_subscription(self, msg_type, topic, callback, qos):
            self.callbacks[topic] = callback
            return callback

        def drop(self, reason, detail="", n=1):
            self.drops.append((reason, detail))

    node, tf = FakeFoveaNode(), TfBuffer(backend="fovea")
    subscribe_tf(node, tf)
    node.callbacks["/tf_static"](TFMessage(transforms=[edge("base_link", "cam", 0, rotation=(0.0, 0.0, 0.0, 0.0))]))
    node.callbacks["/tf"](TFMessage(transforms=[edge("", "x", 0), edge("odom", "base_link", 0)]))
    assert node.drops == [("rejected transform: zero quaternion", "/tf_static: 'base_link' -> 'cam'"),
                          ("rejected transform: empty frame name", "/tf: '' -> 'x'")]
    assert tf.known_frames() == {"odom", "base_link"}

"""Each node in its own process, over real DDS: a burst of bad inputs, then valid ones. The node stays alive,
its output resumes, every bad input is counted under the reason it deserves, and nothing is lost silently:
everything sent was received or counted lost before the callback, and everything received was processed
or dropped with a reason. One process per node; the cases run one after another against it.

Transport is reliable here, so that the reasons can be asserted exactly; the overload phase then makes the
node's reader history overflow on purpose, which the publisher's sequence numbers must account for.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from fovea_core.paths import repo_root
from fovea_ros.conversions import array_to_image, array_to_pointcloud2

pytestmark = pytest.mark.ros
RELIABLE = QoSProfile(depth=50)
NON_RATE_REASONS = ("non-finite points removed",)


class Diagnostics:
    def __init__(self, peer, name: str) -> None:
        self.peer, self.name, self.messages = peer, name, []
        peer.node.create_subscription(DiagnosticArray, "/diagnostics", self.messages.append, 50)

    def values(self) -> dict[str, str]:
        mine = [s for d in list(self.messages) for s in d.status if s.name == self.name]
        return {kv.key: kv.value for kv in mine[-1].values} if mine else {}

    def wait(self, condition, timeout: float = 30.0) -> dict[str, str]:
        assert self.peer.wait_for(lambda: condition(self.values()), timeout), f"diagnostics: {self.values()}"
        return self.values()


def drops(values: dict[str, str]) -> dict[str, int]:
    return {k.removeprefix("drops/"): int(v) for k, v in values.items() if k.startswith("drops/")}


def whole_input_drops(values) -> int:
    return sum(n for reason, n in drops(values).items() if reason not in NON_RATE_REASONS)


def start(peer, start_python, module: str, *params: str):
    args = ["-m", module, "--ros-args", "-p", "diagnostics_period:=0.2", "-p", "sensor_qos:=reliable"]
    for p in params:
        args += ["-p", p]
    return start_python(*args, env={"FOVEA_ROOT": str(repo_root())})


def paced(pub, msgs, period: float = 0.03) -> None:
    for msg in msgs:
        pub.publish(msg)
        time.sleep(period)


# ------------------------------------------------------------------------------------------------- clouds
def scan(sec: int, n: int = 3000, seed: int = 0) -> PointCloud2:
    rng = np.random.default_rng(seed)
    points = np.zeros(n, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    points["x"], points["y"], points["z"] = rng.uniform(-30, 30, (3, n))
    msg = array_to_pointcloud2(points)
    msg.header.frame_id, msg.header.stamp.sec = "lidar", sec
    return msg


def bad_clouds(first_sec: int) -> list[tuple[PointCloud2, str]]:
    """(message, the reason the node must count it under), stamps increasing from ``first_sec``."""
    out = []

    def add(reason, change):
        msg = scan(first_sec + len(out))
        change(msg)
        out.append((msg, reason))

    wide = np.zeros(500, [("x", "<f4", (2,)), ("y", "<f4"), ("z", "<f4")])  # x of count 2, with room for it
    wide["x"], wide["y"], wide["z"] = 3.0, 4.0, 1.0
    msg = array_to_pointcloud2(wide)
    msg.header.frame_id, msg.header.stamp.sec = "lidar", first_sec
    out.append((msg, "bad xyz field type"))
    add("bad xyz field type", lambda m: setattr(m.fields[1], "datatype", PointField.UINT8))
    add("implausible coordinates", lambda m: setattr(m, "is_bigendian", True))
    add("wrong fields", lambda m: setattr(m, "fields", [PointField(name="a", offset=0, datatype=7, count=1)]))
    add("malformed cloud", lambda m: setattr(m, "data", bytes(m.data)[:-7]))
    add("malformed cloud", lambda m: setattr(m.fields[2], "datatype", 0))
    add("malformed cloud", lambda m: setattr(m.fields[3], "name", "x"))
    add("empty cloud", lambda m: (setattr(m, "width", 0), setattr(m, "row_step", 0), setattr(m, "data", b"")))
    nan = scan(first_sec + len(out), n=50)
    points = np.frombuffer(bytes(nan.data), "<f4").copy()
    points[:] = np.nan
    nan.data = points.tobytes()
    out.append((nan, "empty cloud"))
    older = scan(first_sec + len(out) - 3)  # 3 s older than the last: within time_jump_reset, not a clock reset
    out.append((older, "out-of-order stamp"))
    return out


def expected_reasons(cases) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, reason in cases:
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def test_voxel_filter_burst_then_valid_then_overload(peer, start_python):
    outputs = []
    peer.node.create_subscription(PointCloud2, "/lidar/points_filtered", outputs.append, RELIABLE)
    diag = Diagnostics(peer, "fovea/voxel_filter")
    pub = peer.node.create_publisher(PointCloud2, "/lidar/points", RELIABLE)
    proc = start(peer, start_python, "fovea_ros.nodes.voxel_filter_node", "queue_size:=100")
    peer.wait_for_subscribers(pub, timeout=60)
    assert peer.wait_for(lambda: peer.node.count_publishers("/lidar/points_filtered") >= 1, 30)
    time.sleep(0.5)

    cases = bad_clouds(100)
    paced(pub, [m for m, _ in cases])
    paced(pub, [scan(200 + i, seed=i) for i in range(3)], period=0.15)
    assert peer.wait_for(lambda: len(outputs) == 3, 20), f"{len(outputs)} outputs; {diag.values()}"
    assert [m.header.stamp.sec for m in outputs] == [200, 201, 202]
    sent = len(cases) + 3
    values = diag.wait(lambda v: v.get("processed") == "3" and v.get("inputs/lidar/points") == str(sent))
    got = drops(values)
    assert {r: got.get(r, 0) for r in expected_reasons(cases)} == expected_reasons(cases)
    assert int(values["lost_before_callback_total"]) == 0 and whole_input_drops(values) == len(cases)
    assert not [r for r in got if r.startswith("internal error")]

    # overload: big clouds as fast as they can be written, then one more after a pause (so a lost tail shows)
    big = [scan(300 + i, n=60_000, seed=i) for i in range(60)]
    for msg in big:
        pub.publish(msg)
    time.sleep(1.0)
    pub.publish(scan(400))
    total = sent + len(big) + 1

    def settled(v):
        return (v.get("backlog") == "0" and int(v.get("inputs/lidar/points", 0))
                + int(v.get("lost_before_callback/lidar/points", 0)) == total
                and int(v["processed"]) + whole_input_drops(v) == int(v["inputs/lidar/points"]))
    values = diag.wait(settled, timeout=60)
    # every cloud sent is a cloud received or one the publisher's numbering shows lost before the callback
    assert int(values["inputs/lidar/points"]) + int(values["lost_before_callback/lidar/points"]) == total
    assert proc.poll() is None, "the node died"


def real_scans(count: int) -> list[PointCloud2]:
    from rclpy.serialization import deserialize_message

    from fovea_ros.bag.reader import BagReader

    with BagReader(repo_root() / "bags" / "registration_pairs") as reader:
        scans = [deserialize_message(m.data, PointCloud2) for m in reader.messages(["/lidar/points"])]
    return scans[:count]


def test_registration_burst_then_valid(peer, start_python):
    from nav_msgs.msg import Odometry

    outputs = []
    peer.node.create_subscription(Odometry, "/registration/odom", outputs.append, RELIABLE)
    diag = Diagnostics(peer, "fovea/registration")
    pub = peer.node.create_publisher(PointCloud2, "/lidar/points", RELIABLE)
    proc = start(peer, start_python, "fovea_ros.nodes.registration_node", "queue_size:=20")
    peer.wait_for_subscribers(pub, timeout=90)
    time.sleep(0.5)
    valid = real_scans(1)  # the first scan of a run is an output (the odometry origin)
    first = valid[0].header.stamp.sec - 50
    cases = [(m, "degenerate scan" if r == "empty cloud" else r) for m, r in bad_clouds(first)]
    for msg, _ in cases:
        msg.header.frame_id = valid[0].header.frame_id
    paced(pub, [m for m, _ in cases])
    paced(pub, valid, period=0.5)
    assert peer.wait_for(lambda: len(outputs) >= 1, 60), f"no odometry; {diag.values()}"
    sent = len(cases) + len(valid)
    values = diag.wait(lambda v: v.get("backlog") == "0" and v.get("inputs/lidar/points") == str(sent)
                       and len(outputs) + whole_input_drops(v) == sent, timeout=60)
    got = drops(values)
    assert {r: got.get(r, 0) for r in expected_reasons(cases)} == expected_reasons(cases)
    assert int(values["lost_before_callback_total"]) == 0
    assert not [r for r in got if r.startswith("internal error")]
    assert proc.poll() is None, "the node died"


# ------------------------------------------------------------------------------------------- event packets
def test_event_memory_burst_restart_and_seq_jump(peer, start_python):
    from event_camera_msgs.msg import EventPacket

    from fovea_core.events.arrays import make_events
    from fovea_core.events.packets import PacketStreamEncoder

    outputs = []
    peer.node.create_subscription(Image, "/event_memory/segmentation", outputs.append, RELIABLE)
    diag = Diagnostics(peer, "fovea/event_memory")
    pub = peer.node.create_publisher(EventPacket, "/event_camera/events", QoSProfile(depth=200))
    proc = start(peer, start_python, "fovea_ros.nodes.event_memory_node", "queue_size:=50")
    peer.wait_for_subscribers(pub, timeout=90)
    assert peer.wait_for(lambda: peer.node.count_publishers("/event_memory/segmentation") >= 1, 30)
    time.sleep(0.5)

    rng = np.random.default_rng(0)
    t0 = 1_800_000_000 * 1_000_000_000  # ROS time of sensor time 0
    period = 5_000_000

    def run(encoder, first_packet, count, sensor_t0):
        out = []
        for i in range(count):
            t = sensor_t0 + (first_packet + i) * period + np.sort(rng.integers(0, period // 1000, 30)) * 1000
            events = make_events(rng.integers(0, 64, 30), rng.integers(0, 48, 30), t, rng.integers(0, 2, 30))
            raw = encoder.encode(events, t0 + int(t[0]))
            out.append(EventPacket(header=_header(raw.stamp_ns, raw.frame_id), height=48, width=64, seq=raw.seq,
                                   time_base=raw.time_base, encoding=raw.encoding, is_bigendian=False,
                                   events=raw.events))
        return out

    encoder = PacketStreamEncoder("evt3", 64, 48)
    good = run(encoder, 0, 8, 0)
    bad = [EventPacket(header=good[3].header, width=64, height=48, seq=3, encoding="evt3",
                       events=rng.integers(0, 256, 2048, dtype=np.uint8).tobytes()),  # random bytes
           EventPacket(header=good[3].header, width=0, height=48, seq=4, encoding="evt3", events=good[3].events),
           EventPacket(header=good[3].header, width=64, height=48, seq=5, encoding="evt3",
                       events=bytes(good[3].events)[:-1])]
    for i, packet in enumerate(good[3:]):  # the valid stream goes on after the bad packets, seq counting on
        packet.seq = 6 + i
    jump = run(encoder, 8, 4, 0)
    for i, packet in enumerate(jump):
        packet.seq = 1011 + i  # +1000 with no time for it
    restarted = run(PacketStreamEncoder("evt3", 64, 48), 0, 6, 0)  # driver restart: seq 0, sensor clock 0
    for packet in restarted:
        packet.header = _header(stamp_ns(packet.header) + 10 * 1_000_000_000, "event_camera_optical")  # 10 s on
    stream = good[:3] + bad + good[3:] + jump + restarted
    paced(pub, stream, period=0.02)
    values = diag.wait(lambda v: v.get("inputs/event_camera/events") == str(len(stream)) and v.get("backlog") == "0"
                       and v.get("sensor_restarts") == "1", timeout=60)
    got = drops(values)
    assert got.get("malformed packet: unknown evt3 word code") == 1, got
    assert got.get("malformed packet: sensor size 0 (width or height)") == 1
    assert got.get("malformed packet: payload not whole words (cut short?)") == 1
    assert values["lost_packets_seq"] == "0" and values["seq_jumps"] == "1" and "drops/lost packets (seq gap)" not in values
    # the clock never moved with the bad packets: no silence was jumped over, windows follow the packets
    assert values["skipped_windows_silence"] == "0", values
    assert int(values["lost_before_callback_total"]) == 0
    assert not [r for r in got if r.startswith("internal error")]
    assert peer.wait_for(lambda: len(outputs) >= 10, 30), f"{len(outputs)} windows out"
    last = stamp_ns(outputs[-1].header)
    assert abs(last - stamp_ns(restarted[-1].header)) < 20 * period  # output resumed after the restart
    assert proc.poll() is None, "the node died"


def _header(stamp: int, frame: str):
    from std_msgs.msg import Header

    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = divmod(int(stamp), 1_000_000_000)
    return h


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


# ------------------------------------------------------------------------------------------------------ TPV
CAMS = ["cam_front", "cam_front_right", "cam_front_left", "cam_back", "cam_back_left", "cam_back_right"]


def test_tpv_bad_tf_bad_members_and_incomplete_sets_are_all_counted(peer, start_python):
    from tf2_msgs.msg import TFMessage

    outputs = []
    peer.node.create_subscription(PointCloud2, "/tpv/occupancy", outputs.append, RELIABLE)
    diag = Diagnostics(peer, "fovea/tpv_occupancy")
    images = {c: peer.node.create_publisher(Image, f"/{c}/image_raw", RELIABLE) for c in CAMS}
    infos = {c: peer.node.create_publisher(CameraInfo, f"/{c}/camera_info", RELIABLE) for c in CAMS}
    lidar = peer.node.create_publisher(PointCloud2, "/lidar_top/points", RELIABLE)
    tf_static = peer.node.create_publisher(TFMessage, "/tf_static",
                                           QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    proc = start(peer, start_python, "fovea_ros.nodes.tpv_occupancy_node", "sync_queue_size:=2", "queue_size:=20")
    peer.wait_for_subscribers(lidar, timeout=120)
    for pub in (*images.values(), *infos.values(), tf_static):
        peer.wait_for_subscribers(pub, timeout=30)
    time.sleep(0.5)

    nan_rotation = TransformStamped()
    nan_rotation.header.frame_id, nan_rotation.child_frame_id = "base_link", "cam_front_optical"
    nan_rotation.transform.rotation.x = math.nan
    tf_static.publish(TFMessage(transforms=[nan_rotation]))
    bad_info = CameraInfo(width=16, height=12)  # K all zero: no pinhole camera
    infos["cam_front"].publish(bad_info)
    time.sleep(0.2)
    for c in CAMS:
        info = CameraInfo(width=16, height=12, k=[20.0, 0, 8, 0, 20.0, 6, 0, 0, 1], d=[0.0] * 5)
        info.header.frame_id = f"{c}_optical"
        infos[c].publish(info)
    time.sleep(0.5)

    sent = {"sets": 0, "messages": 0}

    def publish_set(sec, *, skip=(), late=(), lidar_change=None):
        for c in CAMS:
            if c in skip:
                continue
            msg = array_to_image(np.full((12, 16, 3), 80, np.uint8), "rgb8")
            msg.header.frame_id = f"{c}_optical"
            msg.header.stamp.sec = sec + (1 if c in late else 0)
            images[c].publish(msg)
            sent["messages"] += 1
        if "lidar" not in skip:
            cloud = scan(sec, n=200)
            cloud.header.frame_id = "base_link"
            if lidar_change:
                lidar_change(cloud)
            lidar.publish(cloud)
            sent["messages"] += 1
        time.sleep(0.3)

    publish_set(100, lidar_change=lambda m: setattr(m, "fields", [PointField(name="a", offset=0, datatype=7, count=1)]))
    publish_set(101, lidar_change=lambda m: setattr(m.fields[0], "count", 2))
    for sec in range(102, 106):  # a camera missing, one stamped 1 s late, the lidar missing
        publish_set(sec, skip=("cam_back_right",))
    for sec in range(106, 110):
        publish_set(sec, late=("cam_back",))
    for sec in range(110, 114):
        publish_set(sec, skip=("lidar",))
    publish_set(120)
    publish_set(121)
    assert peer.wait_for(lambda: len(outputs) >= 2, 90), f"{len(outputs)} outputs; {diag.values()}"

    values = diag.wait(lambda v: v.get("backlog") == "0" and int(v.get("processed", 0)) >= 2, timeout=60)
    got = drops(values)
    assert got.get("rejected transform: non-finite values") == 1, got
    assert got.get("invalid CameraInfo") == 1
    assert got.get("wrong fields") == 1 and got.get("bad xyz field type") == 1
    assert got.get("sync: missing member /cam_back_right/image_raw", 0) >= 1
    assert got.get("sync: missing member /lidar_top/points", 0) >= 1
    assert any(r.startswith("sync: outside slop") for r in got), got
    assert not [r for r in got if r.startswith("internal error")]
    # every image and cloud is in a set that formed, a counted sync drop, or still waiting in the synchronizer
    sync_drops = sum(n for r, n in got.items() if r.startswith("sync: "))
    members = 7 * int(values["inputs/camera_set"]) + sync_drops + int(values["sync_waiting"])
    assert members == sent["messages"], (members, sent, values)
    set_drops = sum(n for r, n in got.items() if not r.startswith(("sync: ", "rejected transform", "invalid CameraInfo")))
    assert int(values["processed"]) + set_drops == int(values["inputs/camera_set"])
    assert int(values["lost_before_callback_total"]) == 0
    assert proc.poll() is None, "the node died"

"""Hypothesis strategies for the messages a node can be sent: PointCloud2 layouts, Images, CameraInfo,
EventPackets and header stamps, from plausible to hostile.

Each strategy mixes well-formed messages with random values (so the node's own checks are reached), and
messages whose size fields, types, counts, offsets, byte order or encodings are wrong in the ways drivers,
bridges and damaged bags get them wrong. Messages are real ``sensor_msgs`` / ``event_camera_msgs`` objects.
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from hypothesis import strategies as st
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}  # PointField datatype -> bytes
FIELD_NAMES = ("x", "y", "z", "intensity", "ring", "t", "rgb", "label", "", "x")
ENCODINGS = ("rgb8", "bgr8", "mono8", "mono16", "rgba8", "bgra8", "8UC3", "16UC1", "32FC1", "32FC3", "yuv422",
             "bayer_rggb8", "jpeg", "", "RGB8")


def stamps(base_sec: int = 1_700_000_000):
    """Header stamps: increasing ones near ``base_sec``, repeats, older ones, zero and far-off values."""
    return st.one_of(
        st.builds(lambda s, n: Time(sec=s, nanosec=n), st.integers(base_sec, base_sec + 100), st.integers(0, 999_999_999)),
        st.just(Time(sec=0, nanosec=0)),
        st.builds(lambda s: Time(sec=s, nanosec=0), st.integers(-2**31, 2**31 - 1)),
    )


def _header(draw, frame=("lidar", "", "base_link", "x" * 300)) -> Header:
    return Header(stamp=draw(stamps()), frame_id=draw(st.sampled_from(frame)))


CLOUD_MUTATIONS = ("none", "none", "none", "none", "all_nan", "some_inf", "field_type", "field_count",
                   "count_zero", "field_offset", "point_step", "row_step", "data_short", "data_long", "flag_endianness",
                   "no_xyz", "duplicate_field", "bad_datatype", "huge_width", "empty", "height_zero", "huge_values",
                   "random_layout")


@st.composite
def pointclouds(draw, max_points: int = 64):
    """A well-formed cloud (float32/64 x, y, z, optional extra fields, NaNs, organised or not), then at most
    one thing broken the way drivers, bridges and damaged bags break it (``CLOUD_MUTATIONS``)."""
    from fovea_ros.conversions import array_to_pointcloud2

    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    coord = draw(st.sampled_from(["<f4", "<f8", ">f4"]))
    extras = draw(st.lists(st.sampled_from([("intensity", "<f4"), ("ring", "<u2"), ("t", "<f8"),
                                             ("rgb", "u1", (3,)), ("label", "u1")]), unique=True, max_size=3))
    dtype = np.dtype([("x", coord), ("y", coord), ("z", coord), *extras])
    height = draw(st.sampled_from([1, 1, 1, 2, 4]))
    width = draw(st.integers(1, max_points))
    points = np.zeros((height, width) if height > 1 else width, dtype)
    for name in dtype.names:
        points[name] = rng.uniform(-50, 50, points[name].shape) if dtype[name].kind == "f" else 7
    nan_rows = rng.random(points.shape) < draw(st.sampled_from([0.0, 0.0, 0.1, 0.5]))
    points["x"][nan_rows] = np.nan
    msg = array_to_pointcloud2(points, _header(draw), is_bigendian=coord.startswith(">"))
    mutation = draw(st.sampled_from(CLOUD_MUTATIONS))
    fields = list(msg.fields)
    target = draw(st.integers(0, len(fields) - 1))
    if mutation == "all_nan":
        points["y"] = np.nan
        msg = array_to_pointcloud2(points, msg.header, is_bigendian=bool(msg.is_bigendian))
    elif mutation == "some_inf":
        points["z"][rng.random(points.shape) < 0.3] = np.inf
        msg = array_to_pointcloud2(points, msg.header, is_bigendian=bool(msg.is_bigendian))
    elif mutation == "huge_values":
        points["x"] = 1e12
        msg = array_to_pointcloud2(points, msg.header, is_bigendian=bool(msg.is_bigendian))
    elif mutation == "field_type":
        fields[target].datatype = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8]))
    elif mutation == "field_count":
        fields[target].count = draw(st.sampled_from([2, 3, 2**31]))
    elif mutation == "count_zero":
        fields[target].count = 0
    elif mutation == "field_offset":
        fields[target].offset = draw(st.sampled_from([1, 3, msg.point_step, 2**32 - 1]))
    elif mutation == "point_step":
        msg.point_step = draw(st.sampled_from([0, 1, msg.point_step - 1, msg.point_step + 4, 2**32 - 1]))
    elif mutation == "row_step":
        msg.row_step = draw(st.sampled_from([0, msg.row_step - 1, msg.row_step + 8, 2**32 - 1]))
    elif mutation == "data_short":
        msg.data = bytes(msg.data)[:-draw(st.integers(1, 9))]
    elif mutation == "data_long":
        msg.data = bytes(msg.data) + b"\0" * draw(st.integers(1, 9))
    elif mutation == "flag_endianness":
        msg.is_bigendian = not msg.is_bigendian
    elif mutation == "no_xyz":
        for f in fields[:3]:
            f.name = f.name.upper()
    elif mutation == "duplicate_field":
        fields[1].name = "x"
    elif mutation == "bad_datatype":
        fields[target].datatype = draw(st.sampled_from([0, 9, 255]))
    elif mutation == "huge_width":
        msg.width = draw(st.sampled_from([2**31, 2**32 - 1]))
    elif mutation == "empty":
        msg.width, msg.row_step, msg.data = 0, 0, b""
    elif mutation == "height_zero":
        msg.height = 0
    elif mutation == "random_layout":
        fields = [PointField(name=draw(st.sampled_from(FIELD_NAMES)), offset=draw(st.integers(0, 40)),
                             datatype=draw(st.integers(0, 9)), count=draw(st.integers(0, 3)))
                  for _ in range(draw(st.integers(0, 5)))]
        msg.point_step = draw(st.integers(0, 48))
        msg.row_step = msg.point_step * msg.width + draw(st.sampled_from([0, 0, 5]))
        msg.data = rng.integers(0, 256, msg.height * msg.row_step + draw(st.sampled_from([0, 0, 3])),
                                dtype=np.uint8).tobytes()
    msg.fields = fields
    return msg


@st.composite
def images(draw, width: int | None = None, height: int | None = None):
    """An Image with a random (often wrong) encoding, size, step, data length and byte-order flag."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = width if width is not None and draw(st.integers(0, 3)) else draw(st.integers(0, 12))
    h = height if height is not None and draw(st.integers(0, 3)) else draw(st.integers(0, 12))
    encoding = draw(st.sampled_from(ENCODINGS))
    channels = 3 if encoding in ("rgb8", "bgr8", "8UC3") else 1
    step = w * channels + draw(st.sampled_from([0, 0, 0, 1, 8, -1]))
    step = max(step, 0) if draw(st.integers(0, 19)) else draw(st.integers(0, 2**32 - 1))
    n_bytes = h * step if h * step < 4_000_000 else 16
    n_bytes = max(n_bytes + draw(st.sampled_from([0, 0, 0, -1, 3])), 0)
    return Image(header=_header(draw, ("cam_front_optical", "", "base_link")), height=h, width=w,
                 encoding=encoding, is_bigendian=draw(st.sampled_from([0, 0, 1, 2, 255])), step=step,
                 data=rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes())


def _floats():
    return st.one_of(st.floats(-5000, 5000), st.sampled_from([float("nan"), float("inf"), 0.0, -1.0, 1e300]))


@st.composite
def camera_infos(draw):
    """CameraInfo with random sizes, K, D and P (NaN, zero focal lengths, odd distortion lengths)."""
    k = [draw(_floats()) for _ in range(9)] if draw(st.booleans()) else [500.0, 0, 320, 0, 500.0, 240, 0, 0, 1]
    p = [draw(_floats()) for _ in range(12)] if draw(st.integers(0, 3)) == 0 else [0.0] * 12
    return CameraInfo(header=_header(draw, ("cam_front_optical", "")),
                      width=draw(st.sampled_from([0, 1, 640, 2**32 - 1])),
                      height=draw(st.sampled_from([0, 1, 480, 2**32 - 1])),
                      distortion_model=draw(st.sampled_from(["plumb_bob", "", "equidistant", "rational_polynomial"])),
                      d=[draw(_floats()) for _ in range(draw(st.sampled_from([0, 5, 8, 3])))], k=k, p=p)


@st.composite
def event_packets(draw, width: int = 64, height: int = 48):
    """An EventPacket with random payload bytes, encoding, size, seq, time_base and byte order."""
    from event_camera_msgs.msg import EventPacket

    encoding = draw(st.sampled_from(["evt3", "evt3", "mono", "mono", "libcaer", "libcaer_cmp", "evt2", ""]))
    n = draw(st.integers(0, 512))
    if draw(st.booleans()):
        n -= n % (2 if encoding in ("evt3", "libcaer_cmp") else 8)
    payload = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 256, n, dtype=np.uint8).tobytes()
    return EventPacket(header=_header(draw, ("event_camera_optical", "")),
                       width=draw(st.sampled_from([width, width, 0, 1, 65535])),
                       height=draw(st.sampled_from([height, height, 0, 1, 65535])),
                       seq=draw(st.integers(0, 2**64 - 1)), time_base=draw(st.integers(0, 2**64 - 1)),
                       encoding=encoding, is_bigendian=draw(st.booleans()), events=payload)


@st.composite
def diagnostic_arrays(draw):
    """/diagnostics traffic from nodes that misbehave: odd levels, names, numbers that are not numbers."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    keys = st.sampled_from(["processing_time_p99_ms", "latency_budget_ms", "drops_total", "input_rate_hz/lidar/points",
                            "inputs/lidar/points", "lifecycle_state", "over_budget", "backlog", "", "x" * 200])
    values = st.sampled_from(["0", "12.5", "nan", "inf", "-1", "", "n/a", "1e999", "true", "active", "\x00", "9" * 40])
    statuses = st.builds(
        lambda level, name, kv, message: DiagnosticStatus(level=level, name=name, message=message,
                                                          values=[KeyValue(key=k, value=v) for k, v in kv]),
        st.sampled_from([b"\x00", b"\x01", b"\x02", b"\x03", b"\x07", b"\xff"]),
        st.sampled_from(["fovea/voxel_filter", "fovea/tpv_occupancy", "fovea/unknown_node", "fovea/", "other/x", ""]),
        st.lists(st.tuples(keys, values), max_size=8), st.text(max_size=30))
    return DiagnosticArray(status=draw(st.lists(statuses, max_size=4)))

"""Helpers for the bag-tool tests: tiny bags written on the fly and a subscriber in its own process that
reports exactly what reached it. (A uniquely named module rather than conftest, so other test folders' conftest
files never shadow it.)"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from fovea_core.paths import shared_data_dir
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

HERE = pathlib.Path(__file__).resolve().parent
EVENT_BAG = shared_data_dir() / "events" / "event_camera_codecs_bags" / "evt3_trigger"

# Points per generated cloud. 16 bytes per point (x, y, z, intensity as float32): 70_000 points = 1.12 MB,
# sensor-data sized. Raise it to stress the middleware further.
LARGE_CLOUD_POINTS = 70_000
SMALL_CLOUD_POINTS = 64

# A message type no Python package provides: replay must skip it, readers must decode it from the bag.
CUSTOM_TYPE = "fovea_test_msgs/msg/Blob"
CUSTOM_MSG = "std_msgs/Header header\nuint32 counter\nfloat64[] values\nstring note\n"

BAG_START_NS = 1_700_000_000_000_000_000


def make_typestore():
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg(CUSTOM_MSG, CUSTOM_TYPE))
    return store


def _header(store, stamp_ns: int, frame: str):
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return store.types["std_msgs/msg/Header"](stamp=store.types["builtin_interfaces/msg/Time"](sec=sec,
                                                                                             nanosec=nanosec),
                                              frame_id=frame)


def make_cloud(store, stamp_ns: int, points: int, seed: int):
    rng = np.random.default_rng(seed)
    xyz_i = rng.normal(size=(points, 4)).astype(np.float32)
    field_type = store.types["sensor_msgs/msg/PointField"]
    fields = [field_type(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")]
    fields.append(field_type(name="intensity", offset=12, datatype=7, count=1))
    return store.types["sensor_msgs/msg/PointCloud2"](
        header=_header(store, stamp_ns, "lidar"), height=1, width=points, fields=fields, is_bigendian=False,
        point_step=16, row_step=16 * points, data=xyz_i.view(np.uint8).reshape(-1), is_dense=True)


def make_image(store, stamp_ns: int, seed: int, height: int = 24, width: int = 32):
    pixels = np.random.default_rng(seed).integers(0, 256, size=height * width * 3, dtype=np.uint8)
    return store.types["sensor_msgs/msg/Image"](header=_header(store, stamp_ns, "camera_optical"), height=height,
                                                width=width, encoding="rgb8", is_bigendian=0, step=width * 3,
                                                data=pixels)


def make_blob(store, stamp_ns: int, counter: int):
    return store.types[CUSTOM_TYPE](header=_header(store, stamp_ns, "blob"), counter=counter,
                                    values=np.arange(counter + 1, dtype=np.float64), note=f"blob {counter}")


@dataclass
class WrittenMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    stamp_ns: int
    data: bytes


def write_bag(path: pathlib.Path, storage: str = "sqlite3", *, clouds: int = 3, images: int = 3, blobs: int = 2,
              period_ns: int = 100_000_000, cloud_points: int = SMALL_CLOUD_POINTS,
              offered_qos: dict | None = None) -> list[WrittenMessage]:
    """Write a bag with /cloud, /image and /blob messages ``period_ns`` apart (header stamp = log time)
    and return what was written, in log-time order. ``offered_qos``: topic -> recorded rosbags Qos list."""
    store = make_typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    plan = []
    for i in range(clouds):
        plan.append(("/cloud", "sensor_msgs/msg/PointCloud2", BAG_START_NS + i * period_ns,
                     lambda t, i=i: make_cloud(store, t, cloud_points, seed=i)))
    for i in range(images):
        plan.append(("/image", "sensor_msgs/msg/Image", BAG_START_NS + i * period_ns + period_ns // 3,
                     lambda t, i=i: make_image(store, t, seed=100 + i)))
    for i in range(blobs):
        plan.append(("/blob", CUSTOM_TYPE, BAG_START_NS + i * period_ns + 2 * period_ns // 3,
                     lambda t, i=i: make_blob(store, t, i)))
    plan.sort(key=lambda p: p[2])
    written = []
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections = {}
        for topic, msgtype, _, _ in plan:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store,
                                                           offered_qos_profiles=(offered_qos or {}).get(topic, ()))
        for topic, msgtype, t, build in plan:
            data = bytes(store.serialize_cdr(build(t), msgtype))
            writer.write(connections[topic], t, data)
            written.append(WrittenMessage(topic, msgtype, t, t, data))
    return written


def fovea_ros_pythonpath() -> str:
    """PYTHONPATH for child processes so they import the same fovea_ros as this test process."""
    import fovea_ros
    package_parent = str(pathlib.Path(fovea_ros.__file__).resolve().parents[1])
    return os.pathsep.join([package_parent, os.environ.get("PYTHONPATH", "")])


class ProbeSubscriber:
    """``probe_subscriber.py`` in a child process: subscribes (raw bytes) to the given topics, exits after
    ``expect`` messages or ``timeout_s``, and reports each message's topic, receive time, header stamp and hash."""

    def __init__(self, topics: dict[str, str], expect: int, timeout_s: float = 15.0,
                 reliability: str = "reliable", linger_s: float = 0.3,
                 await_topics: list[str] | None = None) -> None:
        if await_topics is None:  # by default every topic but /clock must match before MATCHED
            await_topics = [t for t in topics if t != "/clock"]
        args = [sys.executable, str(HERE / "probe_subscriber.py"), "--expect", str(expect),
                "--timeout", str(timeout_s), "--reliability", reliability, "--linger", str(linger_s),
                "--await-publishers", *await_topics]
        for topic, msgtype in topics.items():
            args += ["--topic", f"{topic}={msgtype}"]
        env = {**os.environ, "PYTHONPATH": fovea_ros_pythonpath()}
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.process.stdout.readline()
        if line.strip() != "READY":
            self.process.kill()
            raise RuntimeError(f"probe subscriber did not start: {line!r} {self.process.stderr.read()}")

    def wait_matched(self) -> None:
        """Block until the probe's own subscriptions have matched a publisher on each of its topics (call it
        once the publishers exist and before publishing: it closes the window in which a volatile reader drops
        data from a writer it has not matched yet)."""
        line = self.process.stdout.readline()
        if line.strip() != "MATCHED":
            raise RuntimeError(f"probe subscriber never matched the publishers: {line!r}")

    def result(self, timeout_s: float = 20.0) -> list[dict]:
        out, err = self.process.communicate(timeout=timeout_s)
        assert self.process.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])["messages"]  # the JSON comes last

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ProbeSubscriber:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

#!/usr/bin/env python3
"""Make bags/demo_lidar: the bag `make demo` replays, from the real outdoor lidar scan pair.

The two consecutive real scans (koide3/small_gicp data, MIT; see ../shared/data/registration/
outdoor_lidar_scan_pair/PROVENANCE.md) are published alternately on /lidar/points at 10 Hz with increasing
stamps, plus /tf_static (base_link -> lidar). Each cloud is ~70k points (x, y, z, intensity: 1.1 MB), so the
demo exercises realistic message sizes. Run: `source env.sh && python tools/make_demo_bag.py`.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from tf2_msgs.msg import TFMessage

from fovea_core.io.cloud_files import read_cloud
from fovea_core.paths import shared_data_dir
from fovea_ros.bag.qos import to_bag_qos
from fovea_ros.bag.typestore import build_typestore, compat_types
from fovea_ros.conversions import array_to_pointcloud2

ROOT = Path(__file__).resolve().parents[1]
SCANS = shared_data_dir() / "registration" / "outdoor_lidar_scan_pair"
START_NS = 1_700_000_000_000_000_000
PERIOD_NS = 100_000_000  # 10 Hz, a typical spinning lidar
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)  # as tf_static is published


def load_scan(name: str) -> np.ndarray:
    raw = read_cloud(SCANS / name)
    points = np.zeros(len(raw), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    for field in ("x", "y", "z"):
        points[field] = raw[field]
    points["intensity"] = raw["scalar_intensity"]
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bags" / "demo_lidar"))
    parser.add_argument("--messages", type=int, default=10)
    args = parser.parse_args()
    out = Path(args.out)
    notice = (out / "NOTICE.md").read_text() if (out / "NOTICE.md").exists() else None
    if out.exists():
        shutil.rmtree(out)
    scans = [load_scan("source.ply"), load_scan("target.ply")]
    typestore = build_typestore(compat_types())
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        tf_conn = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=typestore,
                                        offered_qos_profiles=[to_bag_qos(LATCHED)])
        cloud_conn = writer.add_connection("/lidar/points", "sensor_msgs/msg/PointCloud2", typestore=typestore)
        mount = TransformStamped()
        mount.header.frame_id, mount.child_frame_id = "base_link", "lidar"
        mount.header.stamp.sec = START_NS // 1_000_000_000
        mount.transform.translation.z = 1.8  # roof mount height
        mount.transform.rotation.w = 1.0
        writer.write(tf_conn, START_NS, serialize_message(TFMessage(transforms=[mount])))
        for i in range(args.messages):
            stamp_ns = START_NS + i * PERIOD_NS
            msg = array_to_pointcloud2(scans[i % 2])
            msg.header.frame_id = "lidar"
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            writer.write(cloud_conn, stamp_ns, serialize_message(msg))
    if notice is not None:
        (out / "NOTICE.md").write_text(notice)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

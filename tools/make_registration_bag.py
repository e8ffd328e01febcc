#!/usr/bin/env python3
"""Make bags/registration_pairs: a short lidar sequence from the real outdoor scan pair, with ground truth.

Frames (10 Hz on /lidar/points, frame base_link, x/y/z/intensity):
  0: the real source scan (defines odom: pose = identity)
  1: the real target scan (pose = T_target_source^-1, from the pair's ground truth)
  2..N-1: one of the two real scans seen again from a known extra motion M_k (0.4 m forward and 1.5° of yaw
          per frame): points M_k^-1 x, a random 70 % of them, range-limited to 60 m; pose = pose_base · M_k.
Ground truth: nav_msgs/Odometry on /ground_truth/odom (odom → base_link) with each frame's stamp.
Data: koide3/small_gicp demo scans (MIT), see ../shared/data/registration/outdoor_lidar_scan_pair/PROVENANCE.md.
Run: `source env.sh && python tools/make_registration_bag.py`.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer

from fovea_core.geometry.transforms import translation_quaternion
from fovea_core.io.cloud_files import read_cloud
from fovea_core.paths import shared_data_dir
from fovea_core.registration.rigid import apply_transform, axis_angle_to_matrix, make_transform
from fovea_ros.bag.typestore import build_typestore, compat_types
from fovea_ros.conversions import array_to_pointcloud2

ROOT = Path(__file__).resolve().parents[1]
SCANS = shared_data_dir() / "registration" / "outdoor_lidar_scan_pair"
START_NS = 1_700_000_000_000_000_000
PERIOD_NS = 100_000_000


def load_scan(name: str) -> np.ndarray:
    raw = read_cloud(SCANS / name)
    points = np.zeros(len(raw), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    for field in ("x", "y", "z"):
        points[field] = raw[field]
    points["intensity"] = raw["scalar_intensity"]
    return points


def moved(points: np.ndarray, motion: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The scan as seen from a sensor moved by ``motion`` (sensor_new = sensor_old · motion)."""
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=1).astype(np.float64)
    local = apply_transform(np.linalg.inv(motion), xyz)
    keep = (rng.random(len(local)) < 0.7) & (np.linalg.norm(local, axis=1) < 60.0)
    out = points[keep].copy()
    out["x"], out["y"], out["z"] = local[keep].T.astype(np.float32)
    return out


def sequence(frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    scans = [load_scan("source.ply"), load_scan("target.ply")]
    poses = [np.eye(4), np.linalg.inv(np.loadtxt(SCANS / "T_target_source.txt"))]
    clouds = list(scans)
    for k in range(2, frames):
        base = k % 2
        motion = make_transform(axis_angle_to_matrix(np.array([0.0, 0.0, np.radians(1.5 * (k - 1))])),
                                np.array([0.4 * (k - 1), 0.0, 0.0]))
        clouds.append(moved(scans[base], motion, rng))
        poses.append(poses[base] @ motion)
    return clouds, poses


def ground_truth_message(pose: np.ndarray, stamp_ns: int) -> Odometry:
    msg = Odometry()
    msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    translation, quaternion = translation_quaternion(pose)
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    p.x, p.y, p.z = map(float, translation)
    q.x, q.y, q.z, q.w = map(float, quaternion)
    return msg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bags" / "registration_pairs"))
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    clouds, poses = sequence(args.frames)
    typestore = build_typestore(compat_types())
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cloud_conn = writer.add_connection("/lidar/points", "sensor_msgs/msg/PointCloud2", typestore=typestore)
        truth_conn = writer.add_connection("/ground_truth/odom", "nav_msgs/msg/Odometry", typestore=typestore)
        for i, (cloud, pose) in enumerate(zip(clouds, poses)):
            stamp_ns = START_NS + i * PERIOD_NS
            msg = array_to_pointcloud2(cloud)
            msg.header.frame_id = "base_link"
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            writer.write(truth_conn, stamp_ns, serialize_message(ground_truth_message(pose, stamp_ns)))
            writer.write(cloud_conn, stamp_ns, serialize_message(msg))
    (out / "NOTICE.md").write_text(
        "# registration_pairs\n\nMade by `tools/make_registration_bag.py` from the real outdoor lidar scan pair "
        "(koide3/small_gicp `data/`, MIT license; see `../shared/data/registration/outdoor_lidar_scan_pair/"
        "PROVENANCE.md`). Frames 0 and 1 are the two real scans; later frames re-observe them from known extra "
        "motions. Ground truth odom → base_link on `/ground_truth/odom`.\n")
    print(f"wrote {out} ({len(clouds)} frames)")


if __name__ == "__main__":
    main()

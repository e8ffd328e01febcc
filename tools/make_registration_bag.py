#!/usr/bin/env python3
"""Make the registration bags: bags/pandaset_lidar (default) and bags/registration_pairs.

bags/pandaset_lidar (`--bag pandaset`): PandaSet sequence 002 frames 30-54 (2.5 s of real Pandar64 sweeps at
10 Hz, 7 m of driving), each sweep in base_link (fovea_core.registration.sequence), voxelised at 0.5 m
(centroid per voxel, intensity averaged) to keep the bag small; x/y/z float32 + intensity uint8 on
/lidar/points with PandaSet's frame stamps; ground truth odom → base_link (relative to frame 30) on
/ground_truth/odom. Data: PandaSet (CC BY 4.0 + Dataset Terms of Use), notice written beside the bag.

bags/registration_pairs (`--bag pairs`): a short lidar sequence from the real outdoor scan pair:

Frames (10 Hz on /lidar/points, frame base_link, x/y/z/intensity):
  0: the real source scan (defines odom: pose = identity)
  1: the real target scan (pose = T_target_source^-1, from the pair's ground truth)
  2..N-1: one of the two real scans seen again from a known extra motion M_k (0.4 m forward and 1.5° of yaw
          per frame): points M_k^-1 x, a random 70 % of them, range-limited to 60 m; pose = pose_base · M_k.
Ground truth: nav_msgs/Odometry on /ground_truth/odom (odom → base_link) with each frame's stamp.
Data: koide3/small_gicp demo scans (MIT), see ../shared/data/registration/outdoor_lidar_scan_pair/PROVENANCE.md.
Run: `source env.sh && python tools/make_registration_bag.py [--bag pandaset|pairs]`.
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


PANDASET_FRAMES = list(range(30, 55))
PANDASET_VOXEL = 0.5
PANDASET_NOTICE = """# pandaset_lidar

Made by `tools/make_registration_bag.py --bag pandaset` from PandaSet sequence 002 in
`../shared/data/tpv/pandaset_002/` (see its PROVENANCE.md).

**Data notice.** PandaSet by Hesai and Scale AI, licensed CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)
together with the PandaSet Dataset Terms of Use (`DATASET_TERMS.pandaset.CC-BY-4.0.md` beside the source data:
among others, no attempt to identify people in the data, no use of the licensors' names or logos for publicity).
Changes made here: frames 30-54 only (2.5 s); Pandar64 returns moved from world coordinates into base_link with
each sweep's pose (`fovea_core.registration.sequence`); voxelised at 0.5 m (one point per voxel at the centroid
of its returns, intensity averaged); per-point times dropped (PandaSet's points are already motion-compensated).

Topics: `/lidar/points` (sensor_msgs/PointCloud2, frame base_link, x y z float32 + intensity uint8, PandaSet's
frame stamps), `/ground_truth/odom` (nav_msgs/Odometry odom → base_link, odom = base_link at frame 30).
Used by `tests/registration/` and the `registration` demo stage.
"""


def pandaset_bag(out: Path) -> None:
    from fovea_core.geometry.voxel_grid import voxel_downsample
    from fovea_core.geometry.transforms import invert_rigid
    from fovea_core.registration.sequence import load_sweeps

    sweeps = load_sweeps(PANDASET_FRAMES)
    origin = invert_rigid(sweeps[0].pose)
    typestore = build_typestore(compat_types())
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cloud_conn = writer.add_connection("/lidar/points", "sensor_msgs/msg/PointCloud2", typestore=typestore)
        truth_conn = writer.add_connection("/ground_truth/odom", "nav_msgs/msg/Odometry", typestore=typestore)
        for sweep in sweeps:
            raw = np.zeros(len(sweep.points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
            raw["x"], raw["y"], raw["z"] = sweep.points.T
            raw["intensity"] = sweep.intensity
            down = voxel_downsample(raw, PANDASET_VOXEL)
            cloud = np.zeros(len(down), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1")])
            for name in ("x", "y", "z"):
                cloud[name] = down[name]
            cloud["intensity"] = np.clip(np.round(down["intensity"]), 0, 255)
            msg = array_to_pointcloud2(cloud)
            msg.header.frame_id = "base_link"
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(sweep.stamp_ns, 1_000_000_000)
            writer.write(truth_conn, sweep.stamp_ns,
                         serialize_message(ground_truth_message(origin @ sweep.pose, sweep.stamp_ns)))
            writer.write(cloud_conn, sweep.stamp_ns, serialize_message(msg))
    (out / "NOTICE.md").write_text(PANDASET_NOTICE)
    print(f"wrote {out} ({len(sweeps)} sweeps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bag", choices=("pandaset", "pairs"), default="pandaset")
    parser.add_argument("--out", default=None)
    parser.add_argument("--frames", type=int, default=8, help="pairs: frames")
    args = parser.parse_args()
    out = Path(args.out or ROOT / "bags" / ("pandaset_lidar" if args.bag == "pandaset" else "registration_pairs"))
    if args.bag == "pandaset":
        if out.exists():
            shutil.rmtree(out)
        pandaset_bag(out)
        return
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

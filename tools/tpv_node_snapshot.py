#!/usr/bin/env python3
"""Picture of what the TPV occupancy node publishes for the real nuScenes frame (bags/nuscenes_sample).

Starts the node (config/tpv_occupancy.yaml) in its own process, replays the bag's messages to it, takes the
first occupancy cloud and labelled lidar cloud it publishes and draws them top-down with the front camera.
Run: `source env.sh && python tools/tpv_node_snapshot.py` -> notes/tpv_node_real_sample.png
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2

from fovea_core.tpv.nuscenes_sample import load_calibration
from fovea_core.tpv.scenes import CLASS_COLORS, CLASS_NAMES
from fovea_ros.bag.reader import BagReader
from fovea_ros.bag.typestore import import_message_class
from fovea_ros.conversions import image_to_array, pointcloud2_to_array

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bag", default=str(ROOT / "bags" / "nuscenes_sample"))
    parser.add_argument("--out", default=str(ROOT / "notes" / "tpv_node_real_sample.png"))
    args = parser.parse_args()
    node_proc = subprocess.Popen([sys.executable, "-m", "fovea_ros.nodes.tpv_occupancy_node"], cwd=ROOT,
                                 env=os.environ.copy())
    rclpy.init()
    node = rclpy.create_node("tpv_snapshot")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    got: dict[str, PointCloud2] = {}
    node.create_subscription(PointCloud2, "/tpv/occupancy", lambda m: got.setdefault("occ", m), 2)
    node.create_subscription(PointCloud2, "/tpv/labelled_points", lambda m: got.setdefault("pts", m), 2)
    publishers, messages = {}, []
    with BagReader(args.bag) as reader:
        for m in reader.messages():
            cls = import_message_class(m.msgtype)
            if m.topic not in publishers:
                qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL) if m.topic == "/tf_static" \
                    else qos_profile_sensor_data
                publishers[m.topic] = node.create_publisher(cls, m.topic, qos)
            messages.append((m.topic, deserialize_message(m.data, cls)))
    try:
        deadline = time.monotonic() + 60
        while any(p.get_subscription_count() == 0 for t, p in publishers.items() if t != "/tf_static"):
            if time.monotonic() > deadline:
                raise SystemExit("the node never subscribed")
            time.sleep(0.1)
        for topic, msg in messages:
            publishers[topic].publish(msg)
            time.sleep(0.15)
        deadline = time.monotonic() + 60
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        if len(got) < 2:
            raise SystemExit(f"no output from the node (got {sorted(got)})")
    finally:
        node_proc.send_signal(2)
        node_proc.wait(10)
    occ = pointcloud2_to_array(got["occ"])
    pts = pointcloud2_to_array(got["pts"])
    lidar2ego = np.asarray(load_calibration()["lidar"]["lidar2ego"])
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], 1) @ lidar2ego[:3, :3].T + lidar2ego[:3, 3]
    front = next(msg for t, msg in messages if t == "/cam_front/image_raw")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 6))
    axes[0].imshow(image_to_array(front))
    axes[0].set_title("/cam_front/image_raw (one of six inputs)")
    axes[0].axis("off")
    order = np.argsort(occ["z"])  # draw low voxels first so the top-most class shows
    axes[1].scatter(occ["y"][order], occ["x"][order], c=CLASS_COLORS[occ["label"][order]], s=9, marker="s")
    axes[1].set_title(f"/tpv/occupancy: {len(occ)} voxels with confidence >= threshold (top view)")
    inside = (np.abs(xyz[:, 0]) < 25) & (np.abs(xyz[:, 1]) < 25)
    axes[2].scatter(xyz[inside, 1], xyz[inside, 0], c=CLASS_COLORS[pts["label"][inside]], s=0.5)
    axes[2].set_title(f"/tpv/labelled_points: {len(pts)} real lidar returns (top view, base_link)")
    for ax in axes[1:]:
        ax.set_xlim(25, -25)
        ax.set_ylim(-25, 25)
        ax.set_aspect("equal")
        ax.set_xlabel("y [m] (left +)")
        ax.set_ylabel("x [m] (forward)")
    handles = [plt.Line2D([], [], marker="s", ls="", color=CLASS_COLORS[c], label=CLASS_NAMES[c])
               for c in range(1, len(CLASS_NAMES))]
    handles.append(plt.Line2D([], [], marker="s", ls="", color=CLASS_COLORS[0], label="outside the grid (label 0)"))
    axes[2].legend(handles=handles, loc="lower right", fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    counts = np.bincount(pts["label"], minlength=len(CLASS_NAMES)).tolist()
    print(f"wrote {args.out}: {len(occ)} occupied voxels, {len(pts)} labelled points, "
          f"label histogram {dict(zip(('outside grid',) + CLASS_NAMES[1:], counts))}")
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

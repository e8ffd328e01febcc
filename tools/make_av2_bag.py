#!/usr/bin/env python3
"""Make bags/av2_7fab2350: the real Argoverse 2 val log 7fab2350 as the occupancy-flow node receives it.

Topics (all stamps are the log's own):
  /lidar/points  sensor_msgs/PointCloud2 x, y, z, intensity (frame base_link, AV2's ego frame): the log's
                 two real sweeps (99,229 and 99,466 returns, 0.1 s apart)
  /tf            odom -> base_link, the log's ego poses (city frame = odom) every pose sample from 0.5 s
                 before the first sweep to 3 s after the last (written 5 ms before the sweep at equal stamps,
                 as a TF publisher running ahead of the lidar driver would)
  /tf_static     map -> odom (identity: the map's city coordinates are the odom frame)
  /av2/boxes     visualization_msgs/MarkerArray per annotation frame (frame base_link at that stamp): the
                 tracked cuboids over the same span, the ground truth the node's forecast is scored against
and ``map.json``, the log's vector map (for ``map_file``). Data: Argoverse 2 (Argo AI), CC BY-NC-SA 4.0;
see NOTICE.md written beside the bag and ../shared/data/occflow/av2/PROVENANCE.md.
Run: `source env.sh && python tools/make_av2_bag.py`.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from std_msgs.msg import ColorRGBA
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import Marker, MarkerArray

from fovea_core.geometry.transforms import translation_quaternion
from fovea_core.occflow.av2_reader import AV2_CATEGORY_CLASS, Av2SensorLog, default_log_dir, default_root
from fovea_ros.bag.typestore import build_typestore, compat_types
from fovea_ros.conversions import array_to_pointcloud2

ROOT = Path(__file__).resolve().parents[1]
CLASS_COLOURS = {0: (0.2, 0.6, 1.0), 1: (1.0, 0.4, 0.2), 2: (0.3, 1.0, 0.3)}


def set_stamp(header, ns: int) -> None:
    header.stamp.sec, header.stamp.nanosec = divmod(int(ns), 1_000_000_000)


def transform(parent: str, child: str, T: np.ndarray, ns: int) -> TransformStamped:
    t = TransformStamped()
    set_stamp(t.header, ns)
    t.header.frame_id, t.child_frame_id = parent, child
    translation, q = translation_quaternion(T)
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = map(float, translation)
    t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = map(float, q)
    return t


def box_markers(log: Av2SensorLog, stamp: int) -> MarkerArray:
    b = log.boxes
    rows = np.nonzero(b["timestamp_ns"] == stamp)[0]
    out = MarkerArray()
    for i, r in enumerate(rows):
        cls = AV2_CATEGORY_CLASS.get(b["category"][r], -1)
        m = Marker(ns=str(b["category"][r]).lower(), id=i, type=Marker.CUBE, action=Marker.ADD)
        m.header.frame_id = "base_link"
        set_stamp(m.header, stamp)
        m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(b[k][r]) for k in ("tx_m", "ty_m", "tz_m"))
        m.pose.orientation.x, m.pose.orientation.y = float(b["qx"][r]), float(b["qy"][r])
        m.pose.orientation.z, m.pose.orientation.w = float(b["qz"][r]), float(b["qw"][r])
        m.scale.x, m.scale.y, m.scale.z = (float(b[k][r]) for k in ("length_m", "width_m", "height_m"))
        r_, g_, b_ = CLASS_COLOURS.get(cls, (0.6, 0.6, 0.6))
        m.color = ColorRGBA(r=r_, g=g_, b=b_, a=0.5)
        m.lifetime.nanosec = 150_000_000
        out.markers.append(m)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-dir", type=Path, default=default_log_dir())
    parser.add_argument("--out", type=Path, default=ROOT / "bags" / "av2_7fab2350")
    parser.add_argument("--before", type=float, default=0.5, help="seconds of TF/boxes before the first sweep")
    parser.add_argument("--after", type=float, default=3.0, help="seconds of TF/boxes after the last sweep")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    log = Av2SensorLog.open(args.log_dir)
    first, last = log.sweep_stamps[0], log.sweep_stamps[-1]
    lo, hi = first - int(args.before * 1e9), last + int(args.after * 1e9)
    typestore = build_typestore(compat_types())
    messages = []   # (log time, connection key, message)
    messages.append((lo - 1, "/tf_static", TFMessage(transforms=[transform("map", "odom", np.eye(4), lo - 1)])))
    for ns, T in zip(log.pose_stamps, log.city_from_ego):
        if lo <= ns <= hi:
            messages.append((int(ns) - 5_000_000, "/tf", TFMessage(transforms=[transform("odom", "base_link", T, int(ns))])))
    for stamp in log.box_stamps:
        if lo <= stamp <= hi:
            messages.append((int(stamp), "/av2/boxes", box_markers(log, int(stamp))))
    import pyarrow.feather as feather

    for stamp in log.sweep_stamps:
        cols = feather.read_table(args.log_dir / "sensors" / "lidar" / f"{stamp}.feather")
        cloud = np.zeros(cols.num_rows, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
        for name in ("x", "y", "z", "intensity"):
            cloud[name] = cols.column(name).to_numpy().astype(np.float32)
        msg = array_to_pointcloud2(cloud)
        msg.header.frame_id = "base_link"
        set_stamp(msg.header, stamp)
        messages.append((int(stamp) + 20_000_000, "/lidar/points", msg))   # the driver's ~20 ms publish delay
    types = {"/tf_static": "tf2_msgs/msg/TFMessage", "/tf": "tf2_msgs/msg/TFMessage",
             "/av2/boxes": "visualization_msgs/msg/MarkerArray", "/lidar/points": "sensor_msgs/msg/PointCloud2"}
    with Writer(args.out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {t: writer.add_connection(t, ty, typestore=typestore) for t, ty in types.items()}
        for ns, topic, msg in sorted(messages, key=lambda m: m[0]):
            writer.write(conns[topic], ns, serialize_message(msg))
    map_src = next((args.log_dir / "map").glob("log_map_archive_*.json"))
    shutil.copy(map_src, args.out / "map.json")
    notice = (default_root() / "NOTICE.argoverse.CC-BY-NC-SA-4.0").read_text()
    (args.out / "NOTICE.md").write_text(
        "# av2_7fab2350\n\nMade by `tools/make_av2_bag.py` from the Argoverse 2 sensor-dataset val log "
        "7fab2350-7eaf-3b7e-a39d-6937a4c1bede as shipped in av2-api's test data (`../shared/data/occflow/av2/`, "
        "see its PROVENANCE.md): the two real lidar sweeps (`/lidar/points`, frame base_link = AV2's ego frame), "
        "the ego poses as TF odom -> base_link (odom = the city frame; map -> odom identity), the tracked cuboids "
        f"(`/av2/boxes`) from {args.before:g} s before the first sweep to {args.after:g} s after the last, and "
        f"`map.json` ({map_src.name}, the log's vector map, unchanged).\n\n"
        "Argoverse 2 is by Argo AI, licensed CC BY-NC-SA 4.0 (non-commercial, share-alike, attribution); "
        "this bag is a derived work under the same licence. The notice shipped with the data:\n\n```\n"
        + notice.strip() + "\n```\n")
    print(f"wrote {args.out}: {len(messages)} messages, sweeps at {log.sweep_stamps}")


if __name__ == "__main__":
    main()

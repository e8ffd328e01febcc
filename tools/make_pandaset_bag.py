#!/usr/bin/env python3
"""Make bags/pandaset_002: three real PandaSet validation frames as the TPV occupancy node receives them.

Topics (stamps are the sensors' own capture times: each camera 18-100 ms before its sweep, as recorded):
  /pandaset/<camera>/image_raw    sensor_msgs/Image rgb8, the 960x540 JPEG resized to --width x --height
  /pandaset/<camera>/camera_info  sensor_msgs/CameraInfo (intrinsics scaled to that size), frame <camera>_optical
  /pandaset/lidar/points          sensor_msgs/PointCloud2 x, y, z (float32), intensity (uint8), frame pandar64
  /pandaset/lidar/labels          sensor_msgs/PointCloud2 label (uint8: Fovea class, 255 = no counterpart) and
                                  pandaset_class (uint8: PandaSet's 1-42), one row per row of /pandaset/lidar/points
                                  of the same stamp (index-aligned; no x, y, z to keep the bag small)
  /tf_static                      base_link -> <camera>_optical (the reader's fixed rig), base_link -> pandar64
Only returns inside a 50 m x 50 m box around the car are kept (the model's grid; the node labels the rest 0).
Frames 47, 51, 55 (validation frames, never trained on: the farthest from training is the last).
Data: PandaSet by Hesai and Scale AI, CC BY 4.0 (../shared/data/tpv/pandaset_002/PROVENANCE.md); the notice
goes beside the bag. Run: `source env.sh && python tools/make_pandaset_bag.py`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tpv_bag import set_stamp, static_tf  # noqa: E402  (one implementation of the TF / stamp helpers)

from fovea_core.geometry.camera import CameraCalibration  # noqa: E402
from fovea_core.geometry.transforms import invert_rigid, transform_points  # noqa: E402
from fovea_core.tpv.pandaset import CAMERAS, PandaSetSequence  # noqa: E402
from fovea_ros.bag.typestore import build_typestore, compat_types  # noqa: E402
from fovea_ros.conversions import array_to_image, array_to_pointcloud2, calibration_to_camera_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FRAMES = (47, 51, 55)
LIDAR_FRAME = "pandar64"
BOX_HALF = 25.0  # metres around base_link


def optical_frame(camera: str) -> str:
    return f"{camera}_optical"


def notice(args, seq: PandaSetSequence) -> str:
    return (
        "# pandaset_002\n\n"
        "Made by `tools/make_pandaset_bag.py` from PandaSet sequence 002 in `../shared/data/tpv/pandaset_002/` "
        "(see its PROVENANCE.md).\n\n"
        "**Data notice.** PandaSet by Hesai and Scale AI, licensed CC BY 4.0 "
        "(https://creativecommons.org/licenses/by/4.0/) together with the PandaSet Dataset Terms of Use "
        "(`DATASET_TERMS.pandaset.CC-BY-4.0.md` beside the source data: among others, no attempt to identify "
        "people in the data, no use of the licensors' names or logos for publicity). Changes made here: frames "
        f"{', '.join(f'{f:02d}' for f in args.frames)} only; camera images resized from 960x540 (themselves "
        f"halved from 1920x1080) to {args.width}x{args.height} with PIL bilinear and stored as raw rgb8; "
        "intrinsics scaled to match (pixel centres at integers); lidar returns moved from world coordinates into "
        f"the Pandar64 pose frame `{LIDAR_FRAME}` and cut to a {2 * BOX_HALF:g} m x {2 * BOX_HALF:g} m box "
        "around the car; PandaSet's 42 semantic classes mapped to Fovea's 8 (`fovea_core/tpv/pandaset.py`, 255 "
        "where there is no counterpart) next to the original class id; the camera rig in `/tf_static` is the "
        "reader's fixed calibration (each camera against the lidar pose at its capture time, averaged over the "
        "sequence).\n\n"
        "Topics: six `/pandaset/<camera>/image_raw` + `camera_info`, `/pandaset/lidar/points` (x, y, z, "
        "intensity), `/pandaset/lidar/labels` (label, pandaset_class; index-aligned with the points of the same "
        "stamp), `/tf_static`. Used by `tests/tpv/test_tpv_occupancy_node.py` and the `tpv_pandaset` demo stage.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bags" / "pandaset_002"))
    parser.add_argument("--data-root", type=Path, default=None, help="default: shared/data/tpv/pandaset_002")
    parser.add_argument("--frames", type=int, nargs="+", default=list(FRAMES))
    parser.add_argument("--width", type=int, default=384)  # the node model's input size: no up-scaling
    parser.add_argument("--height", type=int, default=216)
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    seq = PandaSetSequence(args.data_root)
    size = (args.width, args.height)
    names, K, rig = seq.rig(size)
    base_from_lidar = seq.lidar_to_base
    transforms = {optical_frame(n): T for n, T in zip(names, rig)}
    transforms[LIDAR_FRAME] = invert_rigid(base_from_lidar)  # base_link -> lidar pose frame
    typestore = build_typestore(compat_types())
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        tf_conn = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=typestore)
        image_conns = {n: writer.add_connection(f"/pandaset/{n}/image_raw", "sensor_msgs/msg/Image",
                                                typestore=typestore) for n in CAMERAS}
        info_conns = {n: writer.add_connection(f"/pandaset/{n}/camera_info", "sensor_msgs/msg/CameraInfo",
                                               typestore=typestore) for n in CAMERAS}
        lidar_conn = writer.add_connection("/pandaset/lidar/points", "sensor_msgs/msg/PointCloud2", typestore=typestore)
        label_conn = writer.add_connection("/pandaset/lidar/labels", "sensor_msgs/msg/PointCloud2", typestore=typestore)
        messages = []
        for f in args.frames:
            images = seq.images(f, size)
            for i, cam in enumerate(CAMERAS):
                ns = int(round(seq.camera_times[cam][f] * 1e9))
                info = calibration_to_camera_info(CameraCalibration(K=K[i], width=args.width, height=args.height,
                                                                    frame_id=optical_frame(cam)))
                set_stamp(info.header, ns)
                img = array_to_image(images[i], "rgb8")
                img.header.frame_id = optical_frame(cam)
                set_stamp(img.header, ns)
                messages += [(ns, info_conns[cam], info), (ns, image_conns[cam], img)]
            sweep = seq.sweep(f)
            in_base = transform_points(invert_rigid(seq.ego2world(f)), sweep.points_world)
            keep = np.all(np.abs(in_base[:, :2]) < BOX_HALF, axis=1)
            in_lidar = transform_points(invert_rigid(seq.lidar_poses[f]), sweep.points_world[keep])
            cloud = np.zeros(int(keep.sum()), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1")])
            cloud["x"], cloud["y"], cloud["z"] = in_lidar.T.astype(np.float32)
            cloud["intensity"] = sweep.intensity[keep]
            labels = np.zeros(len(cloud), dtype=[("label", "u1"), ("pandaset_class", "u1")])
            mapped = seq.label_lut[sweep.source_labels[keep]]
            labels["label"] = np.where(mapped < 0, 255, mapped)
            labels["pandaset_class"] = sweep.source_labels[keep]
            ns = int(round(seq.lidar_times[f] * 1e9))
            for conn, array in ((lidar_conn, cloud), (label_conn, labels)):
                msg = array_to_pointcloud2(array)
                msg.header.frame_id = LIDAR_FRAME
                set_stamp(msg.header, ns)
                messages.append((ns, conn, msg))
        start = min(m[0] for m in messages)
        writer.write(tf_conn, start - 1, serialize_message(static_tf(transforms, start - 1)))
        for ns, conn, msg in sorted(messages, key=lambda m: m[0]):
            writer.write(conn, ns, serialize_message(msg))
    (out / "NOTICE.md").write_text(notice(args, seq))
    size_mb = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(f"wrote {out} (frames {args.frames}, {size_mb:.1f} MB)")


if __name__ == "__main__":
    main()

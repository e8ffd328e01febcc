#!/usr/bin/env python3
"""Make bags/nuscenes_sample: the real nuScenes demo frame as the TPV occupancy node receives it.

Topics (each camera keeps its real capture offset within the set, up to ~43 ms, so the node's approximate
sync has real work to do):
  /cam_front/image_raw ... /cam_back_right/image_raw  sensor_msgs/Image rgb8, resized to --width x --height
  /cam_front/camera_info ...                          sensor_msgs/CameraInfo (intrinsics scaled to that size)
  /lidar_top/points                                   sensor_msgs/PointCloud2 x, y, z, intensity, ring (frame lidar_top)
  /tf_static                                          base_link -> <camera>_optical, base_link -> lidar_top
The one real frame is repeated --frames times, 0.5 s apart (nuScenes keyframes run at 2 Hz).
Data: nuScenes v1.0-mini via open-mmlab/mmdetection3d demo (CC BY-NC-SA 4.0), see
../shared/data/tpv/nuscenes_demo_sample/PROVENANCE.md.
Run: `source env.sh && python tools/make_tpv_bag.py`.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from tf2_msgs.msg import TFMessage

from fovea_core.geometry.camera import CameraCalibration
from fovea_core.geometry.transforms import translation_quaternion
from fovea_core.tpv.nuscenes_sample import default_sample_dir, load_calibration, load_sample
from fovea_ros.bag.typestore import build_typestore, compat_types
from fovea_ros.conversions import array_to_image, array_to_pointcloud2, calibration_to_camera_info

ROOT = Path(__file__).resolve().parents[1]
PERIOD_NS = 500_000_000


def set_stamp(header, ns: int) -> None:
    header.stamp.sec, header.stamp.nanosec = divmod(int(ns), 1_000_000_000)


def optical_frame(camera: str) -> str:
    return f"{camera.lower()}_optical"


def static_tf(frame_cam2ego: dict[str, np.ndarray], stamp_ns: int) -> TFMessage:
    msg = TFMessage()
    for child, T in frame_cam2ego.items():
        t = TransformStamped()
        set_stamp(t.header, stamp_ns)
        t.header.frame_id, t.child_frame_id = "base_link", child
        translation, q = translation_quaternion(T)
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = map(float, translation)
        t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = map(float, q)
        msg.transforms.append(t)
    return msg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bags" / "nuscenes_sample"))
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--width", type=int, default=400)
    parser.add_argument("--height", type=int, default=225)
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    sample_dir = default_sample_dir()
    calib = load_calibration(sample_dir)
    frame = load_sample(sample_dir, image_size=(args.width, args.height))
    raw = np.fromfile(sample_dir / calib["lidar"]["lidar_path"], dtype=np.float32).reshape(-1, 5)
    cloud = np.zeros(len(raw), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<f4")])
    for i, name in enumerate(cloud.dtype.names):
        cloud[name] = raw[:, i]
    lidar_ns = int(round(calib["timestamp_s"] * 1e9))
    cam_ns = {n: int(round(calib["cameras"][n]["timestamp"] * 1e9)) for n in frame.camera_names}
    transforms = {optical_frame(n): T for n, T in zip(frame.camera_names, frame.cam2ego)}
    transforms["lidar_top"] = np.asarray(calib["lidar"]["lidar2ego"], dtype=np.float64)
    typestore = build_typestore(compat_types())
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        tf_conn = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=typestore)
        image_conns = {n: writer.add_connection(f"/{n.lower()}/image_raw", "sensor_msgs/msg/Image", typestore=typestore)
                       for n in frame.camera_names}
        info_conns = {n: writer.add_connection(f"/{n.lower()}/camera_info", "sensor_msgs/msg/CameraInfo",
                                               typestore=typestore) for n in frame.camera_names}
        lidar_conn = writer.add_connection("/lidar_top/points", "sensor_msgs/msg/PointCloud2", typestore=typestore)
        start = min(cam_ns.values())
        writer.write(tf_conn, start - 1, serialize_message(static_tf(transforms, start - 1)))
        messages = []
        for k in range(args.frames):
            for cam, K, image in zip(frame.camera_names, frame.intrinsics, frame.images):
                ns = cam_ns[cam] + k * PERIOD_NS
                info = calibration_to_camera_info(CameraCalibration(K=K, width=args.width, height=args.height,
                                                                    frame_id=optical_frame(cam)))
                set_stamp(info.header, ns)
                img = array_to_image(image, "rgb8")
                img.header.frame_id = optical_frame(cam)
                set_stamp(img.header, ns)
                messages += [(ns, info_conns[cam], info), (ns, image_conns[cam], img)]
            msg = array_to_pointcloud2(cloud)
            msg.header.frame_id = "lidar_top"
            set_stamp(msg.header, lidar_ns + k * PERIOD_NS)
            messages.append((lidar_ns + k * PERIOD_NS, lidar_conn, msg))
        for ns, conn, msg in sorted(messages, key=lambda m: m[0]):
            writer.write(conn, ns, serialize_message(msg))
    (out / "NOTICE.md").write_text(
        "# nuscenes_sample\n\nMade by `tools/make_tpv_bag.py` from the real nuScenes v1.0-mini frame in "
        "`../shared/data/tpv/nuscenes_demo_sample/` (via open-mmlab/mmdetection3d `demo/data/nuscenes/`; nuScenes "
        "data is CC BY-NC-SA 4.0, non-commercial). Six cameras (rgb8, resized to "
        f"{args.width}x{args.height}, CameraInfo scaled to match), the LIDAR_TOP sweep in frame `lidar_top`, and "
        "`/tf_static` with the real calibration. The one real frame is repeated "
        f"{args.frames} times, 0.5 s apart.\n")
    print(f"wrote {out} ({args.frames} frames)")


if __name__ == "__main__":
    main()

"""Reader for the real nuScenes frame in ``shared/data/tpv/nuscenes_demo_sample`` (see its PROVENANCE.md).

Everything is returned in base_link (nuScenes ego frame): the lidar sweep goes through ``lidar2ego``, the
annotated boxes become centre/size/yaw in base_link. PROVENANCE.md says ``bbox_3d`` holds a bottom-centre z,
but checked against the sweep the stored z is the box's *centre*: read as bottom, pedestrians float 0.5-1.7 m
above the road and a truck 1.9 m; read as centre, box bottoms sit at z ~ 0 and the lidar points inside each
box match ``num_lidar_pts`` (see tests/tpv/test_data.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..paths import shared_data_dir
from .frame import Frame
from .projection import scale_intrinsics

CAMERA_ORDER = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
NATIVE_SIZE = (1600, 900)  # width, height of the nuScenes camera images


def default_sample_dir() -> Path:
    """The shared sample folder (``shared/`` sits beside the repository); FOVEA_TPV_SAMPLE overrides."""
    import os
    env = os.environ.get("FOVEA_TPV_SAMPLE")
    return Path(env) if env else shared_data_dir() / "tpv" / "nuscenes_demo_sample"


def load_calibration(sample_dir: str | Path | None = None) -> dict:
    sample_dir = Path(sample_dir or default_sample_dir())
    return json.loads((sample_dir / "calibration_and_boxes.json").read_text())


def load_rig(sample_dir=None, image_size: tuple[int, int] | None = None):
    """(camera names, intrinsics (N,3,3) for ``image_size``, cam2ego (N,4,4)) of the real rig."""
    calib = load_calibration(sample_dir)
    names = [n for n in CAMERA_ORDER if n in calib["cameras"]]
    K = np.stack([np.asarray(calib["cameras"][n]["cam2img"], dtype=np.float64) for n in names])
    cam2ego = np.stack([np.asarray(calib["cameras"][n]["cam2ego"], dtype=np.float64) for n in names])
    if image_size is not None:
        K = np.stack([scale_intrinsics(k, image_size[0] / NATIVE_SIZE[0], image_size[1] / NATIVE_SIZE[1]) for k in K])
    return names, K, cam2ego


def _boxes_in_ego(calib: dict) -> list[dict]:
    lidar2ego = np.asarray(calib["lidar"]["lidar2ego"], dtype=np.float64)
    inv_categories = {v: k for k, v in calib["categories"].items()}
    boxes = []
    for box in calib["boxes_3d"]:
        x, y, z_centre, dx, dy, dz, yaw = box["bbox_3d"]
        centre_lidar = np.array([x, y, z_centre, 1.0])
        centre = (lidar2ego @ centre_lidar)[:3]
        heading = lidar2ego[:3, :3] @ np.array([np.cos(yaw), np.sin(yaw), 0.0])
        boxes.append({"center": centre, "size": np.array([dx, dy, dz]),
                      "yaw": float(np.arctan2(heading[1], heading[0])),
                      "category": inv_categories.get(box["bbox_label_3d"], "ignore"),
                      "num_lidar_pts": int(box.get("num_lidar_pts", 0))})
    return boxes


def load_sample(sample_dir: str | Path | None = None, image_size: tuple[int, int] | None = None) -> Frame:
    """Read the real frame. ``image_size`` (w, h) resizes the images (and intrinsics) for a model."""
    from PIL import Image

    sample_dir = Path(sample_dir or default_sample_dir())
    calib = load_calibration(sample_dir)
    names, K, cam2ego = load_rig(sample_dir, image_size)
    images = []
    for n in names:
        img = Image.open(sample_dir / calib["cameras"][n]["img_path"]).convert("RGB")
        if image_size is not None:
            img = img.resize(image_size, Image.BILINEAR)
        images.append(np.asarray(img, dtype=np.uint8))
    raw = np.fromfile(sample_dir / calib["lidar"]["lidar_path"], dtype=np.float32).reshape(-1, 5)
    lidar2ego = np.asarray(calib["lidar"]["lidar2ego"], dtype=np.float64)
    points = (raw[:, :3].astype(np.float64) @ lidar2ego[:3, :3].T + lidar2ego[:3, 3]).astype(np.float32)
    return Frame(camera_names=list(names), images=np.stack(images), intrinsics=K, cam2ego=cam2ego,
                 points=points, boxes=_boxes_in_ego(calib), stamp_ns=int(round(calib["timestamp_s"] * 1e9)))


def points_in_box(points: np.ndarray, box: dict) -> np.ndarray:
    """Boolean mask of base_link points inside a yawed box."""
    d = points[:, :3] - box["center"]
    c, s = np.cos(box["yaw"]), np.sin(box["yaw"])
    lx, ly = c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]
    half = np.asarray(box["size"]) / 2
    return (np.abs(lx) <= half[0]) & (np.abs(ly) <= half[1]) & (np.abs(d[:, 2]) <= half[2])

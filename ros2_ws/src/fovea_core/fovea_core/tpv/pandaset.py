"""Reader for PandaSet sequences stored as npz + JSON + JPEG (``shared/data/tpv/pandaset_<seq>``, see PROVENANCE.md).

Nothing pickled is read: ``np.load(..., allow_pickle=False)``, ``json.load`` and PIL only. A frame comes out in
the one ``Frame`` format the generator and the nuScenes reader produce.

**base_link** (REP-103: x forward, y left, z up), rigidly attached to the Pandar64 pose of ``lidar/poses.json``:
PandaSet's lidar frame has x right, y forward, z up, so base x = lidar +y, base y = lidar -x. Its z axis is
tilted by the sequence's mean mounting tilt (about 2 degrees in sequence 002) so that it stands normal to the
road (the road is flat to 0.15 degrees in world coordinates there), and its origin is on the road surface below
the lidar pose's origin (0.31 m below it in 002, measured from the road-labelled returns). The six cameras then
sit 1.9-2.2 m above base_link's origin.

**Camera poses** are given at each camera's own capture time (18-100 ms before the sweep). A frame's
``cam2ego`` is exact for that frame: base_link at the sweep time -> world -> camera at its time (the way
TPVFormer's lidar2img chains ego poses). ``rig()`` is the fixed calibration a robot would publish on
/tf_static: each camera against the lidar pose interpolated to the camera's time, averaged over the sequence.

**Classes** (``CLASS_MAP``): PandaSet's 42 semantic classes onto Fovea's 8 (``scenes.CLASS_NAMES``); a class
with no counterpart is ``IGNORE`` (left out of every loss and metric), never guessed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from fovea_core.geometry.transforms import (interpolate_rigid, invert_rigid, matrix_to_quaternion,
                                            rigid_transform, transform_points)

from ..paths import shared_data_dir
from .frame import IGNORE, Frame
from .projection import scale_intrinsics
from .scenes import BUILDING, PEDESTRIAN, POLE, ROAD, SIDEWALK, TERRAIN, VEGETATION, VEHICLE

# In the model's camera-slot order (the nuScenes one: front, front-right, front-left, back, back-left, back-right):
# PandaSet's side cameras (left, right, ~90 degrees) take the back-left / back-right slots.
CAMERAS = ("front_camera", "front_right_camera", "front_left_camera", "back_camera", "left_camera", "right_camera")
NATIVE_SIZE = (960, 540)  # width, height of the stored JPEGs (the originals are 1920x1080)
# PIL's resize aligned pixel corners when the originals were halved: with pixel centres at integer
# coordinates (our convention) content sits 0.25 px up-left of the scaled principal point (PROVENANCE.md).
PIXEL_CENTRE_SHIFT = 0.25

# PandaSet semantic class -> Fovea class. Lane and road markings are painted road. "Driveway" is a paved surface
# cars drive on (nuScenes counts it as driveable surface). "Ground" is unpaved ground: terrain. Signs are what
# the pole class stands for (nuScenes lidarseg puts poles and signs in static.manmade; our generator models them
# as poles). Vehicles follow the nuScenes lidarseg vehicle classes our vehicle class stands for (car, truck,
# bus, trailer, construction); two-wheelers, rail vehicles and pedicabs have no counterpart. "Other Static
# Object" mixes poles, hydrants, benches, walls and more: ignored rather than guessed.
CLASS_MAP: dict[str, int | None] = {
    "Smoke": None, "Exhaust": None, "Spray or rain": None, "Reflection": None,
    "Vegetation": VEGETATION, "Ground": TERRAIN,
    "Road": ROAD, "Lane Line Marking": ROAD, "Stop Line Marking": ROAD, "Other Road Marking": ROAD,
    "Sidewalk": SIDEWALK, "Driveway": ROAD,
    "Car": VEHICLE, "Pickup Truck": VEHICLE, "Medium-sized Truck": VEHICLE, "Semi-truck": VEHICLE,
    "Towed Object": VEHICLE, "Motorcycle": None, "Other Vehicle - Construction Vehicle": VEHICLE,
    "Other Vehicle - Uncommon": VEHICLE, "Other Vehicle - Pedicab": None, "Emergency Vehicle": VEHICLE,
    "Bus": VEHICLE, "Personal Mobility Device": None, "Motorized Scooter": None, "Bicycle": None,
    "Train": None, "Trolley": None, "Tram / Subway": None,
    "Pedestrian": PEDESTRIAN, "Pedestrian with Object": PEDESTRIAN,
    "Animals - Bird": None, "Animals - Other": None,
    "Pylons": None, "Road Barriers": None, "Signs": POLE, "Cones": None, "Construction Signs": None,
    "Temporary Construction Barriers": None, "Rolling Containers": None,
    "Building": BUILDING, "Other Static Object": None,
}


def default_root() -> Path:
    return shared_data_dir() / "tpv" / "pandaset_002"


def _pose(entry: dict) -> np.ndarray:
    p, q = entry["position"], entry["heading"]
    return rigid_transform([p["x"], p["y"], p["z"]], [q["x"], q["y"], q["z"], q["w"]])


def _mean_rigid(transforms: np.ndarray) -> np.ndarray:
    """Mean of nearby rigid transforms: mean translation, rotation = closest rotation to the mean matrix."""
    u, _, vt = np.linalg.svd(transforms[:, :3, :3].mean(0))
    R = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = R, transforms[:, :3, 3].mean(0)
    return out


@dataclass
class Sweep:
    points_world: np.ndarray  # (P, 3) float64
    source_labels: np.ndarray  # (P,) PandaSet class ids 1..42
    intensity: np.ndarray     # (P,) uint8
    time: np.ndarray          # (P,) float64 seconds


class PandaSetSequence:
    """One converted PandaSet sequence. ``frames``: the frame numbers present on disk."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root or default_root())
        if not (self.root / "lidar" / "poses.json").exists():
            raise FileNotFoundError(f"{self.root} is not a converted PandaSet sequence (no lidar/poses.json)")
        self.class_names = {int(k): v for k, v in json.loads((self.root / "classes.json").read_text()).items()}
        unknown = set(self.class_names.values()) - set(CLASS_MAP)
        if unknown:
            raise ValueError(f"PandaSet classes without a mapping entry: {sorted(unknown)}")
        self.lidar_poses = np.stack([_pose(e) for e in self._json("lidar/poses.json")])
        self.lidar_times = np.asarray(self._json("lidar/timestamps.json"), dtype=np.float64)
        self.camera_poses = {c: np.stack([_pose(e) for e in self._json(f"camera/{c}/poses.json")]) for c in CAMERAS}
        self.camera_times = {c: np.asarray(self._json(f"camera/{c}/timestamps.json"), np.float64) for c in CAMERAS}
        self.native_K = {}
        for c in CAMERAS:
            k = self._json(f"camera/{c}/intrinsics.json")
            self.native_K[c] = np.array([[k["fx"], 0.0, k["cx"] - PIXEL_CENTRE_SHIFT],
                                         [0.0, k["fy"], k["cy"] - PIXEL_CENTRE_SHIFT], [0.0, 0.0, 1.0]])
        self.frames = sorted(int(p.stem) for p in (self.root / "lidar").glob("[0-9][0-9].npz"))
        lut = np.full(max(self.class_names) + 1, IGNORE, dtype=np.int64)
        for cid, name in self.class_names.items():
            lut[cid] = IGNORE if CLASS_MAP[name] is None else CLASS_MAP[name]
        self.label_lut = lut

    def _json(self, rel: str):
        return json.loads((self.root / rel).read_text())

    # ---------------------------------------------------------------- base_link
    @cached_property
    def lidar_to_base(self) -> np.ndarray:
        """T_lidar_base: base_link in the lidar pose's frame (constant over the sequence, see module doc)."""
        up = np.mean([T[:3, :3].T @ np.array([0.0, 0.0, 1.0]) for T in self.lidar_poses[self.frames]], axis=0)
        z = up / np.linalg.norm(up)
        forward = np.array([0.0, 1.0, 0.0])  # lidar +y
        x = forward - forward.dot(z) * z
        x /= np.linalg.norm(x)
        T = np.eye(4)
        T[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
        # Road height below the lidar pose origin along z: median of road returns within 15 m, over a few sweeps.
        heights = []
        for f in self.frames[::8]:
            sweep = self.sweep(f)
            local = transform_points(invert_rigid(self.lidar_poses[f] @ T), sweep.points_world)
            road = (self.label_lut[sweep.source_labels] == ROAD) & (np.hypot(local[:, 0], local[:, 1]) < 15.0)
            heights.append(np.median(local[road, 2]))
        T[:3, 3] = float(np.median(heights)) * z
        return T

    def ego2world(self, frame: int) -> np.ndarray:
        return self.lidar_poses[frame] @ self.lidar_to_base

    def lidar_pose_at(self, t: float) -> np.ndarray:
        """The lidar pose interpolated (lerp + slerp) to time ``t`` between the two nearest frames."""
        i = int(np.clip(np.searchsorted(self.lidar_times, t) - 1, 0, len(self.lidar_times) - 2))
        frac = (t - self.lidar_times[i]) / (self.lidar_times[i + 1] - self.lidar_times[i])
        a, b = self.lidar_poses[i], self.lidar_poses[i + 1]
        return interpolate_rigid(a[:3, 3], matrix_to_quaternion(a[:3, :3]), b[:3, 3],
                                 matrix_to_quaternion(b[:3, :3]), float(frac))

    # ---------------------------------------------------------------- rig
    @cached_property
    def rig_cam2ego(self) -> np.ndarray:
        """(6, 4, 4) fixed camera-optical -> base_link calibration (``CAMERAS`` order)."""
        out = []
        for c in CAMERAS:
            per_frame = np.stack([invert_rigid(self.lidar_pose_at(self.camera_times[c][f])) @ self.camera_poses[c][f]
                                  for f in self.frames])
            out.append(invert_rigid(self.lidar_to_base) @ _mean_rigid(per_frame))
        return np.stack(out)

    def rig(self, image_size: tuple[int, int] | None = None):
        """(camera names, intrinsics (6,3,3) for ``image_size`` (w, h), cam2ego (6,4,4)): the fixed calibration."""
        return list(CAMERAS), self.intrinsics(image_size), self.rig_cam2ego.copy()

    def intrinsics(self, image_size: tuple[int, int] | None = None) -> np.ndarray:
        K = np.stack([self.native_K[c] for c in CAMERAS])
        if image_size is None or tuple(image_size) == NATIVE_SIZE:
            return K
        sx, sy = image_size[0] / NATIVE_SIZE[0], image_size[1] / NATIVE_SIZE[1]
        return np.stack([scale_intrinsics(k, sx, sy) for k in K])

    def frame_cam2ego(self, frame: int) -> np.ndarray:
        """(6, 4, 4) per-frame camera -> base_link at the sweep time (motion between the two captures included)."""
        to_ego = invert_rigid(self.ego2world(frame))
        return np.stack([to_ego @ self.camera_poses[c][frame] for c in CAMERAS])

    # ---------------------------------------------------------------- data
    def sweep(self, frame: int) -> Sweep:
        with np.load(self.root / "lidar" / f"{frame:02d}.npz", allow_pickle=False) as d:
            xyz = np.stack([d["x"], d["y"], d["z"]], axis=1).astype(np.float64)
            return Sweep(xyz, d["label"].astype(np.int64), d["intensity"].copy(), d["t"].astype(np.float64))

    def images(self, frame: int, image_size: tuple[int, int] | None = None) -> np.ndarray:
        from PIL import Image

        out = []
        for c in CAMERAS:
            with Image.open(self.root / "camera" / c / f"{frame:02d}.jpg") as img:
                img = img.convert("RGB")
                if image_size is not None and img.size != tuple(image_size):
                    img = img.resize(tuple(image_size), Image.BILINEAR)
                out.append(np.asarray(img, dtype=np.uint8))
        return np.stack(out)

    def cuboids(self, frame: int) -> list[dict]:
        return self._json(f"annotations/cuboids/{frame:02d}.json")

    def boxes_in_ego(self, frame: int) -> list[dict]:
        """Cuboids as base_link boxes: ``size[0]`` along the heading (PandaSet's ``dimensions.y``, the length)."""
        to_ego = invert_rigid(self.ego2world(frame))
        boxes = []
        for c in self.cuboids(frame):
            centre = transform_points(to_ego, [[c["position.x"], c["position.y"], c["position.z"]]])[0]
            # PandaSet's box x axis (rotated by yaw about world z) is its width; the heading is its y axis.
            heading = to_ego[:3, :3] @ np.array([np.cos(c["yaw"] + np.pi / 2), np.sin(c["yaw"] + np.pi / 2), 0.0])
            boxes.append({"center": centre, "size": np.array([c["dimensions.y"], c["dimensions.x"], c["dimensions.z"]]),
                          "yaw": float(np.arctan2(heading[1], heading[0])), "category": c["label"],
                          "class": CLASS_MAP.get(c["label"]), "uuid": c["uuid"], "stationary": bool(c["stationary"]),
                          "sensor_id": int(c["cuboids.sensor_id"])})
        return boxes

    def load_frame(self, frame: int, image_size: tuple[int, int] | None = None) -> Frame:
        """Frame ``frame``: images (resized to ``image_size`` when given), per-frame cam2ego, the Pandar64 sweep in
        base_link with Fovea labels (IGNORE where unmappable), base_link boxes and the base_link -> world pose."""
        if frame not in self.frames:
            raise KeyError(f"frame {frame} is not in {self.root} (present: {self.frames[0]}..{self.frames[-1]})")
        sweep = self.sweep(frame)
        ego2world = self.ego2world(frame)
        points = transform_points(invert_rigid(ego2world), sweep.points_world).astype(np.float32)
        return Frame(camera_names=list(CAMERAS), images=self.images(frame, image_size),
                     intrinsics=self.intrinsics(image_size), cam2ego=self.frame_cam2ego(frame), points=points,
                     point_labels=self.label_lut[sweep.source_labels], boxes=self.boxes_in_ego(frame),
                     stamp_ns=int(round(self.lidar_times[frame] * 1e9)), ego2world=ego2world)

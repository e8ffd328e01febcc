"""Procedural street scenes for training TPVFormer without real labelled data.

A scene is a handful of analytic primitives in base_link (x forward, y left, z up, ground at z = 0): a road
(optionally crossed by a second one) with sidewalks and terrain beside it, box buildings, two-box vehicles,
pedestrians (cylinder + head sphere), poles and trees (trunk cylinder + crown sphere) and bushes. ``render.py``
ray-casts these into cameras and a lidar; ``voxel_labels`` gives the dense ground truth.

Classes and their nuScenes lidarseg counterparts (index 0 is the model's explicit empty class):

| id | class      | nuScenes lidarseg classes it stands for                                  |
|----|------------|--------------------------------------------------------------------------|
| 0  | empty      | free space (noise is not modelled)                                       |
| 1  | road       | flat.driveable_surface                                                   |
| 2  | sidewalk   | flat.sidewalk                                                            |
| 3  | terrain    | flat.terrain (and flat.other)                                            |
| 4  | building   | static.manmade (buildings, walls)                                        |
| 5  | vegetation | static.vegetation                                                        |
| 6  | vehicle    | vehicle.car, vehicle.truck, vehicle.bus.*, vehicle.trailer, vehicle.construction |
| 7  | pedestrian | human.pedestrian.*                                                       |
| 8  | pole       | static.manmade (poles, signs; lidarseg has no separate pole class)       |
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ("empty", "road", "sidewalk", "terrain", "building", "vegetation", "vehicle", "pedestrian", "pole")
EMPTY, ROAD, SIDEWALK, TERRAIN, BUILDING, VEGETATION, VEHICLE, PEDESTRIAN, POLE = range(len(CLASS_NAMES))
NUSCENES_LIDARSEG = {
    "road": ["flat.driveable_surface"], "sidewalk": ["flat.sidewalk"], "terrain": ["flat.terrain", "flat.other"],
    "building": ["static.manmade"], "vegetation": ["static.vegetation"],
    "vehicle": ["vehicle.car", "vehicle.truck", "vehicle.bus.bendy", "vehicle.bus.rigid", "vehicle.trailer",
                "vehicle.construction"],
    "pedestrian": ["human.pedestrian.adult", "human.pedestrian.child", "human.pedestrian.construction_worker",
                   "human.pedestrian.police_officer"],
    "pole": ["static.manmade"],
}
# nuScenes detection categories (as in calibration_and_boxes.json) -> the class a box's points should get.
NUSCENES_BOX_TO_CLASS = {"car": VEHICLE, "truck": VEHICLE, "trailer": VEHICLE, "bus": VEHICLE,
                         "construction_vehicle": VEHICLE, "pedestrian": PEDESTRIAN}
# Palette for pictures and RViz markers (RGB 0..1).
CLASS_COLORS = np.array([[0, 0, 0], [0.55, 0.1, 0.6], [0.95, 0.55, 0.85], [0.6, 0.8, 0.3], [0.95, 0.8, 0.3],
                         [0.1, 0.6, 0.1], [0.1, 0.4, 1.0], [1.0, 0.2, 0.2], [1.0, 0.6, 0.0]], dtype=np.float32)
GROUND_SLAB = (-0.4, 0.0)  # the ground occupies this z interval in the dense ground truth


@dataclass
class Scene:
    """Primitives of one scene. Boxes are yawed about z; cylinders are vertical; colours are base albedo."""

    road_yaw: float
    road_half_width: float
    sidewalk_width: float
    cross_road_u: float | None  # along-road coordinate of a crossing road, or None
    boxes: np.ndarray        # (n, 9): cx, cy, cz, hx, hy, hz, yaw, class, style
    box_colors: np.ndarray   # (n, 3)
    cylinders: np.ndarray    # (n, 6): cx, cy, z0, z1, radius, class
    cyl_colors: np.ndarray
    spheres: np.ndarray      # (n, 5): cx, cy, cz, radius, class
    sphere_colors: np.ndarray
    sun: np.ndarray          # unit vector towards the sun
    ambient: float
    exposure: float

    def road_coords(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.road_yaw), np.sin(self.road_yaw)
        return c * x + s * y, -s * x + c * y

    def ground_class(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = self.road_coords(x, y)
        across = np.abs(v)
        if self.cross_road_u is not None:
            across = np.minimum(across, np.abs(u - self.cross_road_u))
        out = np.full(np.shape(x), TERRAIN, dtype=np.int64)
        out[across < self.road_half_width + self.sidewalk_width] = SIDEWALK
        out[across < self.road_half_width] = ROAD
        return out


def _rot_xy(yaw: float, u: float, v: float) -> tuple[float, float]:
    c, s = np.cos(yaw), np.sin(yaw)
    return c * u - s * v, s * u + c * v


def generate_scene(seed: int, extent: float = 40.0) -> Scene:
    """A random street scene around the ego vehicle (which sits on the road at the origin, facing +x)."""
    rng = np.random.default_rng(seed)
    yaw = float(rng.normal(0.0, 0.1))  # the ego vehicle drives along the road
    rw = float(rng.uniform(3.0, 7.0))
    sw = float(rng.uniform(1.5, 4.0))
    cross = float(rng.uniform(-25, 25)) if rng.random() < 0.35 else None
    if cross is not None and abs(cross) < rw + sw + 2:
        cross = None  # keep the ego vehicle off the crossing's sidewalk
    boxes, box_colors, cyls, cyl_colors, sph, sph_colors = [], [], [], [], [], []

    def in_crossing(u: float, margin: float) -> bool:
        return cross is not None and abs(u - cross) < rw + sw + margin

    # Buildings along both sides, set back behind the sidewalk and a strip of terrain.
    for side in (-1, 1):
        u = -extent
        setback = rw + sw + float(rng.uniform(0.0, 6.0))
        while u < extent:
            length = float(rng.uniform(6, 22))
            gap = float(rng.uniform(0.5, 8.0))
            depth = float(rng.uniform(6, 14))
            height = float(rng.uniform(3.5, 14))
            cu = u + length / 2
            if not in_crossing(cu, length / 2) and rng.random() < 0.85:
                cv = side * (setback + depth / 2)
                cx, cy = _rot_xy(yaw, cu, cv)
                boxes.append([cx, cy, height / 2, length / 2, depth / 2, height / 2, yaw, BUILDING, rng.integers(3)])
                base = rng.choice([[0.75, 0.7, 0.6], [0.6, 0.35, 0.3], [0.55, 0.55, 0.58], [0.85, 0.82, 0.75],
                                   [0.45, 0.4, 0.35]])
                box_colors.append(np.clip(np.array(base) + rng.normal(0, 0.05, 3), 0, 1))
            u += length + gap
        # Trees and bushes on the terrain strip / sidewalk back edge, poles at the kerb.
        u = -extent + float(rng.uniform(0, 8))
        while u < extent:
            v = side * (rw + sw - float(rng.uniform(0.3, 0.8)))
            if not in_crossing(u, 1.0):
                x, y = _rot_xy(yaw, u, v)
                if rng.random() < 0.5:
                    h = float(rng.uniform(1.5, 3.5))
                    r = float(rng.uniform(1.2, 2.8))
                    cyls.append([x, y, 0.0, h + 0.3 * r, float(rng.uniform(0.12, 0.25)), VEGETATION])
                    cyl_colors.append([0.35, 0.25, 0.15])
                    sph.append([x, y, h + 0.8 * r, r, VEGETATION])
                    sph_colors.append(np.clip([0.2, 0.5, 0.15] + rng.normal(0, 0.05, 3), 0, 1))
                elif rng.random() < 0.5:
                    r = float(rng.uniform(0.5, 1.2))
                    sph.append([x, y, 0.3 * r, r, VEGETATION])
                    sph_colors.append(np.clip([0.25, 0.45, 0.15] + rng.normal(0, 0.05, 3), 0, 1))
            u += float(rng.uniform(5, 14))
        u = -extent + float(rng.uniform(0, 10))
        while u < extent:
            v = side * (rw + float(rng.uniform(0.2, 0.5)))
            if not in_crossing(u, 0.5):
                x, y = _rot_xy(yaw, u, v)
                cyls.append([x, y, 0.0, float(rng.uniform(3.5, 8.0)), float(rng.uniform(0.1, 0.2)), POLE])
                cyl_colors.append(np.clip([0.5, 0.5, 0.5] + rng.normal(0, 0.08, 3), 0, 1))
            u += float(rng.uniform(8, 20))
        # Pedestrians on the sidewalk.
        for _ in range(int(rng.integers(0, 7))):
            u = float(rng.uniform(-extent * 0.8, extent * 0.8))
            v = side * (rw + float(rng.uniform(0.4, sw - 0.3)))
            x, y = _rot_xy(yaw, u, v)
            h = float(rng.uniform(1.5, 1.9))
            r = float(rng.uniform(0.22, 0.32))
            cyls.append([x, y, 0.0, h - 0.25, r, PEDESTRIAN])
            cyl_colors.append(rng.uniform(0.05, 0.9, 3))
            sph.append([x, y, h - 0.12, 0.13, PEDESTRIAN])
            sph_colors.append([0.8, 0.6, 0.45])
    # Vehicles in lanes and parked at the kerb; none overlapping the ego vehicle.
    lanes = [-rw / 2, rw / 2, -(rw - 1.1), rw - 1.1]
    for lane in lanes:
        u = -extent + float(rng.uniform(0, 12))
        while u < extent:
            truck = rng.random() < 0.15
            length = float(rng.uniform(6, 10) if truck else rng.uniform(3.8, 5.0))
            width = float(rng.uniform(2.3, 2.6) if truck else rng.uniform(1.7, 2.0))
            height = float(rng.uniform(2.6, 3.5) if truck else rng.uniform(1.4, 1.7))
            cu = u + length / 2
            # ego body: about x in [-1, 4], |y| < 1 (origin at the rear axle)
            clear_of_ego = abs(lane) - width / 2 > 1.3 or cu - length / 2 > 5.5 or cu + length / 2 < -2.5
            if clear_of_ego and rng.random() < 0.55 and abs(lane) + width / 2 < rw:
                cx, cy = _rot_xy(yaw, cu, lane)
                color = rng.choice([[0.8, 0.1, 0.1], [0.1, 0.2, 0.6], [0.9, 0.9, 0.9], [0.1, 0.1, 0.1],
                                    [0.6, 0.6, 0.62], [0.2, 0.5, 0.3], [0.9, 0.7, 0.1]])
                color = np.clip(np.array(color) + rng.normal(0, 0.04, 3), 0, 1)
                body_h = height * (1.0 if truck else 0.55)
                boxes.append([cx, cy, 0.25 + body_h / 2, length / 2, width / 2, body_h / 2, yaw, VEHICLE, 0])
                box_colors.append(color)
                if not truck:  # the cabin, with its windows drawn by the renderer
                    cab_h = height - body_h - 0.25
                    boxes.append([cx - 0.1 * length * np.cos(yaw), cy - 0.1 * length * np.sin(yaw),
                                  0.25 + body_h + cab_h / 2, length * 0.28, width / 2 - 0.05, cab_h / 2, yaw,
                                  VEHICLE, 1])
                    box_colors.append(color)
                # wheels and underbody: a dark slab so the vehicle touches the ground
                boxes.append([cx, cy, 0.15, length / 2 - 0.3, width / 2 - 0.1, 0.15, yaw, VEHICLE, 2])
                box_colors.append([0.05, 0.05, 0.05])
            u += length + float(rng.uniform(1.0, 12.0))
    sun_el = float(rng.uniform(0.3, 1.2))
    sun_az = float(rng.uniform(-np.pi, np.pi))
    sun = np.array([np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el)])

    def arr(rows, width):
        return np.asarray(rows, dtype=np.float64).reshape(-1, width)

    return Scene(road_yaw=yaw, road_half_width=rw, sidewalk_width=sw, cross_road_u=cross,
                 boxes=arr(boxes, 9), box_colors=arr(box_colors, 3), cylinders=arr(cyls, 6),
                 cyl_colors=arr(cyl_colors, 3), spheres=arr(sph, 5), sphere_colors=arr(sph_colors, 3),
                 sun=sun, ambient=float(rng.uniform(0.3, 0.55)), exposure=float(rng.uniform(0.75, 1.2)))


def inside_labels(scene: Scene, points: np.ndarray) -> np.ndarray:
    """Class of the solid each point (n, 3) lies in; EMPTY where none. Objects win over the ground slab."""
    pts = np.asarray(points, dtype=np.float64)
    out = np.full(len(pts), EMPTY, dtype=np.int64)
    in_ground = (pts[:, 2] >= GROUND_SLAB[0]) & (pts[:, 2] <= GROUND_SLAB[1])
    out[in_ground] = scene.ground_class(pts[in_ground, 0], pts[in_ground, 1])
    for cx, cy, cz, hx, hy, hz, yaw, cls, _ in scene.boxes:
        dx, dy = pts[:, 0] - cx, pts[:, 1] - cy
        c, s = np.cos(yaw), np.sin(yaw)
        lx, ly = c * dx + s * dy, -s * dx + c * dy
        hit = (np.abs(lx) <= hx) & (np.abs(ly) <= hy) & (np.abs(pts[:, 2] - cz) <= hz)
        out[hit] = int(cls)
    for cx, cy, z0, z1, r, cls in scene.cylinders:
        hit = ((pts[:, 0] - cx) ** 2 + (pts[:, 1] - cy) ** 2 <= r * r) & (pts[:, 2] >= z0) & (pts[:, 2] <= z1)
        out[hit] = int(cls)
    for cx, cy, cz, r, cls in scene.spheres:
        hit = ((pts - [cx, cy, cz]) ** 2).sum(1) <= r * r
        hit &= pts[:, 2] >= GROUND_SLAB[1] if cls != PEDESTRIAN else True
        out[hit] = int(cls)
    return out


def voxel_labels(scene: Scene, x_range, y_range, z_range, shape, subsamples: int = 4) -> np.ndarray:
    """Dense semantic voxel ground truth (X, Y, Z) int64 by majority vote of ``subsamples**3`` points per voxel.

    Non-empty subsamples vote; ties go to the object classes (so a car standing on the road keeps its lowest
    voxel layer). A voxel is empty when none of its subsamples is inside a solid.
    """
    X, Y, Z = shape
    lo = np.array([x_range[0], y_range[0], z_range[0]])
    size = (np.array([x_range[1], y_range[1], z_range[1]]) - lo) / np.array(shape)
    k = subsamples
    frac = (np.arange(k) + 0.5) / k
    counts = np.zeros((len(CLASS_NAMES), X, Y, Z), dtype=np.int32)
    # Work column slab by column slab to bound memory: one x index at a time.
    gy, gz, fy, fz = np.meshgrid(np.arange(Y), np.arange(Z), frac, frac, indexing="ij")
    ys = lo[1] + (gy + fy) * size[1]
    zs = lo[2] + (gz + fz) * size[2]
    for ix in range(X):
        for fx in frac:
            xs = np.full(ys.shape, lo[0] + (ix + fx) * size[0])
            lab = inside_labels(scene, np.stack([xs.ravel(), ys.ravel(), zs.ravel()], 1)).reshape(ys.shape)
            for c in range(1, len(CLASS_NAMES)):
                counts[c, ix] += (lab == c).sum(axis=(2, 3))
    score = counts.astype(np.float64)
    score[[VEHICLE, PEDESTRIAN, POLE, VEGETATION, BUILDING]] += 0.5
    score[:, counts[1:].sum(0) == 0] = 0.0
    best = score[1:].argmax(0) + 1
    return np.where(counts[1:].sum(0) > 0, best, EMPTY).astype(np.int64)

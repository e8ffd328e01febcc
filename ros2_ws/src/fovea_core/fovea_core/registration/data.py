"""Training and evaluation data: procedural scenes scanned like RGB-D fragments or rotating lidars, pairs
with partial overlap and known relative pose, matched with the same FPFH front end as at run time.

Scene families
- indoor rooms: walls, floor, ceiling, boxes (furniture) and cylinders; a "fragment" fuses several pinhole
  depth views from one spot (as 3DMatch fuses an RGB-D sequence), range ≤ 3.5 m, depth-proportional noise.
- outdoor streets: ground, building blocks with gaps along both sides, parked cars, poles, trees; a 32-beam
  lidar (−30°..+10°, 0.33° azimuth) at 1.8 m height, range ≤ 70 m, 2 cm noise.
- a real lidar sweep (nuScenes LIDAR_TOP): two random point subsets, cropped around different centres and
  moved by a random rigid motion, so FPFH sees realistic outdoor clutter.
Ground-truth labels: a correspondence is an inlier when ‖T_gt x − y‖ < τ.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open3d as o3d

from fovea_core.paths import shared_data_dir

from .features import build_correspondences, voxel_downsample
from .rigid import apply_transform, axis_angle_to_matrix, make_transform

INDOOR_TAU, INDOOR_VOXEL = 0.10, 0.05
OUTDOOR_TAU, OUTDOOR_VOXEL = 1.2, 0.5
NUSCENES_SWEEP = Path("tpv/nuscenes_demo_sample/n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin")


@dataclass
class CorrespondenceSample:
    """One registration problem reduced to its putative matches."""

    correspondences: np.ndarray  # (M, 6) float32, metres: [source xyz, target xyz]
    labels: np.ndarray  # (M,) float32, 1 = inlier under the ground truth
    inlier_threshold: float
    transform: np.ndarray  # 4x4 ground truth (source → target)
    family: str


# ----------------------------------------------------------------------------------------------- scenes
def _box(size, centre, yaw=0.0) -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh.create_box(*size)
    mesh.translate(-np.asarray(size) / 2.0)
    mesh.rotate(axis_angle_to_matrix(np.array([0.0, 0.0, yaw])), center=(0, 0, 0))
    return mesh.translate(centre)


def _cylinder(radius, height, centre) -> o3d.geometry.TriangleMesh:
    return o3d.geometry.TriangleMesh.create_cylinder(radius, height, resolution=16).translate(centre)


def indoor_room(rng: np.random.Generator) -> list[o3d.geometry.TriangleMesh]:
    width, depth, height = rng.uniform(4, 8), rng.uniform(4, 8), rng.uniform(2.5, 3.2)
    wall = 0.1
    meshes = [
        _box((width, depth, wall), (0, 0, -wall / 2)),
        _box((width, depth, wall), (0, 0, height + wall / 2)),
        _box((wall, depth, height), (-width / 2, 0, height / 2)),
        _box((wall, depth, height), (width / 2, 0, height / 2)),
        _box((width, wall, height), (0, -depth / 2, height / 2)),
        _box((width, wall, height), (0, depth / 2, height / 2)),
    ]
    for _ in range(rng.integers(6, 14)):
        x, y = rng.uniform(-width / 2 + 0.4, width / 2 - 0.4), rng.uniform(-depth / 2 + 0.4, depth / 2 - 0.4)
        if rng.random() < 0.75:
            size = rng.uniform([0.3, 0.3, 0.3], [1.8, 1.0, 2.0])
            z = size[2] / 2 if rng.random() < 0.8 else rng.uniform(0.6, 1.2)  # some shelves float on walls
            meshes.append(_box(size, (x, y, z), yaw=rng.uniform(0, np.pi)))
        else:
            h = rng.uniform(0.4, 1.5)
            meshes.append(_cylinder(rng.uniform(0.1, 0.4), h, (x, y, h / 2)))
    return meshes


def outdoor_street(rng: np.random.Generator, length: float = 160.0) -> list[o3d.geometry.TriangleMesh]:
    half_width = rng.uniform(6, 14)
    meshes = [_box((length + 60, 2 * half_width + 60, 0.2), (0, 0, -0.1))]
    for side in (-1, 1):
        x = -length / 2
        while x < length / 2:
            block = rng.uniform(6, 25)
            if rng.random() < 0.8:
                setback = rng.uniform(0, 6)
                depth = rng.uniform(6, 15)
                meshes.append(_box((block, depth, rng.uniform(4, 20)),
                                   (x + block / 2, side * (half_width + setback + depth / 2), 0),
                                   yaw=rng.normal(0, 0.03)))
            x += block + rng.uniform(0, 8)
    for _ in range(rng.integers(8, 25)):  # parked cars
        side = rng.choice([-1, 1])
        meshes.append(_box((rng.uniform(3.8, 5.0), rng.uniform(1.7, 2.0), rng.uniform(1.4, 1.9)),
                           (rng.uniform(-length / 2, length / 2), side * (half_width - 2.0), 0.8),
                           yaw=rng.normal(0, 0.1)))
    for _ in range(rng.integers(10, 30)):  # poles and trees at the kerb
        side = rng.choice([-1, 1])
        x, y = rng.uniform(-length / 2, length / 2), side * (half_width - rng.uniform(0.2, 1.0))
        h = rng.uniform(3, 8)
        meshes.append(_cylinder(rng.uniform(0.08, 0.3), h, (x, y, h / 2)))
        if rng.random() < 0.5:
            crown = o3d.geometry.TriangleMesh.create_sphere(rng.uniform(1.0, 2.5), resolution=10)
            meshes.append(crown.translate((x, y, h)))
    return meshes


def _raycast(meshes, origins: np.ndarray, directions: np.ndarray, max_range: float) -> np.ndarray:
    scene = o3d.t.geometry.RaycastingScene()
    for mesh in meshes:
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    rays = np.hstack([origins, directions]).astype(np.float32)
    hits = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    valid = np.isfinite(hits) & (hits < max_range)
    return origins[valid] + directions[valid] * hits[valid, None]


def rgbd_fragment(meshes, pose: np.ndarray, rng: np.random.Generator, views: int = 5) -> np.ndarray:
    """Points in the fragment frame (pose: fragment frame → world, z forward like an optical frame)."""
    width, height, fov_x, fov_y = 96, 72, np.radians(58), np.radians(45)
    u, v = np.meshgrid(np.linspace(-np.tan(fov_x / 2), np.tan(fov_x / 2), width),
                       np.linspace(-np.tan(fov_y / 2), np.tan(fov_y / 2), height))
    camera_rays = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    camera_rays /= np.linalg.norm(camera_rays, axis=1, keepdims=True)
    points = []
    for yaw in np.linspace(-0.5, 0.5, views) * rng.uniform(0.6, 1.4):  # a short sweep of the handheld camera
        view = pose[:3, :3] @ axis_angle_to_matrix(np.array([0.0, yaw, 0.0]))
        directions = camera_rays @ view.T
        world = _raycast(meshes, np.repeat(pose[None, :3, 3], len(directions), 0), directions, 3.5)
        local = apply_transform(np.linalg.inv(pose), world)
        local += rng.normal(size=local.shape) * (0.002 + 0.003 * local[:, 2:3])
        points.append(local)
    return voxel_downsample(np.vstack(points), 0.01)


def lidar_scan(meshes, pose: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    elevations = np.radians(np.linspace(-30, 10, 32))
    azimuths = np.radians(np.arange(0, 360, 0.33)) + rng.uniform(0, 0.005)
    el, az = np.meshgrid(elevations, azimuths)
    local_rays = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)
    world = _raycast(meshes, np.repeat(pose[None, :3, 3], len(local_rays), 0), local_rays @ pose[:3, :3].T, 70.0)
    world = world[rng.random(len(world)) > 0.1]  # dropped returns
    local = apply_transform(np.linalg.inv(pose), world)
    return local + rng.normal(size=local.shape) * 0.02


def _lift(meshes):
    """Boxes are built centred on their z; anything whose bottom is below ground is lifted onto it."""
    for mesh in meshes[1:]:
        bottom = mesh.get_min_bound()[2]
        if bottom < 0:
            mesh.translate((0, 0, -bottom))
    return meshes


# ----------------------------------------------------------------------------------------------- pairs
def indoor_pair(rng: np.random.Generator):
    meshes = indoor_room(rng)
    room = meshes[0].get_max_bound()
    position = np.array([rng.uniform(-room[0] / 3, room[0] / 3), rng.uniform(-room[1] / 3, room[1] / 3),
                         rng.uniform(1.2, 1.8)])
    # optical frame looking horizontally along a random yaw, pitched down a little
    yaw, pitch = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.5)
    base = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float).T  # optical → world axes
    rotation = axis_angle_to_matrix(np.array([0, 0, yaw])) @ base @ axis_angle_to_matrix(np.array([pitch, 0, 0]))
    pose_a = make_transform(rotation, position)
    delta_rotation = axis_angle_to_matrix(rng.normal(size=3) * np.array([0.1, 0.4, 0.1]))
    pose_b = make_transform(rotation @ delta_rotation, position + rng.uniform(-0.6, 0.6, 3) * [1, 1, 0.3])
    source, target = rgbd_fragment(meshes, pose_a, rng), rgbd_fragment(meshes, pose_b, rng)
    return source, target, np.linalg.inv(pose_b) @ pose_a


def outdoor_pair(rng: np.random.Generator):
    meshes = _lift(outdoor_street(rng))
    pose_a = make_transform(axis_angle_to_matrix(np.array([0, 0, rng.normal(0, 0.1)])),
                            np.array([rng.uniform(-20, 20), rng.uniform(-2, 2), 1.8]))
    step = make_transform(axis_angle_to_matrix(np.array([rng.normal(0, 0.01), rng.normal(0, 0.01),
                                                        rng.normal(0, 0.15)])),
                          np.array([rng.uniform(2, 15), rng.uniform(-1.5, 1.5), rng.normal(0, 0.05)]))
    pose_b = pose_a @ step
    source, target = lidar_scan(meshes, pose_a, rng), lidar_scan(meshes, pose_b, rng)
    return source, target, np.linalg.inv(pose_b) @ pose_a


def nuscenes_sweep_path() -> Path:
    return shared_data_dir() / NUSCENES_SWEEP


def load_nuscenes_sweep(path: Path | None = None) -> np.ndarray:
    path = path or nuscenes_sweep_path()
    return np.fromfile(path, dtype=np.float32).reshape(-1, 5)[:, :3].astype(np.float64)


def real_sweep_pair(sweep: np.ndarray, rng: np.random.Generator):
    """Two overlapping, differently sampled crops of one real sweep, the second moved rigidly."""
    def crop(centre):
        keep = (rng.random(len(sweep)) < 0.6) & (np.linalg.norm(sweep[:, :2] - centre, axis=1) < 40.0)
        return sweep[keep] + rng.normal(size=(keep.sum(), 3)) * 0.02
    offset = rng.uniform(-12, 12, 2)
    source, target_world = crop(np.zeros(2)), crop(offset)
    motion = make_transform(axis_angle_to_matrix(np.array([0, 0, rng.uniform(-np.pi, np.pi)])),
                            np.array([*rng.uniform(-5, 5, 2), 0.0]))
    return source, apply_transform(motion, target_world), motion


FAMILIES = {
    "indoor": (indoor_pair, INDOOR_VOXEL, INDOOR_TAU),
    "outdoor": (outdoor_pair, OUTDOOR_VOXEL, OUTDOOR_TAU),
}


def correspondence_sample(source, target, transform, voxel, tau, family, rng, max_correspondences=1000):
    corr, _, _ = build_correspondences(source, target, voxel, mutual=True, max_correspondences=max_correspondences,
                                       rng=rng)
    residuals = np.linalg.norm(apply_transform(transform, corr.source) - corr.target, axis=1)
    return CorrespondenceSample(corr.stacked.astype(np.float32), (residuals < tau).astype(np.float32), tau,
                                transform, family)


def generate_samples(count_per_family: int, seed: int, include_real_sweep: bool = True, progress=None):
    """Procedural indoor + outdoor pairs (and real-sweep pairs) reduced to labelled correspondence sets."""
    rng = np.random.default_rng(seed)
    sweep = load_nuscenes_sweep() if include_real_sweep and nuscenes_sweep_path().exists() else None
    samples = []
    for index in range(count_per_family):
        for family, (make_pair, voxel, tau) in FAMILIES.items():
            source, target, transform = make_pair(rng)
            samples.append(correspondence_sample(source, target, transform, voxel, tau, family, rng))
        if sweep is not None and index % 2 == 0:
            source, target, transform = real_sweep_pair(sweep, rng)
            samples.append(correspondence_sample(source, target, transform, OUTDOOR_VOXEL, OUTDOOR_TAU,
                                                 "nuscenes", rng))
        if progress:
            progress(index + 1, count_per_family, samples)
    return samples


def draw_training_set(sample: CorrespondenceSample, size: int, outlier_ratio: float, rng: np.random.Generator):
    """A fixed-size subset with a chosen outlier ratio, taken from real FPFH matches where possible.

    Inliers and FPFH outliers are subsampled to the ratio; only when there are too few real outliers are
    synthetic ones added (a source point paired with a random target point of the same set). Also applies
    a random rotation about z to each side (FPFH is rotation invariant, the network input is not).
    """
    inliers = np.flatnonzero(sample.labels > 0.5)
    outliers = np.flatnonzero(sample.labels < 0.5)
    want_in = int(round((1.0 - outlier_ratio) * size))
    want_in = min(max(want_in, 3 if len(inliers) >= 3 else len(inliers)), len(inliers))
    chosen_in = rng.choice(inliers, want_in, replace=False)
    want_out = size - want_in
    chosen_out = rng.choice(outliers, min(want_out, len(outliers)), replace=False)
    corr = sample.correspondences[np.concatenate([chosen_in, chosen_out])].astype(np.float64)
    labels = np.concatenate([np.ones(len(chosen_in)), np.zeros(len(chosen_out))])
    missing = size - len(corr)
    if missing > 0:
        pool = sample.correspondences
        fake = np.hstack([pool[rng.integers(len(pool), size=missing), :3],
                          pool[rng.integers(len(pool), size=missing), 3:]])
        true_target = apply_transform(sample.transform, fake[:, :3])
        fake_labels = (np.linalg.norm(true_target - fake[:, 3:], axis=1) < sample.inlier_threshold).astype(float)
        corr, labels = np.vstack([corr, fake]), np.concatenate([labels, fake_labels])
    order = rng.permutation(len(corr))
    corr, labels = corr[order], labels[order]
    for side in (slice(0, 3), slice(3, 6)):
        # RGB-D fragments come in arbitrary orientations (a rotation vector with N(0, 1 rad) components, the
        # recipe of the committed model); lidar scans stay upright, so only yaw is free
        spin = (axis_angle_to_matrix(rng.normal(size=3)) if sample.family == "indoor"
                else axis_angle_to_matrix(np.array([0, 0, rng.uniform(-np.pi, np.pi)])))
        corr[:, side] = corr[:, side] @ spin.T
    return corr, labels

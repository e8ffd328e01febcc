"""Putative correspondences: voxel downsampling, FPFH descriptors (Open3D), mutual nearest neighbours.

This is the front end every method shares, so VBReg, SC2 and RANSAC always see the same correspondences.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree

from fovea_core.geometry.voxel_grid import voxel_downsample as grid_voxel_downsample


@dataclass
class Correspondences:
    """Putative matches: ``source[i]`` (source frame) is matched to ``target[i]`` (target frame)."""

    source: np.ndarray  # (M, 3) float64
    target: np.ndarray  # (M, 3) float64
    source_index: np.ndarray  # (M,) into the downsampled source cloud
    target_index: np.ndarray  # (M,) into the downsampled target cloud

    def __len__(self) -> int:
        return len(self.source)

    def subset(self, keep: np.ndarray) -> "Correspondences":
        return Correspondences(self.source[keep], self.target[keep], self.source_index[keep], self.target_index[keep])

    @property
    def stacked(self) -> np.ndarray:
        """(M, 6) array [source xyz, target xyz]: the network's input before normalisation."""
        return np.hstack([self.source, self.target])


def to_open3d(points: np.ndarray) -> o3d.geometry.PointCloud:
    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64))
    return cloud


def voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """(N, 3) → (M, 3): one point per occupied voxel at its centroid (the project's voxel grid, which works
    on structured arrays; this adapts plain xyz arrays to it)."""
    structured = np.zeros(len(points), dtype=[("x", "f8"), ("y", "f8"), ("z", "f8")])
    structured["x"], structured["y"], structured["z"] = np.asarray(points, dtype=np.float64)[:, :3].T
    down = grid_voxel_downsample(structured, voxel_size)
    return np.stack([down["x"], down["y"], down["z"]], axis=1)


def compute_fpfh(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """33-bin FPFH per point; normals from a 2-voxel radius and histograms from a 5-voxel radius.

    The radii follow the usual FPFH recipe for downsampled clouds (Open3D's global registration tutorial,
    the 3DMatch FPFH baselines) so descriptors see enough neighbours without blurring across objects.
    """
    cloud = to_open3d(points)
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2.0 * voxel_size, max_nn=30))
    feature = o3d.pipelines.registration.compute_fpfh_feature(
        cloud, o3d.geometry.KDTreeSearchParamHybrid(radius=5.0 * voxel_size, max_nn=100)
    )
    return np.asarray(feature.data, dtype=np.float32).T.copy()


BRUTE_FORCE_LIMIT = 50_000_000  # query x reference pairs below which a matrix product beats a k-d tree


def nearest_neighbour(queries: np.ndarray, references: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of the nearest reference descriptor for each query. In 33-D a k-d tree barely prunes, so for
    scan-sized sets a chunked ‖q‖² − 2 q·r + ‖r‖² product is several times faster; the tree is kept for
    very large sets, where the product's cost grows quadratically."""
    if len(queries) * len(references) > BRUTE_FORCE_LIMIT:
        return cKDTree(references).query(queries, k=1)[1]
    references = references.astype(np.float32)
    reference_norms = (references**2).sum(axis=1)
    result = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        block = queries[start:start + chunk].astype(np.float32)
        # ‖q‖² is constant per row, so it does not change the argmin
        result[start:start + chunk] = np.argmin(reference_norms[None, :] - 2.0 * block @ references.T, axis=1)
    return result


def match_features(
    source_features: np.ndarray, target_features: np.ndarray, mutual: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbour in descriptor space from source to target; with ``mutual`` keep only pairs that are
    each other's nearest neighbour (removes most many-to-one matches on repetitive structure)."""
    source_to_target = nearest_neighbour(source_features, target_features)
    source_index = np.arange(len(source_features))
    if not mutual:
        return source_index, source_to_target
    target_to_source = nearest_neighbour(target_features, source_features)
    is_mutual = target_to_source[source_to_target] == source_index
    return source_index[is_mutual], source_to_target[is_mutual]


@dataclass
class DescribedCloud:
    """A cloud ready for matching: downsampled points and their FPFH descriptors. Keep one for a keyframe
    or map and match every new scan against it without describing it again."""

    points: np.ndarray  # (M, 3) downsampled
    features: np.ndarray  # (M, 33)


def describe(points: np.ndarray, voxel_size: float) -> DescribedCloud:
    down = voxel_downsample(points, voxel_size)
    return DescribedCloud(down, compute_fpfh(down, voxel_size))


def match_clouds(
    source: DescribedCloud,
    target: DescribedCloud,
    mutual: bool = True,
    min_mutual: int = 100,
    max_correspondences: int | None = None,
    rng: np.random.Generator | None = None,
) -> Correspondences:
    """Match descriptors; falls back to one-way matches when the mutual filter leaves fewer than
    ``min_mutual`` pairs (small overlaps), and randomly subsamples to ``max_correspondences`` to bound the
    network's N^2 attention."""
    source_index, target_index = match_features(source.features, target.features, mutual=mutual)
    if mutual and len(source_index) < min_mutual:
        source_index, target_index = match_features(source.features, target.features, mutual=False)
    if max_correspondences is not None and len(source_index) > max_correspondences:
        rng = rng if rng is not None else np.random.default_rng(0)
        keep = np.sort(rng.choice(len(source_index), max_correspondences, replace=False))
        source_index, target_index = source_index[keep], target_index[keep]
    return Correspondences(source.points[source_index], target.points[target_index], source_index, target_index)


def build_correspondences(
    source_points: np.ndarray,
    target_points: np.ndarray,
    voxel_size: float,
    mutual: bool = True,
    min_mutual: int = 100,
    max_correspondences: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[Correspondences, np.ndarray, np.ndarray]:
    """Describe both clouds and match them; returns the correspondences and the two downsampled clouds."""
    source, target = describe(source_points, voxel_size), describe(target_points, voxel_size)
    return match_clouds(source, target, mutual, min_mutual, max_correspondences, rng), source.points, target.points

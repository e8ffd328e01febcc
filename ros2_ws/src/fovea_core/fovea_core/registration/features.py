"""Putative correspondences: voxel downsampling, FPFH descriptors (Open3D), mutual nearest neighbours.

This is the front end every method shares, so VBReg, SC2 and RANSAC always see the same correspondences.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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


def compute_fpfh(points: np.ndarray, voxel_size: float, max_neighbors: int = 100) -> np.ndarray:
    """33-bin FPFH per point; normals from a 2-voxel radius and histograms from a 5-voxel radius.

    The radii follow the usual FPFH recipe for downsampled clouds (Open3D's global registration tutorial,
    the 3DMatch FPFH baselines) so descriptors see enough neighbours without blurring across objects.
    ``max_neighbors`` caps the histogram neighbourhood (Open3D's max_nn); the cost is linear in it.
    """
    cloud = to_open3d(points)
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2.0 * voxel_size, max_nn=30))
    feature = o3d.pipelines.registration.compute_fpfh_feature(
        cloud, o3d.geometry.KDTreeSearchParamHybrid(radius=5.0 * voxel_size, max_nn=max_neighbors)
    )
    return np.asarray(feature.data, dtype=np.float32).T.copy()


SELECTIONS = ("random", "ratio")  # how match_clouds caps the number of correspondences


def _faiss_search(queries: np.ndarray, references: np.ndarray, k: int, threads: int):
    """Exact k nearest references (squared L2) with faiss's flat index: BLAS-blocked distance products and
    a fused top-k, 1.8x faster than a chunked numpy product + argmin on 14k x 14k FPFH sets here (one
    thread each), and it takes a thread count (the earlier k-d tree path hard-coded two workers)."""
    import faiss

    faiss.omp_set_num_threads(max(1, int(threads)))
    index = faiss.IndexFlatL2(references.shape[1])
    index.add(np.ascontiguousarray(references, dtype=np.float32))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def nearest_neighbour(queries: np.ndarray, references: np.ndarray, threads: int = 1) -> np.ndarray:
    """Index of the nearest reference descriptor for each query (exact)."""
    if len(queries) == 0 or len(references) == 0:
        return np.zeros(len(queries), dtype=np.int64)
    return _faiss_search(queries, references, 1, threads)[1][:, 0].astype(np.int64)


def distance_ratio(queries: np.ndarray, references: np.ndarray, threads: int = 1) -> np.ndarray:
    """Nearest / second-nearest reference distance per query (Lowe's ratio test value): near 1 when the
    descriptor is ambiguous (ground, walls), small when its best match stands out."""
    if len(references) < 2 or len(queries) == 0:
        return np.zeros(len(queries))
    squared = np.maximum(_faiss_search(queries, references, 2, threads)[0].astype(np.float64), 0.0)
    return np.sqrt(squared[:, 0]) / np.maximum(np.sqrt(squared[:, 1]), 1e-12)


def match_features(
    source_features: np.ndarray, target_features: np.ndarray, mutual: bool = True, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbour in descriptor space from source to target; with ``mutual`` keep only pairs that are
    each other's nearest neighbour (removes most many-to-one matches on repetitive structure)."""
    source_index, target_index, _ = match_features_ranked(source_features, target_features, mutual,
                                                          threads=threads)
    return source_index, target_index


def match_features_ranked(
    source_features: np.ndarray, target_features: np.ndarray, mutual: bool = True, with_ratio: bool = False,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``match_features`` plus, with ``with_ratio``, each kept match's nearest / second-nearest distance
    ratio (lower = more distinctive), computed for the kept matches only."""
    source_to_target = nearest_neighbour(source_features, target_features, threads)
    source_index = np.arange(len(source_features))
    if mutual:
        target_to_source = nearest_neighbour(target_features, source_features, threads)
        is_mutual = target_to_source[source_to_target] == source_index
        source_index, source_to_target = source_index[is_mutual], source_to_target[is_mutual]
    ratio = distance_ratio(source_features[source_index], target_features, threads) if with_ratio else None
    return source_index, source_to_target, ratio


def select_correspondences(
    count: int, limit: int, selection: str = "random", ratio: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``count`` matches. "random": a uniform subset (unbiased, what
    training and evaluation use); "ratio": the ``limit`` most distinctive matches by Lowe's ratio, which
    raises the inlier share so a smaller set (a cheaper network pass) carries the same evidence."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if count <= limit:
        return np.arange(count)
    if selection == "ratio":
        if ratio is None or len(ratio) != count:
            raise ValueError("ratio selection needs one ratio per match")
        return np.sort(np.argsort(ratio, kind="stable")[:limit])
    rng = rng if rng is not None else np.random.default_rng(0)
    return np.sort(rng.choice(count, limit, replace=False))


@dataclass
class DescribedCloud:
    """A cloud ready for matching: downsampled points and their FPFH descriptors. Keep one for a keyframe
    or map and match every new scan against it without describing it again."""

    points: np.ndarray  # (M, 3) downsampled
    features: np.ndarray  # (M, 33)
    _tree: cKDTree | None = field(default=None, repr=False, compare=False)

    @property
    def tree(self) -> cKDTree:
        """k-d tree over the points, built on first use and kept (a keyframe serves many fitness checks)."""
        if self._tree is None:
            self._tree = cKDTree(self.points)
        return self._tree


def describe(points: np.ndarray, voxel_size: float, fpfh_max_neighbors: int = 100) -> DescribedCloud:
    down = voxel_downsample(points, voxel_size)
    return DescribedCloud(down, compute_fpfh(down, voxel_size, fpfh_max_neighbors))


def match_clouds(
    source: DescribedCloud,
    target: DescribedCloud,
    mutual: bool = True,
    min_mutual: int = 100,
    max_correspondences: int | None = None,
    rng: np.random.Generator | None = None,
    selection: str = "random",
    threads: int = 1,
) -> Correspondences:
    """Match descriptors; falls back to one-way matches when the mutual filter leaves fewer than
    ``min_mutual`` pairs (small overlaps), and caps the set at ``max_correspondences`` (a random subset, or
    the most distinctive by ratio; see ``select_correspondences``) to bound the network's N^2 attention."""
    with_ratio = selection == "ratio" and max_correspondences is not None
    source_index, target_index, ratio = match_features_ranked(source.features, target.features, mutual, with_ratio,
                                                              threads)
    if mutual and len(source_index) < min_mutual:
        source_index, target_index, ratio = match_features_ranked(source.features, target.features, False,
                                                                  with_ratio, threads)
    if max_correspondences is not None and len(source_index) > max_correspondences:
        keep = select_correspondences(len(source_index), max_correspondences, selection, ratio, rng)
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

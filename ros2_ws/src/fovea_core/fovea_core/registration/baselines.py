"""Baselines that run on the very same FPFH correspondences as VBReg.

- ``solve_sc2``: training-free second-order spatial compatibility (SC2-PCR, Chen et al., CVPR 2022 in
  spirit): leading eigenvector of the SC2 matrix as confidence, then the shared voting search. It is also
  the pipeline's fallback when no trained model is configured.
- ``solve_ransac``: Open3D's correspondence RANSAC.
"""
from __future__ import annotations

import numpy as np
import open3d as o3d

from .compatibility import hard_compatibility, second_order_compatibility
from .features import to_open3d
from .rigid import apply_transform
from .voting import VotingConfig, VotingResult, truncated_quadratic_fitness, vote_and_fit


def leading_eigenvector(matrix: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Power iteration on a symmetric non-negative matrix; entries scaled to [0, 1]. Spectral matching:
    the dominant cluster of mutually consistent correspondences gets the large entries."""
    vector = np.ones(len(matrix)) / np.sqrt(len(matrix))
    for _ in range(iterations):
        nxt = matrix @ vector
        norm = np.linalg.norm(nxt)
        if norm == 0:
            return np.zeros(len(matrix))
        vector = nxt / norm
    vector = np.abs(vector)
    return vector / max(vector.max(), 1e-12)


def solve_sc2(source: np.ndarray, target: np.ndarray, config: VotingConfig) -> VotingResult:
    hard = hard_compatibility(source, target, config.inlier_threshold)
    sc2 = second_order_compatibility(hard)
    confidence = leading_eigenvector(sc2)
    return vote_and_fit(source, target, confidence, sc2, config, pairwise_votes=hard)


def solve_ransac(
    source: np.ndarray,
    target: np.ndarray,
    inlier_threshold: float,
    max_iterations: int = 100_000,
    confidence: float = 0.999,
    seed: int | None = 0,
) -> VotingResult:
    """Open3D RANSAC over the correspondences (3-point samples, edge-length and distance pre-checks, the
    setting of Open3D's global registration tutorial)."""
    if seed is not None:
        o3d.utility.random.seed(seed)
    pairs = np.stack([np.arange(len(source)), np.arange(len(source))], axis=1).astype(np.int32)
    result = o3d.pipelines.registration.registration_ransac_based_on_correspondence(
        to_open3d(source),
        to_open3d(target),
        o3d.utility.Vector2iVector(pairs),
        inlier_threshold,
        o3d.pipelines.registration.TransformationEstimationPointToPoint(False),
        3,
        [
            o3d.pipelines.registration.CorrespondenceCheckerBasedOnEdgeLength(0.9),
            o3d.pipelines.registration.CorrespondenceCheckerBasedOnDistance(inlier_threshold),
        ],
        o3d.pipelines.registration.RANSACConvergenceCriteria(max_iterations, confidence),
    )
    transform = np.asarray(result.transformation).copy()
    residuals = np.linalg.norm(apply_transform(transform, source) - target, axis=1)
    return VotingResult(
        transform=transform,
        inlier_mask=residuals < inlier_threshold,
        score=float(truncated_quadratic_fitness(residuals, inlier_threshold)),
        num_hypotheses=max_iterations,
    )


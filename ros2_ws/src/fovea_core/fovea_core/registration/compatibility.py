"""Pairwise spatial compatibility of correspondences: rigid motions preserve distances, so two inliers
(x_i, y_i), (x_j, y_j) satisfy ‖x_i − x_j‖ ≈ ‖y_i − y_j‖.

β_ij = max(0, 1 − d_ij² / τ²), d_ij = | ‖x_i − x_j‖ − ‖y_i − y_j‖ |  (VBReg eq. for the attention prior;
the same length-consistency term as PointDSC / SC2-PCR).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist, pdist, squareform


def length_difference(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """d_ij for (N, 3) source and target points of N correspondences, shape (N, N).

    scipy's pdist (C, each pair once) instead of broadcasting (N, N, 3) differences: at N = 1000 the numpy
    form spent 120 ms per pair here, more than the VBReg network on the pre-filtered 150."""
    if len(source) < 2:
        return np.zeros((len(source), len(source)))
    return squareform(np.abs(pdist(source) - pdist(target)))


def spatial_compatibility(source: np.ndarray, target: np.ndarray, tau: float) -> np.ndarray:
    """β (N, N) in [0, 1]; the diagonal is 1."""
    return np.clip(1.0 - length_difference(source, target) ** 2 / tau**2, 0.0, None)


def spatial_compatibility_rows(source: np.ndarray, target: np.ndarray, rows: np.ndarray, tau: float) -> np.ndarray:
    """β for the given rows only, shape (len(rows), N): what the voting needs for its seeds, without the
    N x N matrix (200 MB in float64 at 5k correspondences)."""
    source_distance = cdist(source[rows], source)
    target_distance = cdist(target[rows], target)
    return np.clip(1.0 - (source_distance - target_distance) ** 2 / tau**2, 0.0, None)


def compatibility_top_k(source: np.ndarray, target: np.ndarray, tau: float, keep: int) -> np.ndarray:
    """Sorted indices of the ``keep`` correspondences with the most length-compatible partners
    (|‖xi − xj‖ − ‖yi − yj‖| < τ): inliers agree with each other, outliers rarely do. A cheap O(N²) count
    that lets the network's O(N²) attention run on a quarter of the set (measured on PandaSet pairs:
    recall unchanged at 250 of 1000, network 5x faster)."""
    if len(source) <= keep:
        return np.arange(len(source))
    degree = np.count_nonzero(_compatible_pairs(source, target, tau), axis=1)
    return np.sort(np.argsort(-degree, kind="stable")[:keep])


def _compatible_pairs(source: np.ndarray, target: np.ndarray, tau: float) -> np.ndarray:
    """(N, N) bool d_ij < τ with a False diagonal, thresholded in pdist's condensed form (half the pairs)."""
    if len(source) < 2:
        return np.zeros((len(source), len(source)), dtype=bool)
    return squareform(np.abs(pdist(source) - pdist(target)) < tau)


def hard_compatibility(source: np.ndarray, target: np.ndarray, tau: float) -> np.ndarray:
    """Binary compatibility d_ij < τ, zero diagonal (SC2-PCR's first-order matrix)."""
    return _compatible_pairs(source, target, tau).astype(np.float32)


def second_order_compatibility(hard: np.ndarray) -> np.ndarray:
    """SC2-PCR: C ⊙ (C C) — how many correspondences are compatible with both i and j, kept only where i
    and j are themselves compatible. Outliers rarely share many mutual neighbours, so this separates
    inliers better than first-order compatibility at high outlier ratios."""
    return hard * (hard @ hard)


def spatial_compatibility_torch(correspondences: torch.Tensor) -> torch.Tensor:
    """β for a batch (B, N, 6) of correspondences already expressed in units of τ (so τ = 1).

    Written with broadcasting rather than torch.cdist so it exports to ONNX unchanged. torch is imported
    here, not with the module: the numpy functions above serve nodes that never load PyTorch.
    """
    import torch

    source = correspondences[..., :3]
    target = correspondences[..., 3:]
    source_distance = torch.sqrt(((source[:, :, None, :] - source[:, None, :, :]) ** 2).sum(-1) + 1e-12)
    target_distance = torch.sqrt(((target[:, :, None, :] - target[:, None, :, :]) ** 2).sum(-1) + 1e-12)
    return torch.clamp(1.0 - (source_distance - target_distance) ** 2, min=0.0)

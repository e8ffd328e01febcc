"""Voting-based inlier search (VBReg §3.4 in spirit): seeds → local hypotheses → Wilson-score ranking →
weighted SVD → truncated-quadratic fitness → iteratively re-weighted refinement.

The same search serves VBReg (confidences from the network, votes = per-iteration inlier decisions) and the
SC2 baseline (confidences from the leading eigenvector, votes = pairwise compatibilities inside a
hypothesis), so the two differ only in how correspondences are scored.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .rigid import apply_transform, weighted_kabsch


@dataclass
class VotingConfig:
    inlier_threshold: float  # τ, metres
    seed_ratio: float = 0.1  # fraction of correspondences that become seeds (PointDSC / VBReg default)
    min_seeds: int = 8  # floor for small correspondence sets
    neighbors: int = 40  # k: correspondences per hypothesis besides the seed
    wilson_z: float = 1.96  # 95 % Wilson lower bound
    max_hypotheses: int = 32  # best-by-vote hypotheses that get an SVD and a fitness evaluation
    nms_radius: float | None = None  # source-space radius for seed suppression; None → τ
    refine_iterations: int = 10


@dataclass
class VotingResult:
    transform: np.ndarray  # 4x4
    inlier_mask: np.ndarray  # (N,) bool, residual < τ under the final transform
    score: float  # truncated-quadratic fitness Σ max(0, 1 − r²/τ²) under the final transform
    num_hypotheses: int


def wilson_lower_bound(successes: np.ndarray, trials: np.ndarray, z: float = 1.96) -> np.ndarray:
    """Lower end of the Wilson score interval for a binomial proportion: ranks a hypothesis by how surely
    most of its votes say 'inlier', penalising small vote counts (unlike the raw ratio)."""
    trials = np.maximum(np.asarray(trials, dtype=np.float64), 1.0)
    ratio = np.asarray(successes, dtype=np.float64) / trials
    z2 = z * z
    centre = ratio + z2 / (2.0 * trials)
    spread = z * np.sqrt(ratio * (1.0 - ratio) / trials + z2 / (4.0 * trials * trials))
    return (centre - spread) / (1.0 + z2 / trials)


def truncated_quadratic_fitness(residuals: np.ndarray, tau: float) -> np.ndarray:
    """Σ_i max(0, 1 − r_i²/τ²) over the last axis: each inlier counts by how well it fits, outliers add 0."""
    return np.clip(1.0 - (residuals / tau) ** 2, 0.0, None).sum(axis=-1)


def select_seeds(source: np.ndarray, confidence: np.ndarray, config: VotingConfig) -> np.ndarray:
    """Non-maximum suppression in source space, then the most confident survivors.

    A correspondence is a seed candidate only if no correspondence within the NMS radius of its source
    point is more confident, which spreads seeds over the scene instead of stacking them on one object.
    """
    count = len(confidence)
    radius = config.nms_radius if config.nms_radius is not None else config.inlier_threshold
    # the most confident neighbour of each correspondence, over all pairs within the radius (vectorised:
    # a per-point Python loop cost more than the rest of the voting at a few hundred correspondences)
    pairs = cKDTree(source).query_pairs(r=radius, output_type="ndarray")
    neighbour_best = np.asarray(confidence, dtype=np.float64).copy()
    np.maximum.at(neighbour_best, pairs[:, 0], confidence[pairs[:, 1]])
    np.maximum.at(neighbour_best, pairs[:, 1], confidence[pairs[:, 0]])
    is_local_max = confidence >= neighbour_best
    wanted = min(count, max(config.min_seeds, int(round(config.seed_ratio * count))))
    candidates = np.flatnonzero(is_local_max)
    candidates = candidates[np.argsort(-confidence[candidates], kind="stable")]
    if len(candidates) < wanted:  # too few local maxima: top up with the next most confident
        rest = np.setdiff1d(np.argsort(-confidence, kind="stable"), candidates, assume_unique=False)
        rest = rest[np.argsort(-confidence[rest], kind="stable")]
        candidates = np.concatenate([candidates, rest])
    return candidates[:wanted]


def refine(
    source: np.ndarray,
    target: np.ndarray,
    transform: np.ndarray,
    tau: float,
    weights: np.ndarray | None,
    iterations: int,
) -> np.ndarray:
    """Iteratively re-weighted least squares on all correspondences: weights follow the truncated quadratic
    (1 − r²/τ²)₊, times the per-correspondence confidence when given; stops when the inlier set is stable."""
    previous = None
    for _ in range(iterations):
        residuals = np.linalg.norm(apply_transform(transform, source) - target, axis=1)
        robust = np.clip(1.0 - (residuals / tau) ** 2, 0.0, None)
        inliers = robust > 0
        if inliers.sum() < 3:
            break
        if previous is not None and np.array_equal(previous, inliers):
            break
        previous = inliers
        w = robust if weights is None else robust * np.clip(weights, 1e-3, None)
        transform = weighted_kabsch(source[inliers], target[inliers], w[inliers])
    return transform


def vote_and_fit(
    source: np.ndarray,
    target: np.ndarray,
    confidence: np.ndarray,
    compatibility,
    config: VotingConfig,
    iteration_votes: np.ndarray | None = None,
    pairwise_votes: np.ndarray | None = None,
) -> VotingResult:
    """Estimate the transform from scored correspondences.

    confidence (N,) in [0, 1]: seed ranking and SVD weights. compatibility: (N, N) array, or a function
    mapping seed indices (S,) to their rows (S, N): how strongly j belongs in the hypothesis grown from i. Exactly one vote source: ``iteration_votes`` (V, N) binary decisions
    (e.g. one per network iteration) or ``pairwise_votes`` (N, N) binary pairwise compatibility.
    """
    count = len(source)
    if count < 3:
        raise ValueError(f"need at least 3 correspondences to fit a rigid transform, got {count}")
    if (iteration_votes is None) == (pairwise_votes is None):
        raise ValueError("give exactly one of iteration_votes or pairwise_votes")
    tau = config.inlier_threshold
    seeds = select_seeds(source, confidence, config)
    k = min(config.neighbors + 1, count)
    rows = np.array(compatibility(seeds) if callable(compatibility) else compatibility[seeds], dtype=np.float64)
    rows[np.arange(len(seeds)), seeds] = np.inf  # the seed always belongs to its own hypothesis
    members = np.argpartition(-rows, k - 1, axis=1)[:, :k]  # (S, k)

    if iteration_votes is not None:
        successes = iteration_votes[:, members].sum(axis=(0, 2))
        trials = np.full(len(seeds), iteration_votes.shape[0] * k)
    else:
        inside = pairwise_votes[members[:, :, None], members[:, None, :]]
        successes = inside.sum(axis=(1, 2))
        trials = np.full(len(seeds), k * (k - 1))
    ranking = np.argsort(-wilson_lower_bound(successes, trials, config.wilson_z), kind="stable")
    chosen = members[ranking[: config.max_hypotheses]]

    weights = np.clip(confidence[chosen], 1e-3, None)
    hypotheses = weighted_kabsch(source[chosen], target[chosen], weights)  # (H, 4, 4)
    moved = np.einsum("hab,nb->hna", hypotheses[:, :3, :3], source) + hypotheses[:, None, :3, 3]
    fitness = truncated_quadratic_fitness(np.linalg.norm(moved - target[None], axis=-1), tau)
    best = hypotheses[int(np.argmax(fitness))]

    refined = refine(source, target, best, tau, confidence, config.refine_iterations)
    # IRLS can drift onto a neighbouring basin on symmetric scenes; keep it only if it fits at least as well.
    transform = refined if _score(refined, source, target, tau) >= fitness.max() else best
    residuals = np.linalg.norm(apply_transform(transform, source) - target, axis=1)
    return VotingResult(
        transform=transform,
        inlier_mask=residuals < tau,
        score=float(truncated_quadratic_fitness(residuals, tau)),
        num_hypotheses=len(chosen),
    )


def _score(transform: np.ndarray, source: np.ndarray, target: np.ndarray, tau: float) -> float:
    residuals = np.linalg.norm(apply_transform(transform, source) - target, axis=1)
    return float(truncated_quadratic_fitness(residuals, tau))

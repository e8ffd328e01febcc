"""Voting + weighted SVD recover a known transform from planted inliers among >= 90 % outliers."""
import numpy as np
import pytest

from fovea_core.registration.baselines import solve_sc2
from fovea_core.registration.compatibility import spatial_compatibility, spatial_compatibility_rows
from fovea_core.registration.rigid import (
    apply_transform, axis_angle_to_matrix, make_transform, rotation_error_deg, translation_error, weighted_kabsch,
)
from fovea_core.registration.voting import VotingConfig, truncated_quadratic_fitness, vote_and_fit, wilson_lower_bound

TAU = 0.1


def planted_problem(seed: int, count: int, outlier_ratio: float, noise: float = 0.01):
    rng = np.random.default_rng(seed)
    truth = make_transform(axis_angle_to_matrix(rng.normal(size=3)), rng.uniform(-2, 2, 3))
    source = rng.uniform(-2, 2, size=(count, 3))
    target = apply_transform(truth, source) + rng.normal(size=(count, 3)) * noise
    outliers = rng.random(count) < outlier_ratio
    outliers[: int(round(outlier_ratio * count))] = True
    outliers[int(round(outlier_ratio * count)):] = False
    rng.shuffle(outliers)
    target[outliers] = rng.uniform(-4, 4, size=(outliers.sum(), 3))  # matched to random places
    return source, target, truth, ~outliers


def test_weighted_kabsch_exact_and_batched():
    rng = np.random.default_rng(0)
    truths = [make_transform(axis_angle_to_matrix(rng.normal(size=3)), rng.normal(size=3)) for _ in range(4)]
    source = rng.normal(size=(4, 30, 3))
    target = np.stack([apply_transform(t, s) for t, s in zip(truths, source)])
    estimates = weighted_kabsch(source, target, rng.uniform(0.5, 1.0, size=(4, 30)))
    for estimate, truth in zip(estimates, truths):
        assert np.allclose(estimate, truth, atol=1e-8)
        assert np.isclose(np.linalg.det(estimate[:3, :3]), 1.0)


def test_weighted_kabsch_ignores_zero_weight_points():
    source, target, truth, inliers = planted_problem(1, 50, 0.5, noise=0.0)
    estimate = weighted_kabsch(source, target, inliers.astype(float))
    assert np.allclose(estimate, truth, atol=1e-8)


def test_wilson_lower_bound_properties():
    # textbook value: 8/10 successes at z = 1.96 → lower bound ≈ 0.4902
    assert np.isclose(wilson_lower_bound(np.array([8]), np.array([10]))[0], 0.4902, atol=1e-3)
    bounds = wilson_lower_bound(np.array([8, 80, 800]), np.array([10, 100, 1000]))
    assert np.all(np.diff(bounds) > 0)  # same ratio, more votes → more certain
    assert np.all(bounds < 0.8)


def test_truncated_quadratic_fitness():
    residuals = np.array([0.0, 0.05, 0.1, 5.0])
    assert np.isclose(truncated_quadratic_fitness(residuals, 0.1), 1.0 + 0.75 + 0.0 + 0.0)


@pytest.mark.parametrize("outlier_ratio", [0.9, 0.95])
def test_sc2_voting_recovers_transform_among_outliers(outlier_ratio):
    source, target, truth, inliers = planted_problem(2, 400, outlier_ratio)
    result = solve_sc2(source, target, VotingConfig(inlier_threshold=TAU))
    assert rotation_error_deg(result.transform, truth) < 1.0
    assert translation_error(result.transform, truth) < 0.03
    recovered = result.inlier_mask & inliers
    assert recovered.sum() >= 0.9 * inliers.sum()
    assert (result.inlier_mask & ~inliers).sum() <= 3


def test_iteration_votes_path_recovers_transform_with_noisy_confidence():
    """The VBReg path: confidences and per-iteration votes from a (simulated) imperfect classifier that
    marks 80 % of inliers and 10 % of outliers as inliers; voting must still find the transform."""
    rng = np.random.default_rng(3)
    source, target, truth, inliers = planted_problem(3, 500, 0.92)
    votes = np.where(inliers[None], rng.random((12, 500)) < 0.8, rng.random((12, 500)) < 0.1)
    confidence = votes.mean(axis=0)
    compatibility = spatial_compatibility(source, target, TAU) * confidence[None]
    result = vote_and_fit(source, target, confidence, compatibility, VotingConfig(inlier_threshold=TAU),
                          iteration_votes=votes)
    assert rotation_error_deg(result.transform, truth) < 1.0
    assert translation_error(result.transform, truth) < 0.03
    # compatibility given as seed rows (as the pipeline does) gives the same answer as the full matrix
    by_rows = vote_and_fit(source, target, confidence,
                           lambda seeds: spatial_compatibility_rows(source, target, seeds, TAU) * confidence[None],
                           VotingConfig(inlier_threshold=TAU), iteration_votes=votes)
    assert np.allclose(by_rows.transform, result.transform)


def test_vote_and_fit_rejects_bad_arguments():
    source, target, _, _ = planted_problem(4, 20, 0.5)
    config = VotingConfig(inlier_threshold=TAU)
    with pytest.raises(ValueError, match="at least 3"):
        vote_and_fit(source[:2], target[:2], np.ones(2), np.ones((2, 2)), config, pairwise_votes=np.ones((2, 2)))
    with pytest.raises(ValueError, match="exactly one"):
        vote_and_fit(source, target, np.ones(20), np.ones((20, 20)), config)

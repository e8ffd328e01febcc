"""Descriptor matching for the odometry fast path: the ratio-ranked correspondence cap, the distance ratio, the
vectorised seed suppression and the cached keyframe tree."""
import numpy as np
import pytest
from scipy.spatial import cKDTree

from fovea_core.registration.features import (
    DescribedCloud, distance_ratio, match_clouds, select_correspondences,
)
from fovea_core.registration.pipeline import RegistrationConfig
from fovea_core.registration.voting import VotingConfig, select_seeds


def test_ratio_cap_keeps_the_most_distinctive_matches():
    ratio = np.array([0.9, 0.1, 0.8, 0.3, 0.95, 0.2, 0.7])
    keep = select_correspondences(len(ratio), 3, "ratio", ratio)
    assert keep.tolist() == [1, 3, 5]  # the three lowest ratios, in index order
    assert select_correspondences(len(ratio), 10, "ratio", ratio).tolist() == list(range(7))  # under the cap
    random_keep = select_correspondences(len(ratio), 3, "random", rng=np.random.default_rng(0))
    assert len(random_keep) == 3 and len(set(random_keep.tolist())) == 3 and np.all(np.diff(random_keep) > 0)
    with pytest.raises(ValueError):
        select_correspondences(len(ratio), 3, "ratio", None)
    with pytest.raises(ValueError):
        select_correspondences(len(ratio), 3, "best")


def test_distance_ratio_matches_sorted_distances():
    rng = np.random.default_rng(3)
    references = rng.random((400, 33)).astype(np.float32) * 50
    queries = rng.random((300, 33)).astype(np.float32) * 50
    distances = np.sort(np.linalg.norm(queries[:, None].astype(np.float64) - references[None], axis=-1), axis=1)
    expected = distances[:, 0] / distances[:, 1]
    assert np.allclose(distance_ratio(queries, references, threads=1), expected, atol=1e-3)


def test_match_clouds_ratio_cap_prefers_planted_distinctive_matches():
    rng = np.random.default_rng(4)
    # 30 distinctive descriptors present (slightly perturbed) on both sides, 200 ambiguous ones: each ambiguous
    # source descriptor sits between two near-identical target twins, so its ratio is close to 1
    distinctive = rng.random((30, 33)) * 100
    ambiguous = rng.random((200, 33)) * 100
    source_features = np.vstack([distinctive, ambiguous])
    twins = np.vstack([ambiguous + 0.5, ambiguous - 0.5])
    target_features = np.vstack([distinctive + 0.01, twins])
    source = DescribedCloud(rng.random((230, 3)), source_features.astype(np.float32))
    target = DescribedCloud(rng.random((430, 3)), target_features.astype(np.float32))
    capped = match_clouds(source, target, mutual=False, max_correspondences=30, selection="ratio")
    assert capped.source_index.tolist() == list(range(30))
    assert capped.target_index.tolist() == list(range(30))
    random = match_clouds(source, target, mutual=False, max_correspondences=30, selection="random")
    assert len(random) == 30 and (random.source_index >= 30).sum() > 15  # a random cap mostly keeps ambiguous ones


def test_seed_suppression_matches_per_point_definition():
    rng = np.random.default_rng(6)
    source = rng.random((400, 3)) * 5.0
    source[10] = source[11]  # duplicate points must not break the suppression
    confidence = rng.random(400)
    config = VotingConfig(inlier_threshold=0.4, seed_ratio=0.1, min_seeds=8)
    neighbours = cKDTree(source).query_ball_point(source, r=0.4)
    local_max = np.array([confidence[i] >= confidence[idx].max() for i, idx in enumerate(neighbours)])
    expected = np.flatnonzero(local_max)
    expected = expected[np.argsort(-confidence[expected], kind="stable")][:40]
    assert np.array_equal(select_seeds(source, confidence, config), expected)


def test_described_cloud_builds_its_tree_once():
    cloud = DescribedCloud(np.random.default_rng(7).random((50, 3)), np.zeros((50, 33), np.float32))
    assert cloud.tree is cloud.tree
    assert cloud.tree.n == 50


def test_config_rejects_unknown_selection():
    with pytest.raises(ValueError):
        RegistrationConfig(correspondence_selection="best")


def test_network_threads_reach_the_onnxruntime_session():
    from fovea_core.registration.model_io import load_scorer

    scorer = load_scorer("onnxruntime", threads=1)
    assert scorer._session.get_session_options().intra_op_num_threads == 1
    outputs = scorer.run({"correspondences": np.random.default_rng(8).normal(size=(1, 40, 6)).astype(np.float32)})
    assert outputs["inlier_logits"].shape[-1] == 40

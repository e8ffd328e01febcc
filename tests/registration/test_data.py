"""Procedural training pairs: labels agree with the ground truth and subsets hit the requested outlier ratio."""
import numpy as np

from fovea_core.registration.data import correspondence_sample, draw_training_set, indoor_pair, outdoor_pair
from fovea_core.registration.rigid import apply_transform


def check_sample(sample):
    corr = sample.correspondences.astype(np.float64)
    residual = np.linalg.norm(apply_transform(sample.transform, corr[:, :3]) - corr[:, 3:], axis=1)
    assert np.array_equal(residual < sample.inlier_threshold, sample.labels > 0.5)
    assert 0 < sample.labels.sum() < len(sample.labels)  # real FPFH matching: some right, some wrong


def test_indoor_and_outdoor_pairs_overlap_and_label_correctly():
    rng = np.random.default_rng(0)
    for make_pair, voxel, tau, family in ((indoor_pair, 0.05, 0.10, "indoor"), (outdoor_pair, 0.5, 1.2, "outdoor")):
        source, target, transform = make_pair(rng)
        assert len(source) > 2000 and len(target) > 2000
        assert np.allclose(transform[:3, :3] @ transform[:3, :3].T, np.eye(3), atol=1e-9)
        check_sample(correspondence_sample(source, target, transform, voxel, tau, family, rng))


def test_training_subset_has_requested_outlier_ratio_and_keeps_labels_valid():
    rng = np.random.default_rng(1)
    source, target, transform = outdoor_pair(rng)
    sample = correspondence_sample(source, target, transform, 0.5, 1.2, "outdoor", rng)
    corr, labels = draw_training_set(sample, 200, 0.9, rng)
    assert corr.shape == (200, 6) and labels.shape == (200,)
    assert abs(labels.mean() - 0.1) < 0.03
    # each side was rotated independently: inliers keep their pairwise distances, outliers do not
    inliers = corr[labels > 0.5]
    d_source = np.linalg.norm(inliers[:, None, :3] - inliers[None, :, :3], axis=-1)
    d_target = np.linalg.norm(inliers[:, None, 3:] - inliers[None, :, 3:], axis=-1)
    assert np.abs(d_source - d_target).max() < 2 * 1.2


def test_faiss_nearest_neighbour_matches_kd_tree():
    from scipy.spatial import cKDTree

    from fovea_core.registration.features import nearest_neighbour

    rng = np.random.default_rng(5)
    references = rng.random((700, 33)).astype(np.float32) * 100
    queries = rng.random((900, 33)).astype(np.float32) * 100
    expected = cKDTree(references).query(queries, k=1)[1]
    assert np.array_equal(nearest_neighbour(queries, references, threads=1), expected)

"""Pipeline: degenerate inputs are rejected with a clear error; real pairs register with the baselines and
the committed model; methods share one entry point."""
import numpy as np
import pytest

from fovea_core.registration.evaluate import load_real_pairs
from fovea_core.registration.pipeline import DegenerateInputError, Registration, RegistrationConfig
from fovea_core.registration.rigid import rotation_error_deg, translation_error


@pytest.fixture(scope="module")
def real_pairs():
    return {pair.scale: pair for pair in load_real_pairs()}


def box_cloud(seed=0, count=3000):
    """Points on the faces of three boxes: enough 3-D structure to register."""
    rng = np.random.default_rng(seed)
    points = []
    for centre, size in (((0, 0, 0), (2, 1, 1)), ((3, 1, 0), (1, 1, 2)), ((1, 3, 0.5), (1.5, 0.5, 1))):
        p = rng.uniform(-0.5, 0.5, size=(count // 3, 3))
        axis = rng.integers(0, 3, len(p))
        p[np.arange(len(p)), axis] = np.sign(p[np.arange(len(p)), axis]) * 0.5
        points.append(p * size + centre)
    return np.vstack(points)


@pytest.mark.parametrize("method", ["sc2", "vbreg"])
@pytest.mark.parametrize(
    "source, expected",
    [
        (np.zeros((0, 3)), "no finite points"),
        (np.full((500, 3), np.nan), "no finite points"),
        (np.ones((500, 3)), "too few"),
        (np.random.default_rng(0).normal(size=(20, 3)), "too few"),
        (np.c_[np.random.default_rng(0).uniform(-3, 3, (4000, 2)), np.zeros(4000)], "feature-less"),
        (np.zeros((10, 2)), r"\(N, 3\)"),
    ],
    ids=["empty", "all-nan", "identical", "few", "plane", "bad-shape"],
)
def test_degenerate_inputs_are_rejected(source, expected, method):
    registration = Registration(RegistrationConfig.indoor(method=method))
    with pytest.raises(DegenerateInputError, match=expected):
        registration.register(source, box_cloud())
    with pytest.raises(DegenerateInputError, match=expected):
        registration.register(box_cloud(), source)


def test_nan_rows_are_dropped_not_fatal(real_pairs):
    pair = real_pairs["indoor"]
    source = pair.source.copy()
    source[::7] = np.nan
    result = Registration(RegistrationConfig.indoor(method="sc2")).register(source, pair.target)
    assert rotation_error_deg(result.transform, pair.transform) < 15
    assert translation_error(result.transform, pair.transform) < 0.3


def test_invalid_configuration_is_named():
    with pytest.raises(ValueError, match="method"):
        RegistrationConfig(method="icp-only")
    with pytest.raises(ValueError, match="inlier_threshold"):
        RegistrationConfig(inlier_threshold=0.0)


@pytest.mark.parametrize("method", ["vbreg", "sc2", "ransac"])
def test_real_outdoor_pair_registers(real_pairs, method):
    pair = real_pairs["outdoor"]
    result = Registration(RegistrationConfig.outdoor(method=method)).register(pair.source, pair.target)
    assert result.success, result.message
    assert rotation_error_deg(result.transform, pair.transform) < 5
    assert translation_error(result.transform, pair.transform) < 0.6
    assert result.inlier_count == int(result.inlier_mask.sum()) > 10
    assert 0 < result.inlier_ratio <= 1 and 0 < result.fitness <= 1
    assert result.timings["total"] >= result.timings["features"] > 0


def test_unrelated_clouds_are_reported_as_failure():
    """Two different random scenes: whatever transform comes out must not pass the confidence thresholds."""
    rng = np.random.default_rng(3)
    source = rng.uniform(-2, 2, size=(6000, 3))
    target = rng.uniform(-2, 2, size=(6000, 3))
    config = RegistrationConfig.indoor(method="sc2", min_inlier_ratio=0.05, min_fitness=0.3)
    result = Registration(config).register(source, target)
    assert not result.success
    assert "below confidence thresholds" in result.message


def test_icp_polish_tightens_the_outdoor_pair(real_pairs):
    pair = real_pairs["outdoor"]
    result = Registration(RegistrationConfig.outdoor(method="sc2", icp=True)).register(pair.source, pair.target)
    assert "icp" in result.timings
    assert rotation_error_deg(result.transform, pair.transform) < 0.5
    assert translation_error(result.transform, pair.transform) < 0.08  # ~0.14 m before ICP on this pair

"""A tiny model trained end to end by ``fovea train anomaly`` (both stages on the shared runner, 40 steps each
on two short simulated sequences) already scores injected faults above normal data it never saw, with the
classical features: 40 steps are too few for the sync network to leave its uniform start (it needs a few
hundred; the shipped learned model is held to the same by the node test)."""

import numpy as np
import pytest

from fovea_core.events.anomaly import faults as F
from fovea_core.events.anomaly.bundle import load_models
from fovea_core.events.anomaly.data import TEST_SEEDS, simulated_streams
from fovea_core.events.anomaly.evaluate import score_streams
from fovea_core.events.anomaly.train import main as train_main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    flags = ["--train-sequences", "2", "--calibration-sequences", "1", "--duration", "1.5", "--cache-dir",
             str(root / "sim"), "--iterations", "40", "--minutes", "0", "--batch", "8", "--seed", "3"]
    assert train_main(flags + ["--sync-out", str(root / "sync.pt"), "--out", str(root / "anomaly.pt"),
                               "--run-dir", str(root / "runs")]) == 0
    models = load_models(root / "anomaly.pt")
    normal = simulated_streams(TEST_SEEDS[0], 2.0, root / "sim")
    return models, normal, root


def test_trained_files_and_calibrated_thresholds(tiny):
    models, _, root = tiny
    assert set(models.meta.thresholds) == {"rule", "rate_rule", "classical", "learned", "classical_ar",
                                           "learned_ar", "events"}
    assert all(np.isfinite(v) and v > 0 for v in models.meta.thresholds.values())
    # calibration recorded what a site calibration aims for, and the references of both extractors
    assert set(models.meta.normal_entropy) == set(models.meta.references) == {"classical", "learned"}
    assert "simulated normal" in models.meta.calibration and models.meta.training["summary"]["steps"] == 40
    assert {p.name for p in (root / "onnx").iterdir()} >= {"ar_classical.onnx", "ar_learned.onnx", "ar_events.onnx"}


@pytest.mark.parametrize("kind, kwargs", [("offset", {"offset_ms": 100.0}), ("frozen", {})])
def test_injected_faults_score_above_normal(tiny, kind, kwargs):
    models, normal, _ = tiny
    clean = score_streams(models, normal)
    start = normal.start_ns + int(0.4 * (normal.end_ns - normal.start_ns))
    end = normal.start_ns + int(0.9 * (normal.end_ns - normal.start_ns))
    faulty, fault = F.inject(kind, normal, start, end, **kwargs)
    scored = score_streams(models, faulty)
    for method in ("classical", "classical_ar"):
        normal_scores = clean.frame_scores[method][np.isfinite(clean.frame_scores[method])]
        inside = (scored.frame_stamps >= start + 0.2e9) & (scored.frame_stamps < end)
        assert inside.sum() >= 5
        assert np.median(scored.frame_scores[method][inside]) > np.quantile(normal_scores, 0.95), method

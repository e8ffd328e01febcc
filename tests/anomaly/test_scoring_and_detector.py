"""Scores: the step-by-step versions equal the whole-sequence ones (with and without the reference term); the
threshold is the stated quantile; the streaming detector gives one result per frame with the same scores the
evaluation computes offline; calibration (references, thresholds, a site's temperatures); the model file round
trip and its checked refusals."""

import numpy as np
import pytest
import torch

from fovea_core.events.anomaly.bundle import AnomalyMeta, build_models, load_models, save_models
from fovea_core.events.anomaly.calibration import window_scores
from fovea_core.events.anomaly.data import sequence_features
from fovea_core.events.anomaly.detector import StreamAnomalyDetector
from fovea_core.events.anomaly.scoring import (StreamingKL, StreamingRule, calibrate_threshold, fit_reference,
                                               kl_sequence, reference_kl, rule_step_scores, step_scores,
                                               windowed_mean)
from fovea_core.model_files import ModelFileError


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    meta = AnomalyMeta(ar={"width": 32, "layers": 1, "heads": 2, "context": 12})
    meta.thresholds = {"rule": 1.0, "classical": 0.5, "learned": 0.5, "events": 0.5, "rate_rule": 0.5}
    rng = np.random.default_rng(7)
    meta.references = {ext: fit_reference(rng.dirichlet(np.ones(31), 20)).tolist() for ext in ("classical", "learned")}
    meta.temperatures = {"classical": 0.1, "learned": 0.7}
    m = build_models(meta)
    for module in [m.sync_net, *m.ar.values()]:
        module.eval()
    return m


def test_streaming_scores_equal_the_sequence_scores(models):
    rng = np.random.default_rng(0)
    dists = rng.dirichlet(np.ones(31) * 0.3, 40).astype(np.float32)  # longer than the 12-step context
    whole = kl_sequence(models.ar["classical"], dists)
    stream = StreamingKL(models.ar["classical"], window=5)
    steps, windows = zip(*(stream.update(d) for d in dists))
    assert np.isnan(whole[0]) and np.isnan(steps[0])
    assert np.allclose(whole[1:], steps[1:], atol=1e-5)
    assert np.allclose(windowed_mean(whole, 5)[1:], windows[1:], atol=1e-5)
    # with the reference term, for the step's own and its nominal-window distribution
    reference = models.meta.reference("classical")
    nominal = rng.dirichlet(np.ones(31) * 0.3, 40).astype(np.float32)
    whole = step_scores(models.ar["classical"], dists, nominal, reference)
    stream = StreamingKL(models.ar["classical"], 5, reference=reference)
    steps = np.array([stream.update(d, n)[0] for d, n in zip(dists, nominal)])
    assert np.allclose(whole[1:], steps[1:], atol=1e-5)
    expected = kl_sequence(models.ar["classical"], dists) + reference_kl(dists, reference) + reference_kl(nominal, reference)
    assert np.allclose(whole[1:], expected[1:]) and np.all(reference_kl(dists, reference) >= -1e-6)
    lags = rng.integers(-4, 5, 60)
    rule = StreamingRule(window=5, history=25)
    assert np.allclose(rule_step_scores(lags, 25)[1:], [rule.update(v)[0] for v in lags][1:])


def test_threshold_is_the_stated_quantile():
    scores = np.concatenate([np.arange(1000, dtype=np.float32), [np.nan] * 5])
    assert calibrate_threshold(scores, 0.01) == pytest.approx(np.quantile(np.arange(1000), 0.99))
    with pytest.raises(ValueError):
        calibrate_threshold(np.array([np.nan]), 0.01)


@pytest.mark.parametrize("method", ["classical", "learned"])
def test_detector_gives_one_result_per_frame_with_the_offline_scores(models, sim_streams, method):
    meta = models.meta
    detector = StreamAnomalyDetector(models, sim_streams.width, sim_streams.height, method)
    results = []
    packets = np.array_split(sim_streams.events, 300)
    frames = list(zip(sim_streams.frames.stamps, sim_streams.frames.images))
    # interleave as a driver would: each frame after the packets up to its time
    for chunk in packets:
        while frames and frames[0][0] <= chunk["t"][-1]:
            results += detector.push_frame(*frames.pop(0))
        results += detector.push_events(chunk)
    scored = [r for r in results if r.method == method]
    feats = sequence_features(sim_streams, meta.feature_config(), meta.sync_net["pool"], meta.activity_config(),
                              meta.events_step_ns)
    offline = window_scores(models, feats)[0][method]  # what the evaluation and calibration score
    # every frame but those within the event horizon of the stream's end has its result; the first STARTING
    assert scored[0].state == "STARTING" and scored[0].stamp_ns == sim_streams.frames.stamps[0]
    stamps = np.array([r.stamp_ns for r in scored[1:]])
    assert np.array_equal(stamps, feats.stamps[:len(stamps)]) and len(stamps) >= len(feats.stamps) - 2
    got = np.array([r.score for r in scored[1:]])
    assert np.allclose(got[1:], offline[1:len(stamps)], rtol=1e-4, atol=1e-5)
    for r in scored[2:]:
        assert r.state == ("ERROR" if r.score >= 3 * r.threshold else "WARN" if r.score >= r.threshold else "OK")
        assert (r.suspected_fault == "") == (r.state == "OK")


def test_detector_scores_events_alone_on_its_own_clock(models, sim_streams):
    detector = StreamAnomalyDetector(models, sim_streams.width, sim_streams.height, "classical")
    results = []
    for chunk in np.array_split(sim_streams.events, 100):
        results += detector.push_events(chunk)
    assert results and all(r.method == "events" for r in results)
    step = models.meta.events_step_ns
    assert np.all(np.diff([r.stamp_ns for r in results]) == step)
    assert all(np.isfinite(r.score) for r in results[2:])


def test_model_file_round_trip_and_refusals(models, tmp_path):
    path = tmp_path / "anomaly.pt"
    save_models(models, path)
    back = load_models(path)
    assert back.meta.thresholds == models.meta.thresholds and back.meta.ar == models.meta.ar
    x = torch.rand(1, 5, 31)
    assert torch.allclose(back.ar["learned"](x), models.ar["learned"](x))
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="model_path"):
        load_models(tmp_path / "cut.pt", "model_path")
    state = torch.load(path, weights_only=True)
    state["ar_events"] = {k: v[..., :1] for k, v in state["ar_events"].items()}
    torch.save(state, tmp_path / "shapes.pt")
    with pytest.raises(ModelFileError, match="shape"):
        load_models(tmp_path / "shapes.pt")


def test_next_step_export_equals_the_full_model_and_a_full_window_export_is_refused(models, tmp_path):
    from fovea_core.backends.export import export_onnx
    from fovea_core.events.anomaly.ar_model import NextStepPredictor
    from fovea_core.events.anomaly.scoring import export_ar_onnx, onnx_window_runner

    ar = models.ar["classical"]
    rng = np.random.default_rng(1)
    windows = torch.from_numpy(rng.dirichlet(np.ones(31) * 0.3, (3, ar.context)).astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(NextStepPredictor(ar)(windows), ar(windows)[:, -1], atol=1e-5)
    assert export_ar_onnx(ar, tmp_path / "ar.onnx") < 1e-4
    runner = onnx_window_runner(tmp_path / "ar.onnx", 1, ar, "onnx_dir")
    dists = rng.dirichlet(np.ones(31) * 0.3, 30).astype(np.float32)
    with_runner, plain = StreamingKL(ar, 5, runner), StreamingKL(ar, 5)
    a = np.array([with_runner.update(d) for d in dists])
    b = np.array([plain.update(d) for d in dists])
    assert np.allclose(a[1:], b[1:], atol=1e-4)
    # the whole window's outputs (as earlier versions exported) are not a next-step model
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        export_onnx(ar.eval(), {"dists": windows[:1]}, tmp_path / "full.onnx", ["log_probs"])
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    with pytest.raises(ModelFileError, match="onnx_dir.*not the next step"):
        onnx_window_runner(tmp_path / "full.onnx", 1, ar, "onnx_dir")


def test_calibration_fits_references_thresholds_and_a_sites_temperature(models, sim_streams):
    import copy

    from fovea_core.events.anomaly.bundle import AnomalyModels
    from fovea_core.events.anomaly.calibration import calibrate, record_normal_entropy, site_calibrated

    meta = models.meta
    feats = sequence_features(sim_streams, meta.feature_config(), meta.sync_net["pool"], meta.activity_config(),
                              meta.events_step_ns)
    own = AnomalyModels(copy.deepcopy(meta), models.sync_net, models.ar)
    record_normal_entropy(own, [feats])
    calibrate(own, [feats], 0.01, "the test sequence")
    assert set(own.meta.thresholds) == {"rule", "classical", "learned", "classical_ar", "learned_ar", "rate_rule",
                                        "events"}
    for ext in ("classical", "learned"):
        ref = own.meta.reference(ext)
        assert ref.shape == (31,) and abs(ref.sum() - 1) < 1e-5
    # a site whose correlation peaks are half as pronounced: softmax(ncc / 2 / T') equals softmax(ncc / T) at
    # T' = T / 2, so the matched temperature must be half the trained one, and its references the same
    flatter = copy.deepcopy(feats)
    flatter.ncc, flatter.nominal_ncc = feats.ncc / 2, feats.nominal_ncc / 2
    site = site_calibrated(own, [flatter], 0.01, "flatter")
    assert site.meta.temperatures["classical"] == pytest.approx(own.meta.temperatures["classical"] / 2, rel=1e-3)
    assert np.allclose(site.meta.reference("classical"), own.meta.reference("classical"), atol=1e-4)
    assert own.meta.calibration == "the test sequence" and site.meta.calibration == "flatter"


def test_set_process_threads_limits_torch_and_numpys_blas_pool():
    from threadpoolctl import threadpool_info, threadpool_limits

    from fovea_core.threads import set_process_threads

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    before_torch, before_blas = torch.get_num_threads(), threadpool_info()
    try:
        for n in (2, 1):
            set_process_threads(n)
            assert torch.get_num_threads() == n and blas_threads() == {n}
    finally:
        torch.set_num_threads(before_torch)
        threadpool_limits(limits=before_blas)

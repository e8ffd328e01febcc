"""The network's test-time graph exported to ONNX matches PyTorch, also at a different correspondence count;
a prefix of the iterations and float16-stored weights; the committed file and a mismatched iteration count."""
import numpy as np
import pytest
import torch

from fovea_core.backends import load_backend
from fovea_core.registration.export import export_network
from fovea_core.registration.network import VBRegConfig, VBRegNetwork

SMALL = VBRegConfig(num_iterations=3, feature_dim=32, hidden_dim=48, latent_dim=16)


def test_onnx_matches_torch_with_dynamic_count(tmp_path):
    torch.manual_seed(0)
    network = VBRegNetwork(SMALL).eval()
    path = tmp_path / "vbreg.onnx"
    diffs = export_network(network, path, sample_size=64)
    assert set(diffs) == {"inlier_logits", "features"}
    assert max(diffs.values()) < 1e-4

    backend = load_backend("onnxruntime", onnx_path=str(path))
    inputs = (np.random.default_rng(1).normal(size=(1, 150, 6)) * 4).astype(np.float32)
    onnx_out = backend.run({"correspondences": inputs})
    with torch.no_grad():
        logits, features = network(torch.from_numpy(inputs))
    assert onnx_out["inlier_logits"].shape == (1, 3, 150)
    assert np.abs(onnx_out["inlier_logits"] - logits.numpy()).max() < 1e-4
    assert np.abs(onnx_out["features"] - features.numpy()).max() < 1e-4


def test_a_prefix_exports_the_first_iterations_with_half_size_weights(tmp_path):
    torch.manual_seed(0)
    network = VBRegNetwork(SMALL).eval()
    full, half = tmp_path / "full.onnx", tmp_path / "half.onnx"
    export_network(network, full, sample_size=64)
    diffs = export_network(network, half, sample_size=64, iterations=2, weights_fp16=True)
    assert max(diffs.values()) < 5e-3  # float16 weights, float32 compute
    assert half.stat().st_size < 0.6 * full.stat().st_size
    inputs = (np.random.default_rng(2).normal(size=(1, 90, 6)) * 4).astype(np.float32)
    logits = load_backend("onnxruntime", onnx_path=str(half)).run({"correspondences": inputs})["inlier_logits"]
    with torch.no_grad():
        reference, _ = network(torch.from_numpy(inputs))
    assert logits.shape == (1, 2, 90)
    assert np.abs(logits - reference[:, :2].numpy()).max() < 5e-3


def test_committed_model_and_its_onnx_agree_on_real_correspondences():
    """models/registration: the state dict loads with weights_only=True and the committed ONNX (the first
    iterations of the trained network, float16-stored weights) gives the scores of the same PyTorch prefix on
    FPFH correspondences of the real outdoor pair."""
    from fovea_core.registration.evaluate import load_real_pairs
    from fovea_core.registration.features import build_correspondences
    from fovea_core.registration.model_io import (DEFAULT_ITERATIONS, DEFAULT_MODEL_DIR, ONNX_NAME, load_network,
                                                  normalize_correspondences, onnx_iterations)

    assert onnx_iterations(DEFAULT_MODEL_DIR / ONNX_NAME) == DEFAULT_ITERATIONS
    pair = next(p for p in load_real_pairs() if p.scale == "outdoor")
    corr, _, _ = build_correspondences(pair.source, pair.target, 0.5, max_correspondences=300)
    inputs = normalize_correspondences(corr.stacked, 1.2)[None]
    network = load_network(DEFAULT_MODEL_DIR).prefix(DEFAULT_ITERATIONS)
    with torch.no_grad():
        logits, _ = network(torch.from_numpy(inputs))
    onnx_logits = load_backend("onnxruntime", onnx_path=str(DEFAULT_MODEL_DIR / ONNX_NAME)).run(
        {"correspondences": inputs})["inlier_logits"]
    assert onnx_logits.shape == logits.shape
    assert np.abs(onnx_logits - logits.numpy()).max() < 5e-3


def test_an_onnx_file_with_other_iterations_is_refused_naming_the_parameter():
    from fovea_core.model_files import ModelFileError
    from fovea_core.registration.model_io import load_scorer

    with pytest.raises(ModelFileError, match=r"parameter 'network_iterations'.*runs 6 network iterations, "
                                             r"network_iterations is 12"):
        load_scorer("onnxruntime", iterations=12)
    with pytest.raises(ModelFileError, match="parameter 'network_iterations'.*has 12 iterations, 13 were asked"):
        load_scorer("torch", iterations=13)

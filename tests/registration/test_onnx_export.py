"""The network's test-time graph exported to ONNX matches PyTorch, also at a different correspondence count."""
import numpy as np
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


def test_committed_model_and_its_onnx_agree_on_real_correspondences():
    """models/registration: the state dict loads with weights_only=True and the committed ONNX gives the
    same scores as PyTorch on FPFH correspondences of the real outdoor pair."""
    from fovea_core.registration.evaluate import load_real_pairs
    from fovea_core.registration.features import build_correspondences
    from fovea_core.registration.model_io import DEFAULT_MODEL_DIR, ONNX_NAME, load_network, normalize_correspondences

    pair = next(p for p in load_real_pairs() if p.scale == "outdoor")
    corr, _, _ = build_correspondences(pair.source, pair.target, 0.5, max_correspondences=300)
    inputs = normalize_correspondences(corr.stacked, 1.2)[None]
    network = load_network(DEFAULT_MODEL_DIR)
    with torch.no_grad():
        logits, _ = network(torch.from_numpy(inputs))
    onnx_logits = load_backend("onnxruntime", onnx_path=str(DEFAULT_MODEL_DIR / ONNX_NAME)).run(
        {"correspondences": inputs})["inlier_logits"]
    assert np.abs(onnx_logits - logits.numpy()).max() < 1e-3

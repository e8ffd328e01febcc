"""HMNet and registration train through the runner: a few steps on tiny data, the model files in their
formats (read by the loaders the nodes use), HMNet resuming inside a sequence with its carried memories."""
from __future__ import annotations

import json

import numpy as np
import torch

from fovea_core.events.hmnet import train as hmnet_train
from fovea_core.registration import train as registration_train
from fovea_core.registration.data import CorrespondenceSample
from fovea_core.registration.model_io import load_network

HMNET_FLAGS = ["--train-sequences", "2", "--windows", "18", "--batch", "1", "--tbptt", "9", "--minutes", "0",
               "--iterations", "2", "--log-every", "0"]


def test_hmnet_trains_through_the_runner_and_resumes_inside_a_sequence(tmp_path):
    cache = ["--cache-dir", str(tmp_path / "cache")]
    straight, part = tmp_path / "straight", tmp_path / "part"
    assert hmnet_train.main(HMNET_FLAGS + cache + ["--run-dir", str(straight), "--out", str(straight / "m.pt"),
                                                   "--checkpoint-every", "1", "--keep-checkpoints", "0"]) == 0
    model, meta = hmnet_train.load_model(straight / "m.pt")
    assert meta["variant"] == "hmnet" and meta["optimiser_steps"] == 2 and meta["iterations"] == 1
    assert isinstance(model, hmnet_train.HMNet) and not model.training
    # step 1 ends mid-sequence (chunk 2 of 2 is next): the checkpoint carries the chunk and the memories
    blob = torch.load(straight / "step_00000001.pt", weights_only=True)
    chunks_state, loss_state = blob["ranks"][0]["stateful"]
    assert chunks_state["chunk"] == 1 and len(chunks_state["pick"]) == 1
    assert len(loss_state["states"]) == 3 and loss_state["states"][0].abs().sum() > 0
    assert hmnet_train.main(HMNET_FLAGS + cache + ["--run-dir", str(part), "--out", str(part / "m.pt"),
                                                   "--resume", str(straight / "step_00000001.pt")]) == 0
    resumed, _ = hmnet_train.load_model(part / "m.pt")
    for name, value in model.state_dict().items():
        assert (resumed.state_dict()[name] - value).abs().max() <= 1e-6, name


def _fake_sets(count: int, seed: int = 0) -> list[CorrespondenceSample]:
    """Correspondence sets with known labels (a rigid motion plus noise for inliers, random pairs otherwise):
    enough for the trainer's path; learning from FPFH matches is the registration tests' business."""
    rng = np.random.default_rng(seed)
    sets = []
    for i in range(count):
        source = rng.uniform(-5, 5, (120, 3))
        shift = rng.uniform(-1, 1, 3)
        inlier = rng.random(120) < 0.4
        target = np.where(inlier[:, None], source + shift + rng.normal(0, 0.02, (120, 3)), rng.uniform(-5, 5, (120, 3)))
        transform = np.eye(4)
        transform[:3, 3] = shift
        sets.append(CorrespondenceSample(np.hstack([source, target]).astype(np.float32), inlier.astype(np.float32),
                                         0.1, transform, "indoor" if i % 2 else "outdoor"))
    return sets


def test_registration_trains_through_the_runner_and_writes_its_model_folder(tmp_path):
    cache = tmp_path / "sets.npz"
    registration_train.save_samples(_fake_sets(12), cache)
    out = tmp_path / "model"
    code = registration_train.main(["--cache", str(cache), "--iterations", "3", "--minutes", "0", "--no-export",
                                    "--network-iterations", "2", "--feature-dim", "16", "--hidden-dim", "16",
                                    "--latent-dim", "16", "--correspondences", "64", "--validate-every", "2",
                                    "--out", str(out), "--run-dir", str(tmp_path / "run"), "--log-every", "0"])
    assert code == 0
    network = load_network(out)
    assert network.config.num_iterations == 2 and network.config.feature_dim == 16
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 3 and summary["sets"] == {"indoor": 6, "outdoor": 6}
    assert set(summary["validation_at_90pct_outliers"]) == {"precision", "recall", "f1"}
    assert set(summary["final_loss_terms_mean_last100"]) == {"loss", "loglik_q", "kl", "loglik_prior"}
    assert np.isfinite(summary["final_loss_terms_mean_last100"]["loss"])

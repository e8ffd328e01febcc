"""The runner's GPU paths: autocast (fp16 with a GradScaler, bf16), nccl under torchrun, HMNet on CUDA.
Skipped where no CUDA GPU exists (conftest)."""
from __future__ import annotations

import json

import pytest
import torch

from fovea_core.events.hmnet import train as hmnet_train
from fovea_core.training import example, train_main

pytestmark = pytest.mark.gpu


def _train(tmp_path, *flags: str) -> int:
    return train_main(["--run-dir", str(tmp_path), "--out", str(tmp_path / "model.pt"), "--minutes", "0",
                       "--log-every", "0", *flags], example.build_task, name="example", description="gpu test",
                      out="unused", add_arguments=example.add_arguments)


def _held_out_rmse(state) -> float:
    model = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    model.load_state_dict(state)
    points = example.PointSet(256, seed=999)
    with torch.no_grad():
        return float(((model(points.x).squeeze(-1) - points.y) ** 2).mean().sqrt())


def test_fp16_autocast_with_loss_scaling_trains_on_cuda(tmp_path):
    assert _train(tmp_path, "--device", "cuda", "--precision", "fp16", "--iterations", "200") == 0
    blob = torch.load(tmp_path / "step_00000200.pt", weights_only=True)
    assert json.loads(blob["run"])["precision"] == "float16"
    assert blob["scaler"]["scale"] > 0  # the GradScaler ran and its state is checkpointed
    assert _held_out_rmse(torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]) < 0.45


def test_bf16_autocast_where_supported(tmp_path):
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert _train(tmp_path, "--device", "cuda", "--precision", precision, "--iterations", "20") == 0
    run = json.loads(torch.load(tmp_path / "step_00000020.pt", weights_only=True)["run"])
    assert run["precision"] == {"bf16": "bfloat16", "fp16": "float16"}[precision]
    assert run["device"].startswith("cuda")


def test_torchrun_on_gpus_uses_nccl_one_device_per_rank(tmp_path, torchrun):
    ranks = min(2, torch.cuda.device_count())
    done = torchrun("-m", "fovea_core.training.example", "--device", "auto", "--iterations", "20", "--minutes", "0",
                    "--run-dir", str(tmp_path), "--out", str(tmp_path / "model.pt"), nproc=ranks)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"world_size {ranks}, backend nccl, device cuda:0" in done.stdout
    assert len(torch.load(tmp_path / "step_00000020.pt", weights_only=True)["ranks"]) == ranks


def test_hmnet_trains_a_step_on_cuda_with_automatic_precision(tmp_path):
    code = hmnet_train.main(["--train-sequences", "2", "--windows", "18", "--batch", "1", "--tbptt", "9",
                             "--iterations", "2", "--minutes", "0", "--device", "cuda", "--cache-dir",
                             str(tmp_path / "cache"), "--run-dir", str(tmp_path / "run"), "--out",
                             str(tmp_path / "m.pt")])
    assert code == 0
    model, meta = hmnet_train.load_model(tmp_path / "m.pt")
    assert meta["device"].startswith("cuda") and meta["precision"] in ("bfloat16", "float16")
    assert all(torch.isfinite(p).all() for p in model.parameters())

"""`fovea train tpv` / `fovea eval tpv` end to end on the tiny configuration: generated scenes, real PandaSet
frames (camera model, image-blind network, baselines), and torchrun with 2 processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fovea_core.tpv import evaluate, real_data, train
from fovea_core.tpv.config import tiny_config
from fovea_core.tpv.frame import IGNORE
from fovea_core.tpv.scenes import ROAD, VEHICLE

REPO = Path(__file__).resolve().parents[2]
FEW_TRAIN = ["0", "20", "43"]


def test_balanced_point_sampling_raises_the_share_of_rare_classes():
    from fovea_core.tpv.frame import Frame
    cfg = tiny_config()
    rng = np.random.default_rng(0)
    labels = np.r_[np.full(9900, ROAD), np.full(100, VEHICLE)]
    points = rng.uniform([-7, -7, 0], [7, 7, 3], (len(labels), 3)).astype(np.float32)
    frame = Frame(["c"], np.zeros((1, 4, 4, 3), np.uint8), np.eye(3)[None], np.eye(4)[None], points, labels)
    share = {}
    for balance in (0.0, 0.5):
        _, lab = train.training_points(frame, cfg, 1000, np.random.default_rng(1), balance)
        share[balance] = float((lab == VEHICLE).float().mean())
    assert 0.005 < share[0.0] < 0.02 and 0.06 < share[0.5] < 0.12  # 1 % of the points -> ~9 % of the draws


def test_generated_train_then_evaluate_writes_checkpoint_table_and_plots(tmp_path, capsys):
    ckpt = tmp_path / "tiny.pt"
    assert train.main(["--config", "tiny", "--data", "generated", "--data-dir", str(tmp_path / "data"),
                       "--train-scenes", "2", "--iterations", "6", "--points", "256", "--out", str(ckpt),
                       "--run-dir", str(tmp_path / "run")]) == 0
    blob = torch.load(ckpt, weights_only=True)
    assert set(blob) == {"model", "config", "variant", "info"}
    assert json.loads(blob["info"])["iterations"] == 6
    out_dir = tmp_path / "eval"
    assert evaluate.main(["--generated", "--checkpoint", str(ckpt), "--data-dir", str(tmp_path / "data"),
                          "--val-scenes", "1", "--skip-ablation", "--out-dir", str(out_dir)]) == 0
    assert "mIoU" in capsys.readouterr().out
    result = json.loads((out_dir / "eval.json").read_text())
    assert result["heldout"]["frames"] == 1 and 0.0 <= result["heldout"]["voxels"]["miou"] <= 1.0
    assert result["real_sample_boxes"]["boxes_with_points"] > 0


@pytest.fixture(scope="module")
def pandaset_run(tmp_path_factory):
    """Tiny camera model and image-blind network trained a few steps on three real training frames."""
    tmp = tmp_path_factory.mktemp("pandaset")
    common = ["--config", "tiny", "--data", "pandaset", "--data-dir", str(tmp / "cache"), "--train-frames",
              *FEW_TRAIN, "--iterations", "3", "--points", "256"]
    assert train.main([*common, "--aux-2d-weight", "0.5", "--out", str(tmp / "camera.pt"),
                       "--run-dir", str(tmp / "run_camera")]) == 0
    assert train.main([*common, "--no-images", "--augment", "none", "--out", str(tmp / "blind.pt"),
                       "--run-dir", str(tmp / "run_blind")]) == 0
    return tmp


def test_real_frames_carry_dense_labels_of_their_own_split(pandaset_run):
    frames = real_data.load_frames(tiny_config(), [0], cache_root=pandaset_run / "cache")
    vox = frames[0].voxel_labels
    X, Y, _ = vox.shape
    # the road 7-8 m behind the car (the Pandar64 sees no ground within ~6 m of itself: those cells stay empty)
    assert vox[0, Y // 2, 0] == ROAD and vox[X // 2, Y // 2, 0] == 0
    assert (vox == VEHICLE).sum() > 20 and (vox == 0).mean() > 0.5
    # the validation frames' neighbours are in neither split; dense labels accumulate within one split only
    assert not {44, 45} & (set(real_data.TRAIN_FRAMES) | set(real_data.VAL_FRAMES))
    assert real_data.split_of(46) == real_data.VAL_FRAMES and 43 in real_data.split_of(0)


def test_training_refuses_validation_frames(pandaset_run, capsys):
    code = train.main(["--config", "tiny", "--data", "pandaset", "--data-dir", str(pandaset_run / "cache"),
                       "--train-frames", "40", "46", "--iterations", "1", "--out", str(pandaset_run / "x.pt"),
                       "--run-dir", str(pandaset_run / "run_x")])
    assert code == 2 and "[46]" in capsys.readouterr().err


def test_blind_network_has_no_image_path(pandaset_run):
    blind, _ = train.load_checkpoint(pandaset_run / "blind.pt")
    camera, info = train.load_checkpoint(pandaset_run / "camera.pt")
    assert blind.backbone is None and camera.backbone is not None and camera.aux_head is not None
    assert info["augment"]["grid_symmetry"] and info["frames"] == 3


def test_real_evaluation_scores_every_method_per_frame(pandaset_run, capsys):
    out = pandaset_run / "eval"
    assert evaluate.main(["--checkpoint", str(pandaset_run / "camera.pt"), "--blind-checkpoint",
                          str(pandaset_run / "blind.pt"), "--onnx", "", "--train-frames", *FEW_TRAIN,
                          "--val-frames", "46", "55", "--cache-dir", str(pandaset_run / "cache"), "--skip-box-check",
                          "--out-dir", str(out)]) == 0
    result = json.loads((out / "eval.json").read_text())
    methods = result["methods"]
    assert set(methods) == {"camera model", "camera model, grey images", "image-blind network",
                            "voxel lookup (train frames)", "height prior"}
    for name, entry in methods.items():
        assert [r["frame"] for r in entry["per_frame"]] == [46, 55]
        assert 0.0 <= entry["points"]["miou"] <= 1.0
    lookup = methods["voxel lookup (train frames)"]
    # the memorised street is worth more next to the training frames than 9 m further on
    assert lookup["per_frame"][0]["points_miou"] > lookup["per_frame"][1]["points_miou"]
    assert lookup["points"]["miou"] > methods["height prior"]["points"]["miou"]
    assert "voxels" in lookup and "voxels" not in methods["height prior"]
    for name in ("pandaset_per_class_iou.png", "pandaset_per_frame.png", "pandaset_frame_55.png"):
        assert (out / name).stat().st_size > 20_000
    assert "per frame, point mIoU" in capsys.readouterr().out


def test_torchrun_two_processes_train_tpv(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "fovea_core.tpv.train", "--config", "tiny", "--data", "generated", "--data-dir",
                          str(tmp_path / "data"), "--train-scenes", "2", "--iterations", "3", "--points", "128",
                          "--out", str(tmp_path / "ddp.pt"), "--run-dir", str(tmp_path / "run")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "world_size 2" in run.stdout and run.stdout.count("[train tpv] done") == 1  # rank 0 reports
    info = json.loads(torch.load(tmp_path / "ddp.pt", weights_only=True)["info"])
    assert info["world_size"] == 2 and info["iterations"] == 3
    assert np.isfinite(info["final_loss"])
    assert IGNORE == -1


def test_evaluation_gives_each_model_frames_at_its_own_image_size():
    # a model trained on larger images is scored on frames read at that size, not on up-scaled small images
    from dataclasses import replace as with_changes

    from fovea_core.tpv.frame import Frame
    from fovea_core.tpv.model import build_model

    cfg = tiny_config()
    def frame_at(w, h):
        return Frame(camera_names=["c"], images=np.zeros((1, h, w, 3), np.uint8), intrinsics=np.eye(3)[None],
                     cam2ego=np.eye(4)[None], points=np.zeros((4, 3), np.float32),
                     point_labels=np.full(4, ROAD, np.int64))
    seen = {}
    class Recorder(evaluate.TorchMethod):
        def __call__(self, frame, points):
            seen[self.model.cfg.image_width] = frame.image_size
            return np.full(len(points), ROAD), None
    large = build_model(with_changes(cfg, image_width=96, image_height=64))
    methods = {"small": Recorder(build_model(cfg)), "large": Recorder(large)}
    evaluate.score(methods, [frame_at(cfg.image_width, cfg.image_height)], [46], cfg, log=lambda *a, **k: None,
                   frames_at=lambda w, h: [frame_at(w, h)])
    assert seen == {cfg.image_width: (cfg.image_width, cfg.image_height), 96: (96, 64)}

"""`fovea train tpv` / `fovea eval tpv` end to end on the tiny configuration (a few scenes, a few steps)."""
import json

import torch

from fovea_core.tpv import evaluate, train


def test_train_then_evaluate_writes_checkpoint_table_and_plots(tmp_path, capsys):
    ckpt = tmp_path / "tiny.pt"
    assert train.main(["--config", "tiny", "--data-dir", str(tmp_path / "data"), "--train-scenes", "2",
                       "--iterations", "6", "--points", "256", "--out", str(ckpt)]) == 0
    blob = torch.load(ckpt, weights_only=True)
    assert set(blob) == {"model", "config", "variant", "info"}
    assert json.loads(blob["info"])["iterations"] == 6
    out_dir = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(ckpt), "--data-dir", str(tmp_path / "data"), "--val-scenes", "1",
                          "--skip-ablation", "--out-dir", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "Real nuScenes sample" in printed
    result = json.loads((out_dir / "eval.json").read_text())
    assert result["heldout"]["frames"] == 1
    assert 0.0 <= result["heldout"]["voxels"]["miou"] <= 1.0
    assert result["real_sample_boxes"]["boxes_with_points"] > 0
    for name in ("per_class_iou.png", "heldout_example.png", "real_sample_prediction.png"):
        assert (out_dir / name).stat().st_size > 10_000

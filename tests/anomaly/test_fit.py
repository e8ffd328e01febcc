"""``fovea fit anomaly`` on a user's recording (here the real DAVIS346 bag): fine-tunes the shipped model on the
shared runner, calibrates on the held-out end of the recording, writes the model file, its ONNX models and a
model card; refuses a bag without the frames topic with one clear line."""
from pathlib import Path

import numpy as np

from fovea_core.events.anomaly.bundle import load_models
from fovea_core.events.anomaly.fit import main as fit_main

REPO = Path(__file__).resolve().parents[2]
BAG = REPO / "bags" / "davis346_emlb"


def test_fit_on_a_real_recording_writes_model_and_card(tmp_path, capsys):
    out = tmp_path / "site.pt"
    rc = fit_main(["anomaly", str(BAG), "--events", "/event_camera/events", "--frames", "/camera/image_raw",
                   "--base", str(REPO / "models" / "anomaly" / "anomaly.pt"), "--out", str(out),
                   "--iterations", "3", "--minutes", "0", "--batch", "4"])
    assert rc == 0
    fitted = load_models(out)
    base = load_models(REPO / "models" / "anomaly" / "anomaly.pt")
    assert "davis346_emlb" in fitted.meta.calibration and fitted.meta.thresholds != base.meta.thresholds
    assert all(np.isfinite(v) for v in fitted.meta.thresholds.values())
    card = (tmp_path / "site_MODEL_CARD.md").read_text()
    assert "346x260" in card and "held out" in card and "fovea fit anomaly" in card
    assert (tmp_path / "site_onnx" / "ar_learned.onnx").is_file()
    assert "[train anomaly-fit]" in capsys.readouterr().out  # the runner's progress lines


def test_fit_refuses_a_bag_without_the_topic(tmp_path, capsys):
    rc = fit_main(["anomaly", str(BAG), "--events", "/event_camera/events", "--frames", "/no/such/topic",
                   "--out", str(tmp_path / "x.pt"), "--iterations", "1"])
    assert rc == 2 and "no topic /no/such/topic" in capsys.readouterr().err

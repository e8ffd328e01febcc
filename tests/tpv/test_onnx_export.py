"""The exported ONNX graph (standard ops only: GridSample, no custom domains) matches PyTorch, for any rig."""
import numpy as np
import onnx
import pytest
import torch

from fovea_core.tpv import rigs
from fovea_core.tpv.config import tiny_config
from fovea_core.tpv.export import export
from fovea_core.tpv.inference import TPVInference
from fovea_core.tpv.model import build_model
from fovea_core.tpv.nuscenes_sample import load_sample

TINY = tiny_config()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    diff = export(model, path)
    assert max(diff.values()) < 1e-4, diff
    return model, path


def test_graph_uses_standard_ops_and_has_dynamic_cameras_and_points(exported):
    _, path = exported
    graph = onnx.load(str(path)).graph
    assert "GridSample" in {n.op_type for n in graph.node}
    assert all(n.domain in ("", "ai.onnx") for n in graph.node)  # no custom operators
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims["images"][1] == "num_cameras" and dims["ego2img"][1] == "num_cameras"
    assert dims["points"][1] == "num_points"


def test_inference_wrapper_reads_config_from_onnx_and_labels_real_points(exported):
    _, path = exported
    runner = TPVInference.load("onnxruntime", model_path=path, device="cpu")
    assert runner.cfg == TINY and runner.num_cameras is None  # any number of cameras
    frame = load_sample(image_size=(160, 90))  # resized again inside to the model's 48x32
    pts = frame.points[:500]
    pred = runner.predict(list(frame.images), list(frame.intrinsics), list(frame.cam2ego), pts)
    assert pred.voxel_labels.shape == TINY.voxel_shape and pred.point_labels.shape == (500,)
    inside = runner.inside(pts)
    assert 0 < inside.sum() < 500  # the tiny grid is 16 m wide: the sweep reaches beyond it
    assert pred.point_labels[inside].min() >= 1  # points are surfaces: never "empty" inside the grid
    assert (pred.point_labels[~inside] == 0).all() and (pred.point_confidence[~inside] == 0).all()
    labels, conf = runner.lookup(pred, np.array([[0.5, 0.5, 1.0], [100.0, 0.0, 0.0], [0.0, 0.0, -3.0]]))
    assert labels[1] == -1 and labels[2] == -1 and labels[0] == pred.voxel_labels[8, 8, 1]
    assert conf[0] == pred.voxel_confidence[8, 8, 1]  # z = 1.0 lies in [0.4, 1.2)


def test_five_cameras_of_a_random_rig_agree_with_torch(exported):
    """A 5-camera random rig (the export saw 6 nuScenes cameras) through ONNX Runtime, with images at another
    size than the model's, agrees with PyTorch."""
    model, path = exported
    size = (TINY.image_width, TINY.image_height)
    rig = rigs.random_rig(np.random.default_rng(12345), size)
    K = np.stack([k * [[160 / size[0]], [90 / size[1]], [1]] for k in rig.intrinsics[:5]])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(5)]
    points = rng.uniform([-7, -7, 0], [7, 7, 4], (64, 3)).astype(np.float32)
    runner = TPVInference.load("onnxruntime", model_path=path, device="cpu")
    x, ego2img = runner.prepare(images, list(K), list(rig.cam2ego[:5]))
    assert x.shape[1] == 5 and ego2img.shape == (1, 5, 4, 4)
    out = runner.backend.run({"images": x, "ego2img": ego2img, "points": points[None]})
    with torch.no_grad():
        ref_vox, ref_pts = model(torch.from_numpy(x), torch.from_numpy(ego2img), torch.from_numpy(points)[None])
    np.testing.assert_allclose(out["voxel_logits"], ref_vox.numpy(), atol=1e-4)
    np.testing.assert_allclose(out["point_logits"], ref_pts.numpy(), atol=1e-4)


def test_export_command_uses_the_threads_it_is_given(tmp_path):
    """``python -m fovea_core.tpv.export --threads N`` runs with N torch threads (no hard-coded count)."""
    from fovea_core.tpv.export import main
    from fovea_core.tpv.train import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(build_model(TINY).eval(), tmp_path / "tiny.pt", {})
    before = torch.get_num_threads()
    wanted = 3 if before != 3 else 2
    try:
        assert main(["--checkpoint", str(tmp_path / "tiny.pt"), "--out", str(tmp_path / "tiny.onnx"),
                     "--threads", str(wanted)]) == 0
        assert torch.get_num_threads() == wanted
        assert (tmp_path / "tiny.onnx").is_file() and (tmp_path / "tiny.onnx.sha256").is_file()
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "tiny.pt"), "--threads", "0"])

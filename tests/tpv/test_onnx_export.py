"""The exported ONNX graph (standard ops only: GridSample, no custom domains) matches PyTorch."""
import numpy as np
import onnx
import torch

from fovea_core.backends import export_onnx, load_backend
from fovea_core.tpv.config import tiny_config
from fovea_core.tpv.model import build_model
from fovea_core.tpv.nuscenes_sample import load_rig
from fovea_core.tpv.projection import ego_to_image

TINY = tiny_config()


def test_exported_onnx_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    _, K, cam2ego = load_rig(image_size=(TINY.image_width, TINY.image_height))
    images = torch.randn(1, 6, 3, TINY.image_height, TINY.image_width)
    ego2img = torch.from_numpy(ego_to_image(K, cam2ego)).float()[None]
    points = (torch.rand(1, 50, 3) - 0.5) * torch.tensor([16.0, 16.0, 4.0]) + torch.tensor([0, 0, 2.0])
    path = tmp_path / "tpv.onnx"
    report = export_onnx(model, {"images": images, "ego2img": ego2img, "points": points}, path,
                         output_names=["voxel_logits", "point_logits"], dynamic_axes={"points": {1: "num_points"}},
                         opset=17)
    assert max(report.max_abs_diff.values()) < 1e-4, report.max_abs_diff
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert "GridSample" in ops
    assert all(n.domain in ("", "ai.onnx") for n in graph.node)  # no custom operators
    # A different number of query points through the dynamic axis, via the onnxruntime backend.
    backend = load_backend("onnxruntime", onnx_path=path, device="cpu")
    more = (torch.rand(1, 123, 3) - 0.5) * 16
    out = backend.run({"images": images.numpy(), "ego2img": ego2img.numpy(), "points": more.numpy()})
    with torch.no_grad():
        ref_vox, ref_pts = model(images, ego2img, more)
    assert out["voxel_logits"].shape == (1, TINY.num_classes, 16, 16, 8)
    np.testing.assert_allclose(out["point_logits"], ref_pts.numpy(), atol=1e-4)
    np.testing.assert_allclose(out["voxel_logits"], ref_vox.numpy(), atol=1e-4)


def test_inference_wrapper_reads_config_from_onnx_and_labels_real_points(tmp_path):
    from fovea_core.tpv.export import export
    from fovea_core.tpv.inference import TPVInference
    from fovea_core.tpv.nuscenes_sample import load_sample

    model = build_model(TINY).eval()
    path = tmp_path / "tiny.onnx"
    diff = export(model, path)
    assert max(diff.values()) < 1e-4
    runner = TPVInference.load("onnxruntime", model_path=path, device="cpu")
    assert runner.cfg == TINY and runner.num_cameras == 6
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

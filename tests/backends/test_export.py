"""Export: PyTorch -> ONNX -> ONNX Runtime agrees with PyTorch, and the report says by how much."""
import hashlib
import json

import numpy as np
import onnx
import pytest
import torch

from fovea_core.backends import export_onnx
from fovea_core.backends.export import main as export_main
from fovea_core.backends.export import max_abs_diff


@pytest.fixture
def model_and_inputs(conv_grid_linear):
    torch.manual_seed(0)
    model = conv_grid_linear()
    inputs = {"image": torch.randn(2, 3, 16, 16), "grid": torch.rand(2, 6, 7, 2) * 2 - 1}
    return model, inputs


def test_round_trip_matches_pytorch_and_report_carries_the_difference(tmp_path, model_and_inputs):
    model, inputs = model_and_inputs
    path = tmp_path / "conv_grid.onnx"
    report = export_onnx(model, inputs, path, output_names=["logits", "sampled"])

    assert set(report.max_abs_diff) == {"logits", "sampled"}
    assert all(0.0 <= d < 1e-4 for d in report.max_abs_diff.values()), report.max_abs_diff
    assert report.within(1e-4)
    assert report.output_shapes == {"logits": [2, 4], "sampled": [2, 8, 6, 7]}
    assert report.opset == 17 and report.exporter == "torchscript"
    # The file is valid ONNX and uses a real GridSample op (not a decomposition into gathers).
    graph = onnx.load(path)
    onnx.checker.check_model(graph)
    assert "GridSample" in {n.op_type for n in graph.graph.node}
    assert [i.name for i in graph.graph.input] == ["image", "grid"]
    # sha256 file is in `sha256sum -c` format and matches the bytes on disk.
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.sha256 == digest
    assert (tmp_path / "conv_grid.onnx.sha256").read_text() == f"{digest}  conv_grid.onnx\n"
    # Export must not leave the caller's model in a different train/eval mode.
    assert model.training


def test_dynamic_batch_axis_accepts_other_batch_sizes(tmp_path, model_and_inputs):
    from fovea_core.backends import load_backend

    model, inputs = model_and_inputs
    path = tmp_path / "dyn.onnx"
    export_onnx(model, inputs, path, ["logits", "sampled"],
                dynamic_axes={"image": {0: "batch"}, "grid": {0: "batch"}})
    backend = load_backend("onnxruntime", onnx_path=path, device="cpu")
    assert backend.input_specs[0].shape == (None, 3, 16, 16)
    image = np.random.default_rng(1).standard_normal((5, 3, 16, 16)).astype(np.float32)
    grid = np.random.default_rng(2).uniform(-1, 1, (5, 6, 7, 2)).astype(np.float32)
    out = backend.run({"image": image, "grid": grid})
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(image), torch.from_numpy(grid))
    assert out["logits"].shape == (5, 4)
    assert np.abs(out["sampled"] - ref[1].numpy()).max() < 1e-4


def test_wrong_number_of_output_names_is_refused(tmp_path, model_and_inputs):
    model, inputs = model_and_inputs
    with pytest.raises(ValueError, match="returns 2 output"):
        export_onnx(model, inputs, tmp_path / "x.onnx", output_names=["only_one"])


def test_max_abs_diff_handles_nan_and_shape():
    a = np.array([1.0, np.nan, 3.0])
    assert max_abs_diff(a, np.array([1.5, np.nan, 3.0])) == pytest.approx(0.5)
    assert max_abs_diff(a, np.array([1.0, 0.0, 3.0])) == np.inf  # NaN on one side only is a real mismatch
    with pytest.raises(ValueError, match="shape mismatch"):
        max_abs_diff(np.zeros(3), np.zeros(4))


def test_cli_exports_prints_differences_and_enforces_tolerance(tmp_path, capsys):
    out = tmp_path / "conv.onnx"
    argv = [
        "--model-module", "torch.nn:Conv2d",
        "--factory-kwargs", json.dumps({"in_channels": 3, "out_channels": 4, "kernel_size": 3}),
        "--input", "image:1x3x12x12", "--output-names", "features", "--out", str(out),
        "--report-json", str(tmp_path / "report.json"), "--check-trt",
    ]
    assert export_main(argv) == 0
    printed = capsys.readouterr().out
    assert "max |onnxruntime - torch| features [1, 4, 10, 10]" in printed
    assert "TensorRT op check: passed" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["max_abs_diff"]["features"] < 1e-4
    # A tolerance no real export can meet turns the same run into a failure.
    assert export_main(argv[:-3] + ["--tolerance", "-1"]) == 1


def test_cli_reports_bad_arguments_without_a_traceback(tmp_path, capsys):
    code = export_main(["--model-module", "torch.nn", "--input", "x:1x3", "--output-names", "y",
                        "--out", str(tmp_path / "x.onnx")])
    assert code == 2
    assert "package.module:factory" in capsys.readouterr().err

"""torch and onnxruntime backends behind one interface: same outputs, same clear input errors."""
import numpy as np
import pytest
import torch

from fovea_core.backends import BackendInputError, InferenceBackend, export_onnx, load_backend
from fovea_core.backends.base import TensorSpec, check_inputs
from fovea_core.backends.onnxruntime_backend import select_providers

INPUTS = ["points", "scale"]
OUTPUTS = ["features", "norm"]


class PointMLP(torch.nn.Module):
    """Two inputs, two outputs: a per-point MLP scaled by a per-cloud factor."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))

    def forward(self, points, scale):
        features = self.mlp(points) * scale[:, None, :]
        return features, features.norm(dim=-1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = PointMLP().eval()
    path = tmp_path_factory.mktemp("onnx") / "point_mlp.onnx"
    export_onnx(model, {"points": torch.randn(1, 100, 3), "scale": torch.rand(1, 8)}, path, OUTPUTS,
                dynamic_axes={"points": {1: "n"}})
    return model, path


@pytest.fixture
def sample():
    rng = np.random.default_rng(7)
    return {"points": rng.standard_normal((1, 250, 3)).astype(np.float32),
            "scale": rng.uniform(0.5, 2.0, (1, 8)).astype(np.float32)}


def backends(model, path):
    return [
        load_backend("torch", torch_module=model, input_names=INPUTS, output_names=OUTPUTS),
        load_backend("onnxruntime", onnx_path=path, intra_op_threads=1),
    ]


def test_torch_and_onnxruntime_agree_through_the_same_interface(exported, sample):
    model, path = exported
    torch_backend, ort_backend = backends(model, path)
    for backend in (torch_backend, ort_backend):
        assert isinstance(backend, InferenceBackend)
        assert backend.input_names == INPUTS and backend.output_names == OUTPUTS
        backend.warmup(sample)
    a, b = torch_backend.run(sample), ort_backend.run(sample)
    assert set(a) == set(b) == set(OUTPUTS)
    for name in OUTPUTS:
        assert a[name].shape == b[name].shape and a[name].dtype == b[name].dtype == np.float32
        assert np.abs(a[name] - b[name]).max() < 1e-4
    # The comparison is not vacuous: outputs depend on the inputs.
    other = dict(sample, scale=sample["scale"] * 2)
    assert np.abs(ort_backend.run(other)["features"] - b["features"]).max() > 0.1
    assert torch_backend.name == "torch" and ort_backend.name == "onnxruntime"
    assert ort_backend.providers == ["CPUExecutionProvider"]  # this machine has no CUDA EP


def test_onnxruntime_reports_its_expected_inputs(exported):
    _, path = exported
    specs = load_backend("onnxruntime", onnx_path=path).input_specs
    assert specs == [TensorSpec("points", np.dtype(np.float32), (1, None, 3)),
                     TensorSpec("scale", np.dtype(np.float32), (1, 8))]


def test_onnxruntime_output_subset(exported, sample):
    _, path = exported
    backend = load_backend("onnxruntime", onnx_path=path, output_names=["norm"])
    assert list(backend.run(sample)) == ["norm"]
    with pytest.raises(ValueError, match=r"output\(s\) \['nope'\] not in"):
        load_backend("onnxruntime", onnx_path=path, output_names=["nope"])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: {"pts": s["points"], "scale": s["scale"]},
         r"missing input\(s\) \['points'\]; unknown input\(s\) \['pts'\]"),
        (lambda s: {"points": s["points"]}, r"missing input\(s\) \['scale'\]"),
        (lambda s: dict(s, points=s["points"].astype(np.float64)), "has dtype float64, the model expects float32"),
        (lambda s: dict(s, points=s["points"][0]), r"rank 2\), the model expects rank 3"),
        (lambda s: dict(s, points=s["points"][..., :2]), "axis 2 must be 3"),
        (lambda s: dict(s, scale=s["scale"].tolist()), "must be a numpy.ndarray, got list"),
    ],
)
def test_onnxruntime_bad_inputs_give_clear_errors(exported, sample, mutate, message):
    _, path = exported
    backend = load_backend("onnxruntime", onnx_path=path)
    with pytest.raises(BackendInputError, match=message):
        backend.run(mutate(sample))


def test_torch_backend_checks_names_and_declared_specs(exported, sample):
    model, _ = exported
    plain = load_backend("torch", torch_module=model, input_names=INPUTS, output_names=OUTPUTS)
    with pytest.raises(BackendInputError, match=r"unknown input\(s\) \['extra'\]"):
        plain.run(dict(sample, extra=sample["scale"]))
    specs = [TensorSpec("points", np.float32, (1, None, 3)), TensorSpec("scale", np.float32, (1, 8))]
    strict = load_backend("torch", torch_module=model, input_names=INPUTS, output_names=OUTPUTS, input_specs=specs)
    with pytest.raises(BackendInputError, match="has dtype float64"):
        strict.run(dict(sample, scale=sample["scale"].astype(np.float64)))
    with pytest.raises(RuntimeError, match="returned 2 output"):
        load_backend("torch", torch_module=model, input_names=INPUTS, output_names=["features"]).run(sample)


def test_warmup_without_inputs_uses_zeros_of_the_declared_shape(exported):
    _, path = exported
    backend = load_backend("onnxruntime", onnx_path=path)
    backend.warmup(iterations=2)  # the dynamic point axis becomes 1
    torch_backend = load_backend("torch", torch_module=PointMLP(), input_names=INPUTS, output_names=OUTPUTS)
    with pytest.raises(BackendInputError, match="cannot invent a warm-up input"):
        torch_backend.warmup()


def test_factory_rejects_bad_requests(exported):
    _, path = exported
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        load_backend("tflite", onnx_path=path)
    with pytest.raises(ValueError, match="build_only applies to the tensorrt backend only"):
        load_backend("onnxruntime", onnx_path=path, build_only=True)
    with pytest.raises(ValueError, match="needs onnx_path"):
        load_backend("onnxruntime")
    with pytest.raises(ValueError, match="needs the tensorrt backend"):
        load_backend("onnxruntime", onnx_path=path, precision="fp16")
    with pytest.raises(FileNotFoundError):
        load_backend("onnxruntime", onnx_path=path.with_name("missing.onnx"))
    with pytest.raises(ValueError, match="do not match the ONNX file's inputs"):
        load_backend("onnxruntime", onnx_path=path, input_names=["scale", "points"])
    with pytest.raises(ValueError, match="needs input_names and output_names"):
        load_backend("torch", torch_module=PointMLP())


def test_provider_selection():
    cpu_only = ["CPUExecutionProvider"]
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert [p for p, _ in select_providers(None, cpu_only)] == ["CPUExecutionProvider"]
    assert [p for p, _ in select_providers("auto", gpu)] == gpu
    assert [p for p, _ in select_providers("cpu", gpu)] == ["CPUExecutionProvider"]
    assert select_providers("cuda:1", gpu)[0] == ("CUDAExecutionProvider", {"device_id": 1})
    with pytest.raises(RuntimeError, match="no CUDAExecutionProvider"):
        select_providers("cuda", cpu_only)
    with pytest.raises(ValueError, match="unknown device"):
        select_providers("tpu", gpu)


def test_check_inputs_accepts_a_match():
    specs = [TensorSpec("a", np.float32, (None, 2)), TensorSpec("b")]
    check_inputs(specs, {"a": np.zeros((5, 2), np.float32), "b": np.zeros(3, np.int64)})


def test_tensorrt_backend_fails_clearly_without_tensorrt(exported):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        _, path = exported
        with pytest.raises(RuntimeError, match="needs TensorRT's Python package"):
            load_backend("tensorrt", onnx_path=path)
    else:  # a machine with TensorRT: the import-time guard is exercised by the GPU tests instead
        from fovea_core.backends.tensorrt_backend import import_tensorrt

        assert int(import_tensorrt().__version__.split(".")[0]) >= 10

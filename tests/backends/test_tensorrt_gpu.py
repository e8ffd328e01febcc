"""TensorRT backend on a real GPU (skipped where no CUDA GPU + TensorRT >= 10 exist)."""
import numpy as np
import pytest
import torch

from fovea_core.backends import BackendInputError, export_onnx, load_backend

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, conv_grid_linear):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("trt") / "small" / "net.onnx"
    export_onnx(conv_grid_linear(), {"image": torch.randn(2, 3, 32, 32), "grid": torch.rand(2, 9, 9, 2) * 2 - 1},
                path, ["logits", "sampled"], dynamic_axes={"image": {0: "b"}, "grid": {0: "b"}})
    return path


def _inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.standard_normal((batch, 3, 32, 32)).astype(np.float32),
            "grid": rng.uniform(-1, 1, (batch, 9, 9, 2)).astype(np.float32)}


SHAPES = {"image": [(1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32)],
          "grid": [(1, 9, 9, 2), (2, 9, 9, 2), (4, 9, 9, 2)]}


def test_fp32_engine_matches_onnxruntime_and_is_reused(onnx_file, tmp_path):
    cache = tmp_path / "engines"
    backend = load_backend("tensorrt", onnx_path=onnx_file, cache_dir=cache, input_shapes=SHAPES)
    assert backend.cache_result.status == "built"
    assert backend.engine_path.name == "small.net.fp32.engine"
    reference = load_backend("onnxruntime", onnx_path=onnx_file, device="cpu")
    for batch in (1, 3):
        got, want = backend.run(_inputs(batch)), reference.run(_inputs(batch))
        for name in ("logits", "sampled"):
            assert got[name].shape == want[name].shape
            assert np.abs(got[name] - want[name]).max() < 1e-3
    again = load_backend("tensorrt", onnx_path=onnx_file, cache_dir=cache, input_shapes=SHAPES)
    assert again.cache_result.status == "hit"
    assert any(p.name.startswith("timing-trt") for p in cache.iterdir())
    with pytest.raises(BackendInputError, match="outside the engine's optimisation profile"):
        again.run(_inputs(5))


def test_build_only_prebuilds_what_a_later_start_reuses(onnx_file, tmp_path):
    cache = tmp_path / "engines"
    prebuilt = load_backend("tensorrt", onnx_path=onnx_file, cache_dir=cache, precision="fp16",
                            input_shapes=SHAPES, build_only=True)
    assert prebuilt.cache_result.status == "built"
    with pytest.raises(RuntimeError, match="build_only"):
        prebuilt.run(_inputs(2))
    backend = load_backend("tensorrt", onnx_path=onnx_file, cache_dir=cache, precision="fp16", input_shapes=SHAPES)
    assert backend.cache_result.status == "hit"
    backend.warmup()
    want = load_backend("onnxruntime", onnx_path=onnx_file, device="cpu").run(_inputs(2))
    got = backend.run(_inputs(2))
    assert np.abs(got["sampled"] - want["sampled"]).max() < 5e-2


def test_corrupted_engine_is_rebuilt_on_the_gpu(onnx_file, tmp_path):
    cache = tmp_path / "engines"
    built = load_backend("tensorrt", onnx_path=onnx_file, cache_dir=cache, input_shapes=SHAPES, build_only=True)
    built.engine_path.write_bytes(b"not an engine")
    again = load_backend("tensorrt", onnx_path=onnx_file, cache_dir=cache, input_shapes=SHAPES)
    assert again.cache_result.status == "rebuilt"
    assert "failed to deserialise" in again.cache_result.reason
    assert again.run(_inputs(1))["logits"].shape == (1, 4)


def test_int8_with_numpy_calibration_batches(onnx_file, tmp_path):
    batches = [_inputs(2, seed) for seed in range(4)]
    backend = load_backend("tensorrt", onnx_path=onnx_file, cache_dir=tmp_path, precision="int8",
                           input_shapes=SHAPES, calibration_batches=batches)
    assert "calibration_sha256" in dict(backend.key.extra)
    want = load_backend("onnxruntime", onnx_path=onnx_file, device="cpu").run(_inputs(2, 9))
    got = backend.run(_inputs(2, 9))
    scale = np.abs(want["sampled"]).max()
    assert np.abs(got["sampled"] - want["sampled"]).max() < 0.1 * scale
    with pytest.raises(ValueError, match="needs calibration_batches"):
        load_backend("tensorrt", onnx_path=onnx_file, cache_dir=tmp_path, precision="int8", input_shapes=SHAPES)

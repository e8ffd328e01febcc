"""Inference backends: one interface over PyTorch (eager), ONNX Runtime and TensorRT.

    from fovea_core.backends import load_backend, export_onnx
    backend = load_backend("onnxruntime", onnx_path="models/x/x.onnx")
    outputs = backend.run({"input": array})          # dict output name -> numpy array

``export_onnx`` and ``check_tensorrt_ops`` are imported on first use, so nodes that only run ONNX
Runtime do not pay for importing torch's exporter.
"""
from .base import BackendInputError, InferenceBackend, TensorSpec
from .engine_cache import ENGINE_CACHE_ENV, default_cache_dir
from .factory import BACKEND_KINDS, load_backend

__all__ = [
    "BACKEND_KINDS",
    "BackendInputError",
    "ENGINE_CACHE_ENV",
    "ExportReport",
    "InferenceBackend",
    "TensorSpec",
    "check_tensorrt_ops",
    "default_cache_dir",
    "export_onnx",
    "load_backend",
]


def __getattr__(name):
    if name in ("export_onnx", "ExportReport"):
        from . import export

        return getattr(export, name)
    if name == "check_tensorrt_ops":
        from .trt_ops import check_tensorrt_ops

        return check_tensorrt_ops
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

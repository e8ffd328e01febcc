"""``load_backend``: the one place that turns a backend name plus options into an InferenceBackend."""
from __future__ import annotations

import os
from typing import Sequence

from .base import InferenceBackend

BACKEND_KINDS = ("torch", "onnxruntime", "tensorrt")


def load_backend(
    kind: str,
    *,
    torch_module=None,
    onnx_path: str | os.PathLike | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    device: str | None = None,
    precision: str = "fp32",
    cache_dir: str | os.PathLike | None = None,
    build_only: bool = False,
    model_parameter: str | None = None,
    **options,
) -> InferenceBackend:
    """Build a backend.

    kind        "torch" (needs ``torch_module``, ``input_names``, ``output_names``),
                "onnxruntime" or "tensorrt" (need ``onnx_path``).
    device      ``None`` picks each backend's natural default: torch "cpu", onnxruntime "auto"
                (CUDA execution provider first when installed, else CPU), tensorrt "cuda:0".
    precision   "fp32" everywhere; "fp16" for torch on CUDA and tensorrt; "int8" for tensorrt.
    cache_dir   tensorrt engine cache (default ``$FOVEA_ENGINE_CACHE`` or ``~/.cache/fovea/engines``).
    build_only  tensorrt: build and cache the engine, create no execution context.
    model_parameter  the parameter that named ``onnx_path``: a bad file is reported under it in one line
                (``fovea_core.model_files.ModelFileError``) before any runtime opens it.
    options     backend-specific: onnxruntime ``intra_op_threads``, ``inter_op_threads``; tensorrt
                ``input_shapes``, ``calibration_batches``, ``workspace_bytes``, ``engine_name``,
                ``log_interval_s``; torch ``input_specs``.
    """
    if kind not in BACKEND_KINDS:
        raise ValueError(f"unknown backend '{kind}'; choose one of {BACKEND_KINDS}")
    if build_only and kind != "tensorrt":
        raise ValueError("build_only applies to the tensorrt backend only (nothing to prebuild for "
                         f"'{kind}')")
    if kind == "torch":
        if torch_module is None:
            raise ValueError("the torch backend needs torch_module=")
        from .torch_backend import TorchBackend

        return TorchBackend(torch_module, input_names or [], output_names or [], device=device or "cpu",
                            precision=precision, **options)
    if onnx_path is None:
        raise ValueError(f"the {kind} backend needs onnx_path=")
    from fovea_core.model_files import load_onnx_file

    load_onnx_file(onnx_path, model_parameter)  # a runtime's own errors on a damaged file are tracebacks
    if kind == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx_path, device=device, precision=precision, input_names=input_names,
                                  output_names=output_names, **options)
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(onnx_path, device=device or "cuda", precision=precision, cache_dir=cache_dir,
                           build_only=build_only, input_names=input_names, output_names=output_names,
                           **options)

"""ONNX Runtime backend: CPU everywhere, CUDA execution provider first where the GPU build is installed."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from .base import InferenceBackend, TensorSpec, check_inputs

# ONNX Runtime reports element types as strings such as "tensor(float)".
_ORT_TYPE_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def _spec_from_ort(node_arg) -> TensorSpec:
    dtype = _ORT_TYPE_TO_NUMPY.get(node_arg.type)
    shape = None
    if node_arg.shape is not None:
        # Symbolic ("batch") or missing (None) dimensions are dynamic.
        shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in node_arg.shape)
    return TensorSpec(node_arg.name, None if dtype is None else np.dtype(dtype), shape)


def select_providers(device: str | None, available: Sequence[str]) -> list[tuple[str, dict]]:
    """Execution providers for ``device``: ``None``/"auto" = CUDA first when present, else CPU;
    "cpu" = CPU only; "cuda" / "cuda:N" = CUDA (error when this onnxruntime build has no CUDA EP)."""
    device = (device or "auto").lower()
    if device == "cpu":
        return [("CPUExecutionProvider", {})]
    if device == "auto":
        if "CUDAExecutionProvider" in available:
            return [("CUDAExecutionProvider", {"device_id": 0}), ("CPUExecutionProvider", {})]
        return [("CPUExecutionProvider", {})]
    if device == "cuda" or device.startswith("cuda:"):
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                f"device '{device}' requested but this onnxruntime has no CUDAExecutionProvider "
                f"(available: {list(available)}); install onnxruntime-gpu or use device='cpu'"
            )
        device_id = int(device.split(":", 1)[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": device_id}), ("CPUExecutionProvider", {})]
    raise ValueError(f"unknown device '{device}' for onnxruntime (use 'auto', 'cpu', 'cuda' or 'cuda:N')")


class OnnxRuntimeBackend(InferenceBackend):
    """One ``onnxruntime.InferenceSession`` behind the common interface.

    ``intra_op_threads``: threads inside one operator (``None`` = onnxruntime's default, one per core;
    set 1-2 on robots where several nodes share the CPU). ``output_names`` may select a subset of the
    model's outputs; by default all are returned.
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        device: str | None = None,
        precision: str = "fp32",
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        if precision != "fp32":
            raise ValueError(
                f"onnxruntime runs the ONNX file's own precision; '{precision}' needs the tensorrt backend "
                f"(or export the model in that precision)"
            )
        if not os.path.isfile(onnx_path):
            raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
        options = ort.SessionOptions()
        if intra_op_threads is not None:
            options.intra_op_num_threads = int(intra_op_threads)
        if inter_op_threads is not None:
            options.inter_op_num_threads = int(inter_op_threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = select_providers(device, ort.get_available_providers())
        self._session = ort.InferenceSession(
            os.fspath(onnx_path),
            sess_options=options,
            providers=[p for p, _ in providers],
            provider_options=[o for _, o in providers],
        )
        self._specs = [_spec_from_ort(a) for a in self._session.get_inputs()]
        model_inputs = [s.name for s in self._specs]
        if input_names is not None and list(input_names) != model_inputs:
            raise ValueError(f"input_names {list(input_names)} do not match the ONNX file's inputs {model_inputs}")
        model_outputs = [o.name for o in self._session.get_outputs()]
        if output_names is not None:
            unknown = [n for n in output_names if n not in model_outputs]
            if unknown:
                raise ValueError(f"output(s) {unknown} not in the ONNX file's outputs {model_outputs}")
            self._output_names = list(output_names)
        else:
            self._output_names = model_outputs

    @property
    def providers(self) -> list[str]:
        """Execution providers the session actually uses, in priority order."""
        return list(self._session.get_providers())

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_inputs(self._specs, inputs)
        feed = {s.name: np.ascontiguousarray(inputs[s.name]) for s in self._specs}
        values = self._session.run(self._output_names, feed)
        return dict(zip(self._output_names, values))

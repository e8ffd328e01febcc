"""The one interface every inference backend implements, and the input checks they share.

A backend maps named numpy arrays to named numpy arrays. Nodes and method cores only ever see this
interface, so switching between PyTorch (development), ONNX Runtime (CPU robots, CI) and TensorRT
(Jetson / x86 GPUs) is a configuration change, not a code change.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


class BackendInputError(ValueError):
    """Inputs passed to ``InferenceBackend.run`` do not match what the model expects."""


@dataclass(frozen=True)
class TensorSpec:
    """What a backend expects for one input: numpy dtype and shape.

    ``shape`` entries are ``None`` for dimensions fixed only at run time (dynamic axes); ``shape`` itself
    is ``None`` when the rank is unknown (e.g. an eager PyTorch module, which declares nothing).
    ``dtype`` is ``None`` when the backend cannot know it in advance.
    """

    name: str
    dtype: np.dtype | None = None
    shape: tuple[int | None, ...] | None = None

    def describe(self) -> str:
        dtype = "any dtype" if self.dtype is None else str(np.dtype(self.dtype))
        if self.shape is None:
            return f"{self.name}: {dtype}, any shape"
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {dtype}, shape ({dims})"


def check_inputs(specs: Sequence[TensorSpec], inputs: Mapping[str, object]) -> None:
    """Raise ``BackendInputError`` naming the first problem: missing/unknown name, non-array, dtype, rank, size.

    No silent casting: a float64 array sent to a float32 model is usually a bug upstream (wrong
    conversion in the glue), and casting would hide it while doubling memory traffic.
    """
    expected = [s.name for s in specs]
    missing = [n for n in expected if n not in inputs]
    unknown = [n for n in inputs if n not in expected]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing input(s) {missing}")
        if unknown:
            parts.append(f"unknown input(s) {unknown}")
        raise BackendInputError(f"{'; '.join(parts)}; the model takes {expected}")
    for spec in specs:
        value = inputs[spec.name]
        if not isinstance(value, np.ndarray):
            raise BackendInputError(
                f"input '{spec.name}' must be a numpy.ndarray, got {type(value).__name__}"
            )
        if spec.dtype is not None and value.dtype != np.dtype(spec.dtype):
            raise BackendInputError(
                f"input '{spec.name}' has dtype {value.dtype}, the model expects {np.dtype(spec.dtype)} "
                f"(convert with .astype(np.{np.dtype(spec.dtype).name}) before calling run)"
            )
        if spec.shape is None:
            continue
        if value.ndim != len(spec.shape):
            raise BackendInputError(
                f"input '{spec.name}' has shape {tuple(value.shape)} (rank {value.ndim}), "
                f"the model expects rank {len(spec.shape)}: {spec.describe()}"
            )
        for axis, (got, want) in enumerate(zip(value.shape, spec.shape)):
            if want is not None and got != want:
                raise BackendInputError(
                    f"input '{spec.name}' has shape {tuple(value.shape)}, axis {axis} must be {want}: "
                    f"{spec.describe()}"
                )


def zeros_for(specs: Sequence[TensorSpec], dynamic_dim: int = 1) -> dict[str, np.ndarray]:
    """Zero inputs matching ``specs`` (dynamic dims set to ``dynamic_dim``), for warm-up runs."""
    arrays = {}
    for spec in specs:
        if spec.shape is None or spec.dtype is None:
            raise BackendInputError(
                f"cannot invent a warm-up input for {spec.describe()}; pass sample inputs to warmup()"
            )
        shape = tuple(dynamic_dim if d is None else d for d in spec.shape)
        arrays[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return arrays


class InferenceBackend(abc.ABC):
    """Runs one model: ``run({input_name: array}) -> {output_name: array}``.

    Implementations: ``TorchBackend`` (eager), ``OnnxRuntimeBackend``, ``TensorRTBackend``.
    Build them with ``fovea_core.backends.load_backend``.
    """

    #: short backend kind: "torch", "onnxruntime" or "tensorrt"
    name: str = ""
    # set by each implementation when it has loaded its model
    _specs: list[TensorSpec]
    _output_names: list[str]

    @property
    def input_names(self) -> list[str]:
        """Input names in the order the model takes them."""
        return [s.name for s in self._specs]

    @property
    def output_names(self) -> list[str]:
        """Output names in the order the model returns them."""
        return list(self._output_names)

    @property
    def input_specs(self) -> list[TensorSpec]:
        """Expected dtype/shape per input, as far as the backend knows them."""
        return list(self._specs)

    @abc.abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model once; outputs are host numpy arrays keyed by output name."""

    def warmup(self, inputs: Mapping[str, np.ndarray] | None = None, iterations: int = 1) -> None:
        """Run the model ``iterations`` times so lazy allocations and kernel selection happen now,
        not on the first real message. Without ``inputs``, zeros shaped like ``input_specs`` are used."""
        sample = dict(inputs) if inputs is not None else zeros_for(self.input_specs)
        for _ in range(iterations):
            self.run(sample)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(inputs={self.input_names}, outputs={self.output_names})"

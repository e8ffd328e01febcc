"""Eager PyTorch backend: the reference every exported backend is compared against."""
from __future__ import annotations

import contextlib
from typing import Mapping, Sequence

import numpy as np

from .base import InferenceBackend, TensorSpec, check_inputs


class TorchBackend(InferenceBackend):
    """Runs an ``nn.Module`` in eval mode under ``torch.inference_mode``.

    The module takes its inputs positionally in ``input_names`` order and returns a tensor or a tuple
    of tensors in ``output_names`` order. ``module.to(device)`` is applied in place (that is what
    placing a model on a device means in PyTorch). ``precision="fp16"`` uses CUDA autocast rather
    than ``module.half()`` so the caller's weights stay untouched.
    """

    name = "torch"

    def __init__(
        self,
        module,
        input_names: Sequence[str],
        output_names: Sequence[str],
        device: str = "cpu",
        precision: str = "fp32",
        input_specs: Sequence[TensorSpec] | None = None,
    ) -> None:
        import torch

        if not input_names or not output_names:
            raise ValueError("the torch backend needs input_names and output_names (the module declares none)")
        self._device = torch.device(device)
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device '{device}' requested but torch sees no CUDA GPU")
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"torch backend supports precision fp32 or fp16, not '{precision}'")
        if precision == "fp16" and self._device.type != "cuda":
            raise ValueError("precision fp16 with the torch backend needs a CUDA device")
        self._precision = precision
        self._module = module.to(self._device).eval()
        self._output_names = list(output_names)
        if input_specs is not None and [s.name for s in input_specs] != list(input_names):
            raise ValueError("input_specs must list the same names as input_names, in the same order")
        self._specs = list(input_specs) if input_specs is not None else [TensorSpec(n) for n in input_names]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        check_inputs(self._specs, inputs)
        tensors = [torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self._device) for n in self.input_names]
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.float16)
            if self._precision == "fp16"
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            result = self._module(*tensors)
        outputs = (result,) if isinstance(result, torch.Tensor) else tuple(result)
        if len(outputs) != len(self._output_names):
            raise RuntimeError(
                f"the module returned {len(outputs)} output(s) but output_names lists {len(self._output_names)}: "
                f"{self._output_names}"
            )
        # autocast leaves fp16 activations; hand back fp32 like the fp16 TensorRT engines do.
        return {
            n: (t.float() if t.dtype == torch.float16 else t).detach().cpu().numpy()
            for n, t in zip(self._output_names, outputs)
        }

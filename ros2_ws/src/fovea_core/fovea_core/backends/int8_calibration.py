"""INT8 calibration data fed from numpy batches (the tensorrt-free half, unit-tested everywhere).

TensorRT's implicit INT8 path asks a calibrator for representative input batches and picks per-tensor
scales from the activations it sees. ``CalibrationFeed`` owns the batches and their bookkeeping;
``tensorrt_backend.make_int8_calibrator`` wraps it in TensorRT's ``IInt8EntropyCalibrator2``.
(Explicitly quantised ONNX files with QuantizeLinear/DequantizeLinear need no calibrator at all.)
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Mapping, Sequence

import numpy as np


class CalibrationFeed:
    """A finite sequence of input batches: each a dict input name -> array whose axis 0 is the batch."""

    def __init__(self, batches: Iterable[Mapping[str, np.ndarray]]) -> None:
        self._batches = [{k: np.ascontiguousarray(v) for k, v in b.items()} for b in batches]
        if not self._batches:
            raise ValueError("INT8 calibration needs at least one batch of representative inputs")
        names = sorted(self._batches[0])
        sizes = {v.shape[0] if v.ndim else 0 for v in self._batches[0].values()}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(f"all calibration inputs must share one non-zero batch size (axis 0), got {sizes}")
        self.batch_size = sizes.pop()
        for i, batch in enumerate(self._batches):
            if sorted(batch) != names:
                raise ValueError(f"calibration batch {i} has inputs {sorted(batch)}, batch 0 has {names}")
            for name, value in batch.items():
                first = self._batches[0][name]
                if value.shape != first.shape or value.dtype != first.dtype:
                    raise ValueError(
                        f"calibration batch {i} input '{name}' is {value.dtype}{value.shape}, "
                        f"batch 0 is {first.dtype}{first.shape}"
                    )
        self.input_names = names
        self._next = 0

    def __len__(self) -> int:
        return len(self._batches)

    def next_batch(self, names: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The next batch restricted to ``names`` (TensorRT's order), or ``None`` when all were served."""
        missing = [n for n in names if n not in self.input_names]
        if missing:
            raise KeyError(f"TensorRT asked for calibration input(s) {missing}; the batches hold {self.input_names}")
        if self._next >= len(self._batches):
            return None
        batch = self._batches[self._next]
        self._next += 1
        return {n: batch[n] for n in names}

    def rewind(self) -> None:
        self._next = 0

    def digest(self) -> str:
        """sha256 of every batch's names, dtypes, shapes and bytes: part of the engine cache key, since
        other calibration data gives other INT8 scales and so another engine."""
        h = hashlib.sha256()
        for batch in self._batches:
            for name in self.input_names:
                value = batch[name]
                h.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
                h.update(value.tobytes())
        return h.hexdigest()

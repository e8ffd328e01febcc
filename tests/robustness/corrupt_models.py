"""Damaged and hostile copies of a model file, the cases a robot meets (copy cut short, empty file, wrong file,
old pickles) and the one an attacker plants (a pickle whose ``__reduce__`` runs code: here it would create a
marker file, so a test can prove nothing ran)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

TORCH_CASES = ("missing", "directory", "empty", "truncated", "random_bytes", "onnx_instead", "wrong_keys",
               "wrong_shapes", "pickled", "malicious_pickle", "malicious_torch_zip", "sha256_mismatch")
ONNX_CASES = ("missing", "directory", "empty", "truncated", "random_bytes", "torch_instead", "pickled",
              "malicious_pickle", "sha256_mismatch")


class Planted:
    """Unpickling this would run ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _shrunk_state(state: dict) -> dict:
    """The same keys with every tensor's first axis one shorter (or longer for 1-element axes)."""
    out = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and v.ndim:
            n = v.shape[0] - 1 if v.shape[0] > 1 else 2
            out[k] = torch.zeros((n, *v.shape[1:]), dtype=v.dtype)
        else:
            out[k] = v
    return out


def make_corrupt(case: str, good: Path, dest: Path, marker: Path, *, state_key: str | None = None) -> Path:
    """Write ``dest`` as the ``case`` variant of the good file ``good``; returns the path to configure.

    ``state_key``: where the state dict sits inside a torch file (``None``: the file is the state dict).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    if case == "missing":
        return dest.with_name("no_such_" + dest.name)
    if case == "directory":
        dest.mkdir()
        return dest
    if case == "empty":
        dest.write_bytes(b"")
    elif case == "truncated":
        dest.write_bytes(data[: len(data) // 2])
    elif case == "random_bytes":
        dest.write_bytes(_random_bytes(4096))
    elif case == "onnx_instead":  # the wrong file of the right name: an ONNX graph where a state dict belongs
        dest.write_bytes(b"\x08\x08\x12\x07pytorch" + _random_bytes(512))
    elif case == "torch_instead":
        torch.save({"weights": torch.zeros(3)}, dest)
    elif case in ("wrong_keys", "wrong_shapes"):
        blob = torch.load(good, map_location="cpu", weights_only=True)
        if case == "wrong_keys":
            blob = {f"renamed.{k}": v for k, v in blob.items()}
        elif state_key is None:
            blob = _shrunk_state(blob)
        else:
            blob = {**blob, state_key: _shrunk_state(blob[state_key])}
        torch.save(blob, dest)
    elif case == "pickled":
        with open(dest, "wb") as f:
            pickle.dump({"state_dict": {"w": np.zeros(3)}}, f)
    elif case == "malicious_pickle":
        with open(dest, "wb") as f:
            pickle.dump(Planted(marker), f)
    elif case == "malicious_torch_zip":
        torch.save({"state_dict": Planted(marker), "config": "{}"}, dest)
    elif case == "sha256_mismatch":
        dest.write_bytes(data)
        dest.with_name(dest.name + ".sha256").write_text("0" * 64 + f"  {dest.name}\n")
    else:
        raise ValueError(case)
    if case != "sha256_mismatch":
        # a stale digest beside a corrupt copy would hide what is wrong behind "sha256 mismatch"
        dest.with_name(dest.name + ".sha256").unlink(missing_ok=True)
    return dest

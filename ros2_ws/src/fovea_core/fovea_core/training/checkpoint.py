"""Training checkpoints: one plain dict of tensors, numbers and JSON strings, readable with
``torch.load(path, weights_only=True)`` (never unpickled objects).

Keys: ``format``, ``model`` (state dict), ``optimizer``, ``scheduler``, ``scaler`` (their state dicts),
``step``, ``epoch`` / ``batch_in_epoch`` (dataset position), ``elapsed_seconds``, ``config`` (JSON: the
task's config), ``run`` (JSON: runner settings), ``log`` (JSON: logged scalars), ``ranks`` (per rank: random
generator states as tensors / JSON strings and the task's stateful objects)."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

FORMAT = "fovea.training.checkpoint/1"
PATTERN = "step_*.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the run resuming from it."""


def rng_state(rng: np.random.Generator, device: torch.device) -> dict:
    """Every random stream a training step may draw from, as tensors and JSON strings."""
    legacy = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_generator": json.dumps(rng.bit_generator.state),
        "numpy_global": json.dumps([legacy[0], legacy[1].tolist(), *legacy[2:]]),
        "python": json.dumps(random.getstate()),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, rng: np.random.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    rng.bit_generator.state = json.loads(state["numpy_generator"])
    name, keys, pos, has_gauss, cached = json.loads(state["numpy_global"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save(blob: dict, run_dir: Path, step: int, keep: int) -> Path:
    """Write ``step_<step>.pt`` atomically (a crash never leaves a half-written checkpoint under the final
    name) and delete all but the newest ``keep``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"step_{step:08d}.pt"
    partial = path.with_suffix(".pt.partial")
    torch.save({"format": FORMAT, **blob}, partial)
    os.replace(partial, path)
    if keep > 0:
        for old in sorted(run_dir.glob(PATTERN))[:-keep]:
            old.unlink()
    return path


def latest(path: Path) -> Path:
    """``path`` itself, or the newest checkpoint in the run folder ``path``."""
    if path.is_dir():
        found = sorted(path.glob(PATTERN))
        if not found:
            raise CheckpointError(f"--resume {path}: no {PATTERN} checkpoint in this folder")
        return found[-1]
    if not path.exists():
        raise CheckpointError(f"--resume {path}: no such file or folder")
    return path


def load(path: Path) -> dict:
    path = latest(Path(path))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, not a torch archive, or a pickled object weights_only refuses
        raise CheckpointError(f"--resume {path}: cannot read it as a training checkpoint "
                              f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"--resume {path}: not a Fovea training checkpoint (format {found!r}, "
                              f"expected {FORMAT!r}); a model file is not a checkpoint")
    blob["path"] = str(path)
    return blob


def config_differences(saved: dict, current: dict) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}"
            for k in keys if saved.get(k) != current.get(k)]

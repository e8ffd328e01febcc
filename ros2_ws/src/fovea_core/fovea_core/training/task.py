"""What a method hands the runner: a ``TrainTask`` (model, data, loss, optimiser, schedule, hooks) built by
the method from its own flags and a ``RunContext`` (rank, device, this rank's random generator)."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

Scalars = dict[str, float]


class TaskError(ValueError):
    """A task or its flags cannot run as configured (raised with the flag or field it concerns)."""


@runtime_checkable
class Stateful(Protocol):
    """Anything whose state a checkpoint must carry to resume exactly (a batch source's position, memories
    carried between truncated-BPTT chunks). Saved per rank; values are tensors, numbers, strings, lists, dicts."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass(frozen=True)
class Budget:
    """When a run stops: after ``iterations`` optimiser steps or ``seconds`` of training, whichever comes first
    (None: no limit of that kind; at least one is set)."""

    iterations: int | None
    seconds: float | None

    def progress(self, step: int, elapsed: float) -> float:
        """The used fraction of the budget in [0, 1]: the larger of the step and time fractions."""
        fractions = [0.0]
        if self.iterations:
            fractions.append(step / self.iterations)
        if self.seconds:
            fractions.append(elapsed / self.seconds)
        return min(max(fractions), 1.0)

    def exhausted(self, step: int, elapsed: float) -> bool:
        return bool((self.iterations and step >= self.iterations) or (self.seconds and elapsed >= self.seconds))


class ProgressLR:
    """lr = base_lr × ``factor(progress)``, with progress the used fraction of the run's budget (see
    ``Budget.progress``), set by the runner before every step. For recipes that decay over a wall-clock budget,
    where a step-indexed torch scheduler cannot know the step count in advance. Resuming restores the elapsed
    time, so the decay continues where it stopped."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[float], float]) -> None:
        self.optimizer = optimizer
        self.factor = factor
        self.base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]
        self.progress = 0.0
        self.set_progress(0.0)

    def set_progress(self, progress: float) -> None:
        self.progress = float(progress)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * self.factor(self.progress)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"progress": self.progress, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs = list(state["base_lrs"])
        self.set_progress(state["progress"])


def cosine_factor(final: float = 0.0) -> Callable[[float], float]:
    """Cosine decay from 1 to ``final`` over the budget (``ProgressLR``'s usual factor)."""
    return lambda p: final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p))


Schedule = torch.optim.lr_scheduler.LRScheduler | ProgressLR


@dataclass
class TrainTask:
    """One method's training, as the runner needs it. Give exactly one of ``batches`` and ``dataset``.

    - ``model``: the module whose weights are trained and checkpointed (the runner moves it to the device).
    - ``loss(model, batch) -> (loss, scalars)``: one step's objective on this rank's batch; the scalars
      (floats or 0-d tensors) go to the progress line and TensorBoard. It may call the model several times
      or through any method: the runner wraps the whole call in DistributedDataParallel, so gradients are
      averaged across ranks however the model is used.
    - ``batches(rng) -> batch``: for generated or randomly drawn data; each rank draws from its own
      generator (``RunContext.rng``), so ranks see different samples. Or ``dataset`` (a map-style torch
      Dataset) with ``batch_size`` / ``collate``: the runner shards it with a ``DistributedSampler``,
      reshuffled every epoch. Tensors in a batch (also inside tuples, lists, dicts) are moved to the device.
    - ``optimizer(model)`` and ``schedule(optimizer, budget)``: the recipe. A torch ``LRScheduler`` is
      stepped after every optimiser step; a ``ProgressLR`` follows the budget's used fraction.
    - ``validate(model) -> scalars``: run on rank 0 every ``validate_every`` steps and at the end (the model
      is in eval mode under ``torch.no_grad``); keep it short, the other ranks wait for it.
    - ``save(model, out, summary)``: writes the method's own model files at the end (rank 0).
    - ``config``: JSON-able description of the model and recipe; stored in every checkpoint, and a resume
      with a different config is refused.
    - ``stateful``: objects whose ``state_dict`` must be checkpointed per rank to resume exactly.
    """

    model: torch.nn.Module
    loss: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict[str, Any]]]
    optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer]
    save: Callable[[torch.nn.Module, Path, dict], None]
    batches: Callable[[np.random.Generator], Any] | None = None
    dataset: torch.utils.data.Dataset | None = None
    batch_size: int = 1
    collate: Callable[[list], Any] | None = None
    loader_workers: int = 0
    schedule: Callable[[torch.optim.Optimizer, Budget], Schedule] | None = None
    clip_grad_norm: float | None = None
    validate: Callable[[torch.nn.Module], dict[str, Any]] | None = None
    validate_every: int = 0
    config: dict = field(default_factory=dict)
    stateful: Sequence[Stateful] = ()
    find_unused_parameters: bool = False

    def check(self) -> None:
        if (self.batches is None) == (self.dataset is None):
            raise TaskError("a TrainTask needs exactly one of 'batches' and 'dataset'")
        if self.dataset is not None and self.batch_size < 1:
            raise TaskError(f"batch_size must be >= 1 (got {self.batch_size})")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise TaskError(f"clip_grad_norm must be > 0 or None (got {self.clip_grad_norm})")
        for obj in self.stateful:
            if not isinstance(obj, Stateful):
                raise TaskError(f"stateful entry {obj!r} has no state_dict/load_state_dict")


@dataclass
class RunContext:
    """Where this process stands in the run; handed to the method's task builder."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    seed: int
    rng: np.random.Generator  # this rank's generator: rank 0 draws what a single process would
    run_dir: Path

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def log(self, message: str) -> None:
        """Print on rank 0 only (other ranks stay quiet so logs read as one run)."""
        if self.is_main:
            print(message, flush=True)

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. generates and caches data), the others after it, then read the
        cache instead of racing to write it."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


def scalar_values(scalars: dict[str, Any]) -> Scalars:
    return {name: float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            for name, value in scalars.items()}

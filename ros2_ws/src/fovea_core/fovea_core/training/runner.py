"""The training loop every method shares: DDP around the task's loss, AMP on GPU, clipping, schedules,
budgets, checkpoints that resume exactly, TensorBoard and progress on rank 0."""
from __future__ import annotations

import contextlib
import json
import platform
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint, distributed
from .report import Reporter
from .task import Budget, ProgressLR, RunContext, TaskError, TrainTask, scalar_values

# Stop after this many consecutive steps with a non-finite gradient: the weights are kept as they were before
# the first of them, but a run that only produces NaN is not training any more.
MAX_NONFINITE_STEPS = 20


@dataclass
class RunSettings:
    name: str
    out: Path
    run_dir: Path
    budget: Budget
    resume: Path | None = None
    threads: int = 1
    tensorboard_dir: Path | None = None
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    checkpoint_every: int = 0  # steps; 0: only on time (checkpoint_minutes) and at the end
    checkpoint_minutes: float = 10.0
    keep_checkpoints: int = 2  # newest kept in run_dir (0: all)
    log_every_s: float = 10.0


@dataclass
class RunResult:
    step: int
    seconds: float
    completed: bool  # False when stopped by a signal (a checkpoint is written, the model files are not)
    checkpoint: Path | None
    summary: dict


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: full fp32). ``auto``: bf16 where the GPU
    supports it, else fp16 (with loss scaling); fp32 on the CPU."""
    if precision == "fp32":
        return None
    if device.type != "cuda":
        if precision == "auto":
            return None
        raise TaskError(f"--precision {precision}: mixed precision is used on CUDA devices only; "
                        "use fp32 (or auto) on the CPU")
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class _TaskStep(torch.nn.Module):
    """The task's loss as one module call, so DDP sees exactly one forward per backward whatever the task
    does inside (several passes, recurrent chunks, methods other than ``forward``)."""

    def __init__(self, model: torch.nn.Module, loss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch):
        return self.loss(self.model, batch)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(b, device) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


class _DatasetBatches:
    """A map-style dataset, sharded over ranks by DistributedSampler, as an endless stream of batches that
    knows its (epoch, batch) position so a resume continues with the next batch of the same epoch."""

    def __init__(self, task: TrainTask, ctx: RunContext) -> None:
        self.task, self.ctx = task, ctx
        self.sampler = torch.utils.data.DistributedSampler(task.dataset, num_replicas=ctx.world_size,
                                                           rank=ctx.rank, shuffle=True, seed=ctx.seed)
        self.batches_per_epoch = len(self.sampler) // task.batch_size
        if self.batches_per_epoch == 0:
            raise TaskError(f"dataset of {len(task.dataset)} samples gives {len(self.sampler)} per rank on "
                            f"{ctx.world_size} rank(s): fewer than batch_size {task.batch_size}")
        self.epoch, self.batch_in_epoch = 0, 0
        self._iterator = None

    def _open(self) -> None:
        self.sampler.set_epoch(self.epoch)
        order = list(self.sampler)[self.batch_in_epoch * self.task.batch_size:]
        # Its own generator (per rank and epoch) for the loader's worker seeds, so opening a loader never
        # draws from the global torch stream the training step uses (a resumed run opens at another moment).
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence(
            [self.ctx.seed, self.ctx.rank, self.epoch]).generate_state(1)[0]))
        loader = torch.utils.data.DataLoader(self.task.dataset, batch_size=self.task.batch_size, sampler=order,
                                             collate_fn=self.task.collate, drop_last=True,
                                             num_workers=self.task.loader_workers, generator=generator)
        self._iterator = iter(loader)

    def next(self) -> Any:
        if self.batch_in_epoch >= self.batches_per_epoch:
            self.epoch, self.batch_in_epoch, self._iterator = self.epoch + 1, 0, None
        if self._iterator is None:
            self._open()
        batch = next(self._iterator)
        self.batch_in_epoch += 1
        return batch

    def position(self) -> dict:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def seek(self, epoch: int, batch_in_epoch: int) -> None:
        self.epoch, self.batch_in_epoch, self._iterator = epoch, batch_in_epoch, None


class _StopRequest:
    """SIGINT/SIGTERM ask the loop to stop after the current step and checkpoint (a second one aborts)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: no handlers, the loop runs to its budget
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run(task: TrainTask, settings: RunSettings, ctx: RunContext) -> RunResult:
    task.check()
    dtype = autocast_dtype(settings.precision, ctx.device)
    model = task.model.to(ctx.device)
    model.train()
    step_module = _TaskStep(model, task.loss)
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        step_module = DistributedDataParallel(step_module, device_ids=device_ids,
                                              find_unused_parameters=task.find_unused_parameters)
    optimizer = task.optimizer(model)
    schedule = task.schedule(optimizer, settings.budget) if task.schedule else None
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=dtype == torch.float16)
    source = _DatasetBatches(task, ctx) if task.dataset is not None else None
    task_config = json.loads(json.dumps(task.config))

    step, elapsed_before, interval_log = 0, 0.0, []
    if settings.resume is not None:
        step, elapsed_before, interval_log = _resume(settings, ctx, task, task_config, model, optimizer, schedule,
                                                     scaler, source)

    reporter = Reporter(settings.name, settings.budget, ctx.is_main, settings.tensorboard_dir,
                        settings.log_every_s, step, interval_log)
    run_info = {"world_size": ctx.world_size, "backend": distributed.Placement(
        ctx.rank, ctx.local_rank, ctx.world_size, ctx.device).backend, "device": str(ctx.device),
        "precision": str(dtype).replace("torch.", "") if dtype else "fp32", "threads": torch.get_num_threads(),
        "seed": settings.seed, "torch": torch.__version__, "machine": platform.platform()}
    ctx.log(f"[train {settings.name}] {sum(p.numel() for p in model.parameters())} parameters; "
            + ", ".join(f"{k} {v}" for k, v in run_info.items() if k != "machine")
            + f"; budget {settings.budget.iterations or '-'} steps / "
            + (f"{settings.budget.seconds / 60:g} min" if settings.budget.seconds else "- min")
            + f"; checkpoints in {settings.run_dir}")

    def write_checkpoint() -> Path | None:
        per_rank = {"rng": checkpoint.rng_state(ctx.rng, ctx.device),
                    "stateful": [obj.state_dict() for obj in task.stateful]}
        ranks = distributed.gather_states(per_rank, ctx.device)  # collective: every rank calls it
        if not ctx.is_main:
            return None
        position = source.position() if source is not None else {"epoch": 0, "batch_in_epoch": 0}
        path = checkpoint.save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict() if schedule is not None else {},
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "step": step, **position, "elapsed_seconds": elapsed,
            "config": json.dumps(task_config), "run": json.dumps({**run_info, "settings": _jsonable(settings)}),
            "log": json.dumps(interval_log), "ranks": ranks,
        }, settings.run_dir, step, settings.keep_checkpoints)
        reporter.message(f"[train {settings.name}] checkpoint {path}")
        return path

    last_validation: dict[str, float] = {}
    validated_at = -1

    def run_validation() -> None:
        nonlocal last_validation, validated_at
        if task.validate is None or not ctx.is_main or validated_at == step:
            return
        validated_at = step
        model.eval()
        with torch.no_grad(), _autocast(ctx.device, dtype):
            last_validation = scalar_values(task.validate(model))
        model.train()
        reporter.validation(step, last_validation)

    started = time.monotonic()
    elapsed, last_checkpoint_at, nonfinite_run, saved = elapsed_before, elapsed_before, 0, None
    stopped_by_signal = False
    with _StopRequest() as stop_request:
        while True:
            elapsed, signalled = distributed.agree(
                [elapsed_before + time.monotonic() - started, float(stop_request.requested)], ctx.device)
            if signalled:
                stopped_by_signal = True
                break
            if settings.budget.exhausted(step, elapsed):
                break
            if isinstance(schedule, ProgressLR):
                schedule.set_progress(settings.budget.progress(step, elapsed))
            lr = optimizer.param_groups[0]["lr"]
            batch = source.next() if source is not None else task.batches(ctx.rng)
            batch = to_device(batch, ctx.device)
            with _autocast(ctx.device, dtype):
                loss, scalars = step_module(batch)
            grad_norm, stepped = _apply_gradients(loss, model, optimizer, scaler, task.clip_grad_norm)
            nonfinite_run = 0 if np.isfinite(grad_norm) else nonfinite_run + 1
            if nonfinite_run >= MAX_NONFINITE_STEPS:
                raise FloatingPointError(f"[train {settings.name}] {nonfinite_run} consecutive steps with a "
                                         f"non-finite gradient (last loss {float(loss.detach())}); stopping")
            if stepped and schedule is not None and not isinstance(schedule, ProgressLR):
                schedule.step()
            step += 1
            values = {"loss": float(loss.detach()), **scalar_values(scalars), "lr": lr}
            if np.isfinite(grad_norm):
                values["grad_norm"] = grad_norm
            elif scaler.is_enabled():  # expected while the loss scale settles; the scaler lowers it
                reporter.message(f"[train {settings.name}] step {step}: inf/NaN gradient, update skipped, "
                                 f"loss scale now {scaler.get_scale():g}")
            else:
                reporter.message(f"[train {settings.name}] step {step}: non-finite gradient, update skipped")
            reporter.step(step, elapsed, values)
            if task.validate_every and step % task.validate_every == 0:
                run_validation()
            due_by_steps = settings.checkpoint_every and step % settings.checkpoint_every == 0
            due_by_time = settings.checkpoint_minutes and elapsed - last_checkpoint_at >= 60 * settings.checkpoint_minutes
            if (due_by_steps or due_by_time) and not settings.budget.exhausted(step, elapsed):
                saved, last_checkpoint_at = write_checkpoint(), elapsed
        reporter.flush(step, elapsed)
        saved = write_checkpoint()
    if not stopped_by_signal:
        run_validation()
    summary = {"steps": step, "train_seconds": round(elapsed, 1), "recent_means": reporter.recent_means(),
               "validation": last_validation, "log": interval_log, **run_info}
    if stopped_by_signal:
        reporter.message(f"[train {settings.name}] stopped by a signal at step {step}; model files not "
                         f"written; continue with --resume {saved} (same flags)")
    elif ctx.is_main:
        task.save(model, settings.out, summary)
        reporter.message(f"[train {settings.name}] done: {step} steps in {elapsed:.0f} s; model saved to "
                         f"{settings.out}")
    reporter.close()
    ctx.barrier()
    return RunResult(step, elapsed, not stopped_by_signal, saved, summary)


def _apply_gradients(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler, clip: float | None) -> tuple[float, bool]:
    """Backward (DDP averages the gradients here), unscale, clip, step unless a gradient is inf/NaN.
    Returns the gradient norm before clipping and whether the weights changed."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip or float("inf")))
    if scaler.is_enabled():
        scaler.step(optimizer)  # skips the step itself on inf/NaN and lowers the scale
        scaler.update()
        return grad_norm, bool(np.isfinite(grad_norm))
    if np.isfinite(grad_norm):  # gradients are averaged over ranks: every rank takes the same branch
        optimizer.step()
        return grad_norm, True
    return grad_norm, False


def _resume(settings: RunSettings, ctx: RunContext, task: TrainTask, task_config: dict, model, optimizer, schedule,
            scaler, source: _DatasetBatches | None) -> tuple[int, float, list[dict]]:
    """Load everything a checkpoint holds into the run; returns (step, seconds trained, interval log)."""
    blob = checkpoint.load(settings.resume)
    differences = checkpoint.config_differences(json.loads(blob["config"]), task_config)
    if differences:
        raise checkpoint.CheckpointError(f"--resume {blob['path']}: the checkpoint was trained with another "
                                         "config: " + "; ".join(differences))
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    if schedule is not None and blob["scheduler"]:
        schedule.load_state_dict(blob["scheduler"])
    if blob["scaler"]:
        scaler.load_state_dict(blob["scaler"])
    if source is not None:
        source.seek(int(blob["epoch"]), int(blob["batch_in_epoch"]))
    ranks = blob["ranks"]
    if len(ranks) != ctx.world_size:
        ctx.log(f"[train {settings.name}] warning: checkpoint from {len(ranks)} rank(s), resuming on "
                f"{ctx.world_size}: random streams of ranks beyond it start fresh (not an exact resume)")
    if ctx.rank < len(ranks):
        checkpoint.restore_rng(ranks[ctx.rank]["rng"], ctx.rng, ctx.device)
        for obj, state in zip(task.stateful, ranks[ctx.rank]["stateful"]):
            obj.load_state_dict(state)
    step, elapsed = int(blob["step"]), float(blob["elapsed_seconds"])
    ctx.log(f"[train {settings.name}] resumed from {blob['path']} at step {step} ({elapsed:.0f} s trained)")
    return step, elapsed, json.loads(blob["log"])


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _jsonable(settings: RunSettings) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}

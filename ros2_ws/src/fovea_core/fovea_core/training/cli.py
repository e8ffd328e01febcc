"""``train_main``: the command line every ``fovea train <method>`` shares (the runner's flags + the method's
own), as a plain process or under torchrun."""
from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from . import checkpoint, distributed
from .runner import RunResult, RunSettings, run
from .task import Budget, RunContext, TaskError, TrainTask

BuildTask = Callable[[argparse.Namespace, RunContext], TrainTask]

COMMON_FLAGS = ("out", "resume", "iterations", "minutes", "threads", "tensorboard_dir", "seed", "device",
                "precision", "run_dir", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints", "log_every")


def add_runner_arguments(parser: argparse.ArgumentParser, *, name: str, out: str, minutes: float | None,
                         iterations: int | None) -> None:
    group = parser.add_argument_group("training runner (shared by every fovea train)")
    group.add_argument("--out", type=Path, default=Path(out), help=f"where the trained model goes (default {out})")
    group.add_argument("--run-dir", type=Path, default=Path("runs") / name,
                       help="checkpoints (step_*.pt) and, unless --tensorboard-dir, TensorBoard events "
                            f"(default runs/{name})")
    group.add_argument("--resume", type=Path, default=None,
                       help="continue from a checkpoint file or the newest one in a run folder; pass the same "
                            "flags as the first run (the budget may grow)")
    group.add_argument("--iterations", type=int, default=iterations,
                       help="stop after this many optimiser steps (0: no step limit)")
    group.add_argument("--minutes", type=float, default=minutes,
                       help="stop after this much training wall-clock time (0: no time limit)")
    group.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default 1)")
    group.add_argument("--tensorboard-dir", type=Path, default=None, help="default: <run-dir>/tensorboard")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--device", default="auto", help="auto (this rank's GPU if any, else CPU) | cpu | cuda | cuda:N")
    group.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                       help="autocast on GPU (auto: bf16 where supported, else fp16 with loss scaling); "
                            "fp32 on CPU")
    group.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps (0: off)")
    group.add_argument("--checkpoint-minutes", type=float, default=10.0,
                       help="checkpoint every this many minutes of training (0: off); always at the end")
    group.add_argument("--keep-checkpoints", type=int, default=2, help="newest checkpoints kept (0: all)")
    group.add_argument("--log-every", type=float, default=10.0,
                       help="seconds between progress lines when the output is not a terminal")


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Budget:
    if args.threads < 1:
        parser.error(f"--threads must be >= 1 (got {args.threads})")
    if (args.iterations or 0) < 0 or (args.minutes or 0) < 0:
        parser.error("--iterations and --minutes must be >= 0")
    if not args.iterations and not args.minutes:
        parser.error("give a budget: --iterations N and/or --minutes M (both 0 or unset would never stop)")
    for flag in ("checkpoint_every", "keep_checkpoints"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag.replace('_', '-')} must be >= 0")
    return Budget(args.iterations or None, args.minutes * 60.0 if args.minutes else None)


def _rank_seed(seed: int, rank: int) -> int:
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def train_main(argv: Sequence[str] | None, build_task: BuildTask, *, name: str, description: str,
               out: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
               minutes: float | None = None, iterations: int | None = None) -> int:
    """Parse the runner's flags plus the method's (``add_arguments``), set threads / seeds / device / process
    group, call ``build_task(args, ctx)`` and run it. Returns 0 when training completed, 1 when stopped by a
    signal (a checkpoint holds the state), 2 on a configuration error (with its reason on stderr)."""
    parser = argparse.ArgumentParser(prog=f"fovea train {name}", description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if add_arguments is not None:
        add_arguments(parser)
    add_runner_arguments(parser, name=name, out=out, minutes=minutes, iterations=iterations)
    args = parser.parse_args(list(argv) if argv is not None else None)
    budget = _check(args, parser)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        placement = distributed.start(args.device)
        try:
            result = _run(args, build_task, name, budget, placement)
        finally:
            distributed.stop(placement)
    except (TaskError, checkpoint.CheckpointError) as error:
        print(f"fovea train {name}: {error}", file=sys.stderr, flush=True)
        return 2
    finally:
        torch.set_num_threads(previous_threads)
    return 0 if result.completed else 1


def _run(args: argparse.Namespace, build_task: BuildTask, name: str, budget: Budget,
         placement: distributed.Placement) -> RunResult:
    rank_seed = _rank_seed(args.seed, placement.rank)
    torch.manual_seed(args.seed)  # the same model initialisation on every rank (DDP also broadcasts rank 0's)
    random.seed(rank_seed)
    np.random.seed(rank_seed % 2**32)
    ctx = RunContext(rank=placement.rank, local_rank=placement.local_rank, world_size=placement.world_size,
                     device=placement.device, seed=args.seed, rng=np.random.default_rng(rank_seed),
                     run_dir=args.run_dir)
    task = build_task(args, ctx)
    if placement.rank:
        torch.manual_seed(rank_seed)  # dropout and other in-step draws differ between ranks
    settings = RunSettings(
        name=name, out=args.out, run_dir=args.run_dir, budget=budget, resume=args.resume, threads=args.threads,
        tensorboard_dir=args.tensorboard_dir or args.run_dir / "tensorboard", seed=args.seed,
        precision=args.precision, checkpoint_every=args.checkpoint_every,
        checkpoint_minutes=args.checkpoint_minutes, keep_checkpoints=args.keep_checkpoints,
        log_every_s=args.log_every)
    return run(task, settings, ctx)

"""The smallest complete method on the runner (a template, and what the runner's tests drive): a two-layer
MLP learns y = sin(3x₀)·cos(2x₁) + x₂² from generated points.

    python -m fovea_core.training.example --iterations 200 --out runs/example/model.pt
    python -m torch.distributed.run --nproc_per_node 2 -m fovea_core.training.example --iterations 200
    python -m fovea_core.training.example --data dataset ...   # a fixed Dataset sharded by DistributedSampler
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fovea_core.training import Budget, ProgressLR, RunContext, TrainTask, cosine_factor, train_main


def target(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(3 * x[:, 0]) * torch.cos(2 * x[:, 1]) + x[:, 2] ** 2


class PointSet(torch.utils.data.Dataset):
    """A fixed set of generated points; each item carries its index so a test can see which rank drew it."""

    def __init__(self, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.rand(count, 3, generator=generator) * 2 - 1
        self.y = target(self.x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], torch.tensor(i)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", choices=("generated", "dataset"), default="generated")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-2)


def mse_loss(model: torch.nn.Module, batch):
    x, y = batch[0], batch[1]
    loss = torch.nn.functional.mse_loss(model(x).squeeze(-1), y)
    return loss, {"rmse": loss.detach().sqrt()}


def build_task(args: argparse.Namespace, ctx: RunContext) -> TrainTask:
    model = torch.nn.Sequential(torch.nn.Linear(3, args.hidden), torch.nn.Tanh(), torch.nn.Linear(args.hidden, 1))
    held_out = PointSet(256, seed=12345)

    def batches(rng: np.random.Generator):
        x = torch.from_numpy(rng.uniform(-1, 1, (args.batch, 3)).astype(np.float32))
        return x, target(x)

    def validate(m: torch.nn.Module) -> dict:
        return {"rmse": float(((m(held_out.x).squeeze(-1) - held_out.y) ** 2).mean().sqrt())}

    def save(m: torch.nn.Module, out: Path, summary: dict) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": m.state_dict(), "config": json.dumps(vars(args), default=str),
                    "summary": json.dumps(summary)}, out)

    def schedule(optimizer: torch.optim.Optimizer, budget: Budget) -> ProgressLR:
        return ProgressLR(optimizer, cosine_factor(final=0.1))

    return TrainTask(
        model=model, loss=mse_loss, save=save,
        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=args.lr),
        schedule=schedule, clip_grad_norm=1.0, validate=validate, validate_every=100,
        batches=batches if args.data == "generated" else None,
        dataset=PointSet(512, seed=ctx.seed) if args.data == "dataset" else None, batch_size=args.batch,
        config={"hidden": args.hidden, "batch": args.batch, "lr": args.lr, "data": args.data})


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, build_task, name="example", description=__doc__.split("\n")[0],
                      out="runs/example/model.pt", add_arguments=add_arguments, iterations=200)


if __name__ == "__main__":
    raise SystemExit(main())

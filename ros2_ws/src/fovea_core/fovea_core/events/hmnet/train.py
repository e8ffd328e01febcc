"""``fovea train hmnet``: HMNet (or the single-rate baseline / HMNet-1) on simulated sequences with
truncated BPTT, on the shared training runner (``fovea_core.training``: torchrun DDP, AMP, resume,
TensorBoard, progress).

    python -m fovea_core.events.hmnet.train --out models/hmnet/hmnet.pt --minutes 12
    python -m fovea_core.events.hmnet.train --variant baseline --out models/hmnet/baseline.pt
    python -m torch.distributed.run --nproc_per_node 2 -m fovea_core.events.hmnet.train --iterations 450

A sequence batch (``--batch`` whole sequences, from their first window) runs in chunks of ``--tbptt`` steps,
detaching the memories between chunks (gradients span at most one chunk while the memories span the whole
sequence, as at inference time); each chunk is one optimiser step, so ``--iterations`` counts chunks
(``ceil(windows / tbptt)`` per sequence batch). Chunks are multiples of 9 steps so every chunk holds whole
periods of the slowest level. Under torchrun each rank draws its own sequence batches.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fovea_core.events.hmnet.config import cpu_config, gpu_config, single_memory, single_rate_baseline
from fovea_core.events.hmnet.data import DEFAULT_CACHE, build_split
from fovea_core.events.hmnet.model import HMNet, count_parameters
from fovea_core.training import ProgressLR, RunContext, TaskError, TrainTask, cosine_factor, train_main

VARIANTS = ("hmnet", "baseline", "hmnet1")


def make_config(variant: str, size: str = "cpu"):
    cfg = cpu_config() if size == "cpu" else gpu_config()
    if variant == "baseline":
        return single_rate_baseline(cfg)
    if variant == "hmnet1":
        return single_memory(cfg)
    return cfg


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    freq = np.bincount(labels.reshape(-1), minlength=num_classes).astype(np.float64) + 1.0
    w = 1.0 / np.sqrt(freq / freq.sum())
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def sequence_loss(seg, depth, labels, gt_depth, weights, depth_weight: float):
    ce = F.cross_entropy(seg.flatten(0, 1), labels.flatten(0, 1), weight=weights)
    log_err = (depth.squeeze(2).log() - gt_depth.log()).abs().mean()
    return ce + depth_weight * log_err, ce, log_err


def save_model(model: HMNet, path: Path, variant: str, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "config": model.cfg.to_json(), "variant": variant,
                "meta": json.dumps(meta)}, path)


def load_model(path: str | Path, parameter: str | None = None) -> tuple[HMNet, dict]:
    """The model in ``path``; a bad file raises ``ModelFileError`` (one line naming ``parameter`` and the file)."""
    from fovea_core.events.hmnet.config import HMNetConfig
    from fovea_core.model_files import ModelFileError, check_state_dict, load_torch_file

    blob = load_torch_file(path, parameter, required_keys=("state_dict", "config"))
    try:
        model = HMNet(HMNetConfig.from_dict(json.loads(blob["config"])))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(path, f"'config' is not an HMNet configuration ({exc})", parameter) from None
    check_state_dict(blob["state_dict"], model, path, parameter, key="state_dict")
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, {"variant": blob.get("variant", "hmnet"), **json.loads(blob.get("meta", "{}"))}


class SequenceChunks:
    """The batch source: picks ``batch`` training sequences with this rank's generator, then hands out their
    chunks in order. Its position is checkpointed, so a resume continues inside the same sequence batch."""

    def __init__(self, tokens: torch.Tensor, labels: torch.Tensor, depth: torch.Tensor, batch: int,
                 tbptt: int) -> None:
        self.tokens, self.labels, self.depth = tokens, labels, depth  # (S, T, ...)
        self.batch, self.tbptt = min(batch, len(tokens)), tbptt
        self.windows = tokens.shape[1]
        self.chunks_per_sequence = math.ceil(self.windows / tbptt)
        self.pick = torch.zeros(0, dtype=torch.int64)
        self.chunk = 0

    def __call__(self, rng: np.random.Generator):
        if self.chunk == 0:
            self.pick = torch.from_numpy(rng.choice(len(self.tokens), size=self.batch, replace=False))
        window = slice(self.chunk * self.tbptt, min((self.chunk + 1) * self.tbptt, self.windows))
        self.chunk = (self.chunk + 1) % self.chunks_per_sequence
        return {"tokens": self.tokens[self.pick, window].transpose(0, 1),
                "labels": self.labels[self.pick, window].transpose(0, 1),
                "depth": self.depth[self.pick, window].transpose(0, 1), "start": window.start}

    def state_dict(self) -> dict:
        return {"pick": self.pick.clone(), "chunk": self.chunk}

    def load_state_dict(self, state: dict) -> None:
        self.pick, self.chunk = state["pick"], int(state["chunk"])


class ChunkLoss:
    """Class-weighted cross-entropy + L1 on log depth for one chunk, carrying the memories (detached) from
    the previous chunk of the same sequences; a chunk starting at window 0 starts from empty memories."""

    def __init__(self, weights: torch.Tensor, depth_weight: float) -> None:
        self.weights, self.depth_weight = weights, depth_weight
        self.states: list[torch.Tensor] | None = None

    def __call__(self, model: HMNet, batch: dict):
        states = None if batch["start"] == 0 else self.states
        seg, dep, states = model.forward_sequence(batch["tokens"], states, start_step=batch["start"])
        self.states = [s.detach() for s in states]
        loss, ce, log_err = sequence_loss(seg, dep, batch["labels"], batch["depth"],
                                          self.weights.to(seg.device), self.depth_weight)
        return loss, {"ce": ce.detach(), "log_depth_l1": log_err.detach()}

    def state_dict(self) -> dict:
        return {"states": [s.cpu() for s in self.states] if self.states is not None else []}

    def load_state_dict(self, state: dict) -> None:
        self.states = list(state["states"]) or None
        if self.states is not None and self.weights.device.type != "cpu":
            self.states = [s.to(self.weights.device) for s in self.states]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--variant", choices=VARIANTS, default="hmnet")
    ap.add_argument("--size", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--train-sequences", type=int, default=32)
    ap.add_argument("--windows", type=int, default=180, help="5 ms windows per sequence")
    ap.add_argument("--batch", type=int, default=8, help="sequences per batch (per rank under torchrun)")
    ap.add_argument("--tbptt", type=int, default=18, help="windows per chunk (one optimiser step)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--depth-weight", type=float, default=1.0)
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)


def build_task(args: argparse.Namespace, ctx: RunContext) -> TrainTask:
    cfg = make_config(args.variant, args.size)
    if args.tbptt < 1 or args.windows < 1 or args.train_sequences < 1 or args.batch < 1:
        raise TaskError("--tbptt, --windows, --train-sequences and --batch must be >= 1")
    with ctx.main_first():  # rank 0 simulates and caches; the others then read the cache
        data = build_split("train", args.train_sequences, args.windows, cfg, args.cache_dir)
    ctx.log(f"[train hmnet] {len(data)} sequences x {args.windows} windows ready")
    tokens = torch.from_numpy(np.stack([d.tokens for d in data]))  # (S, T, N, K)
    labels = torch.from_numpy(np.stack([d.labels for d in data]).astype(np.int64))
    depth = torch.from_numpy(np.stack([d.depth for d in data]))
    weights = class_weights(labels.numpy(), cfg.num_classes).to(ctx.device)
    model = HMNet(cfg)
    ctx.log(f"[train hmnet] variant={args.variant} params={count_parameters(model)} config={cfg.to_json()}")
    chunks = SequenceChunks(tokens, labels, depth, args.batch, args.tbptt)
    loss = ChunkLoss(weights, args.depth_weight)

    def save(trained: torch.nn.Module, out: Path, summary: dict) -> None:
        meta = {"iterations": summary["steps"] // chunks.chunks_per_sequence, "optimiser_steps": summary["steps"],
                "train_sequences": args.train_sequences, "windows": args.windows, "batch": args.batch,
                "tbptt": args.tbptt, "minutes": args.minutes, "lr": args.lr, "seed": args.seed,
                "train_seconds": summary["train_seconds"],
                **{k: summary[k] for k in ("world_size", "device", "precision", "threads")}}
        save_model(trained.cpu(), out, args.variant, meta)

    return TrainTask(
        model=model, loss=loss, batches=chunks, stateful=(chunks, loss), save=save,
        optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=args.lr, weight_decay=1e-4),
        # cosine to 0 over the budget (time or steps, whichever ends first), updated every chunk
        schedule=lambda opt, budget: ProgressLR(opt, cosine_factor(0.0)),
        clip_grad_norm=1.0,
        config={"variant": args.variant, "model": json.loads(cfg.to_json()), "train_sequences": args.train_sequences,
                "windows": args.windows, "batch": args.batch, "tbptt": args.tbptt, "lr": args.lr,
                "depth_weight": args.depth_weight})


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, build_task, name="hmnet", description=__doc__.split("\n")[0],
                      out="models/hmnet/hmnet.pt", add_arguments=add_arguments, minutes=12.0)


if __name__ == "__main__":
    raise SystemExit(main())

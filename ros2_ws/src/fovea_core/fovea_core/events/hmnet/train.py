"""Train HMNet (or the single-rate baseline / HMNet-1) on simulated sequences with truncated BPTT.

    python -m fovea_core.events.hmnet.train --out models/hmnet/hmnet.pt --minutes 12
    python -m fovea_core.events.hmnet.train --variant baseline --out models/hmnet/baseline.pt

Each iteration takes a batch of whole sequences from their first window and runs them in chunks of
``--tbptt`` steps, detaching the memories between chunks (so gradients span at most one chunk while the
memories span the whole sequence, as at inference time). Chunks are multiples of 9 steps so every chunk holds
whole periods of the slowest level.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fovea_core.events.hmnet.config import cpu_config, gpu_config, single_memory, single_rate_baseline
from fovea_core.events.hmnet.data import DEFAULT_CACHE, build_split
from fovea_core.events.hmnet.model import HMNet, count_parameters

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fovea train hmnet", description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=VARIANTS, default="hmnet")
    ap.add_argument("--size", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--out", type=Path, default=Path("models/hmnet/hmnet.pt"))
    ap.add_argument("--minutes", type=float, default=12.0, help="wall-clock training budget")
    ap.add_argument("--max-iterations", type=int, default=0, help="stop after this many iterations (0: budget only)")
    ap.add_argument("--train-sequences", type=int, default=32)
    ap.add_argument("--windows", type=int, default=180, help="5 ms windows per sequence")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tbptt", type=int, default=18)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--depth-weight", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = make_config(args.variant, args.size)
    t0 = time.monotonic()
    data = build_split("train", args.train_sequences, args.windows, cfg, args.cache_dir)
    print(f"[train] {len(data)} sequences x {args.windows} windows ready in {time.monotonic() - t0:.1f}s", flush=True)
    tokens = torch.from_numpy(np.stack([d.tokens for d in data]))  # (S, T, N, K)
    labels = torch.from_numpy(np.stack([d.labels for d in data]).astype(np.int64))
    depth = torch.from_numpy(np.stack([d.depth for d in data]))
    weights = class_weights(labels.numpy(), cfg.num_classes).to(args.device)

    model = HMNet(cfg).to(args.device)
    print(f"[train] variant={args.variant} params={count_parameters(model)} config={cfg.to_json()}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    budget_s = args.minutes * 60.0
    chunks_per_seq = math.ceil(args.windows / args.tbptt)
    iteration, start = 0, time.monotonic()
    while time.monotonic() - start < budget_s and not (args.max_iterations and iteration >= args.max_iterations):
        pick = torch.from_numpy(rng.choice(len(data), size=min(args.batch, len(data)), replace=False))
        states, losses = None, []
        for c in range(chunks_per_seq):
            frac = min((time.monotonic() - start) / budget_s, 1.0)
            if args.max_iterations:
                frac = max(frac, (iteration + c / chunks_per_seq) / args.max_iterations)
            for g in opt.param_groups:  # cosine decay over the budget (time or iterations, whichever ends first)
                g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * frac))
            sl = slice(c * args.tbptt, min((c + 1) * args.tbptt, args.windows))
            tok = tokens[pick, sl].transpose(0, 1).to(args.device)
            seg, dep, states = model.forward_sequence(tok, states, start_step=sl.start)
            loss, ce, lerr = sequence_loss(seg, dep, labels[pick, sl].transpose(0, 1).to(args.device),
                                           depth[pick, sl].transpose(0, 1).to(args.device), weights, args.depth_weight)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            states = [s.detach() for s in states]
            losses.append((ce.item(), lerr.item()))
        iteration += 1
        ce_m, lerr_m = np.mean(losses, axis=0)
        print(f"[train] iter {iteration} t={time.monotonic() - start:.0f}s ce={ce_m:.3f} log_depth_l1={lerr_m:.3f}",
              flush=True)
    meta = {"iterations": iteration, "train_sequences": args.train_sequences, "windows": args.windows,
            "batch": args.batch, "tbptt": args.tbptt, "minutes": args.minutes, "lr": args.lr, "seed": args.seed,
            "train_seconds": round(time.monotonic() - start, 1)}
    save_model(model.cpu(), args.out, args.variant, meta)
    print(f"[train] saved {args.out} after {iteration} iterations", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

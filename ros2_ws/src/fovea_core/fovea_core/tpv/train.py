"""``fovea train tpv``: train TPVFormer (or an ablation variant) on cached generated scenes.

Renders missing scenes first (cached under --data-dir), then trains with AdamW + one-cycle LR, single
thread by default, printing progress. The checkpoint is a plain dict (state dict + config JSON + variant +
training log) loadable with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import data
from .config import CONFIGS, TPVConfig
from .frame import Frame
from .losses import class_weights, tpv_loss
from .model import TPVFormer, build_model

DEFAULT_OUT = Path("models/tpv/tpv_cpu.pt")


def training_points(frame: Frame, cfg: TPVConfig, count: int, rng: np.random.Generator):
    """Up to ``count`` labelled lidar points inside the volume, padded with label -1."""
    keep = np.nonzero(data.points_in_volume(frame.points, cfg) & (frame.point_labels > 0))[0]
    pick = rng.choice(keep, size=min(count, len(keep)), replace=False) if len(keep) else keep
    pts = np.zeros((count, 3), np.float32)
    lab = np.full(count, -1, np.int64)
    pts[:len(pick)] = frame.points[pick]
    lab[:len(pick)] = frame.point_labels[pick]
    return torch.from_numpy(pts)[None], torch.from_numpy(lab)[None]


def save_checkpoint(model: TPVFormer, path: Path, extra: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": model.cfg.to_json(), "variant": model.variant,
                "info": json.dumps(extra)}, path)


def load_checkpoint(path: str | Path, parameter: str | None = None) -> tuple[TPVFormer, dict]:
    """The model in ``path``; a bad file raises ``ModelFileError`` (one line naming ``parameter`` and the file)."""
    from fovea_core.model_files import ModelFileError, check_state_dict, load_torch_file

    blob = load_torch_file(path, parameter, required_keys=("model", "config", "variant"))
    try:
        cfg = TPVConfig.from_dict(json.loads(blob["config"]))
        model = TPVFormer(cfg, blob["variant"])
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ModelFileError(path, f"'config'/'variant' do not describe a TPVFormer ({exc})", parameter) from None
    check_state_dict(blob["model"], model, path, parameter, key="model")
    model.load_state_dict(blob["model"])
    model.eval()
    return model, json.loads(blob.get("info", "{}"))


def train(cfg: TPVConfig, variant: str, frames: list[Path], iterations: int, out: Path, points: int = 2048,
          snapshots: tuple[int, ...] = (), log=print) -> TPVFormer:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg, variant)
    model.train()
    cache = [Frame.load(p) for p in frames]
    freq = torch.from_numpy(np.bincount(np.concatenate([f.voxel_labels.ravel() for f in cache]),
                                        minlength=cfg.num_classes))
    weights = class_weights(freq)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=iterations,
                                                pct_start=max(0.1, 3.0 / iterations))
    start, history = time.time(), []
    for it in range(1, iterations + 1):
        frame = cache[int(rng.integers(len(cache)))]
        images, ego2img = data.model_inputs(frame, cfg)
        pts, labels = training_points(frame, cfg, points, rng)
        voxel_logits, point_logits = model(images, ego2img, pts)
        loss, parts = tpv_loss(voxel_logits, torch.from_numpy(frame.voxel_labels)[None], point_logits, labels,
                               weights, cfg.lovasz_weight)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if it % 20 == 0 or it == iterations:
            log(f"[{variant}] iter {it}/{iterations} loss {np.mean(history[-20:]):.3f} "
                + " ".join(f"{k} {v:.3f}" for k, v in parts.items()) + f" {time.time() - start:.0f}s", flush=True)
        if it in snapshots:
            save_checkpoint(model, out.with_name(f"{out.stem}_it{it}{out.suffix}"),
                            {"iterations": it, "seconds": time.time() - start, "frames": len(cache)})
    model.eval()
    save_checkpoint(model, out, {"iterations": iterations, "seconds": round(time.time() - start, 1),
                                 "frames": len(cache), "points_per_step": points,
                                 "final_loss": float(np.mean(history[-50:]))})
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train TPVFormer on generated surround-view scenes.")
    parser.add_argument("--config", default="cpu", choices=sorted(CONFIGS))
    parser.add_argument("--variant", default="tpv", choices=["tpv", "bev", "voxel"])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: data/tpv/<image size>_<grid>")
    parser.add_argument("--train-scenes", type=int, default=len(data.TRAIN_SEEDS))
    parser.add_argument("--iterations", type=int, default=1200)
    parser.add_argument("--points", type=int, default=2048, help="lidar points per step for the point loss")
    parser.add_argument("--snapshots", type=int, nargs="*", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = CONFIGS[args.config]()
    data_dir = args.data_dir or data.cache_dir(cfg)
    frames = data.generate(data_dir / "train", list(data.TRAIN_SEEDS)[:args.train_scenes], cfg)
    train(cfg, args.variant, frames, args.iterations, args.out, args.points, tuple(args.snapshots))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``fovea train tpv``: TPVFormer on generated scenes (pretraining) or real PandaSet frames, on the shared
training runner (``fovea_core.training``: torchrun DDP, AMP on GPU, resume, TensorBoard, progress).

    fovea train tpv --data generated --minutes 30 --out runs/tpv/pretrain.pt             # generated, random rigs
    fovea train tpv --data pandaset --init runs/tpv/pretrain.pt --minutes 30            # fine-tune on frames 00-43
    fovea train tpv --data pandaset --no-images --augment none --out models/tpv/tpv_image_blind.pt
    python -m torch.distributed.run --nproc_per_node 2 -m fovea_core.tpv.train --config tiny --iterations 4 ...

Real training uses frames 00-43 of the PandaSet sequence (``real_data.TRAIN_FRAMES``; 44-45 are a gap, 46-55
validation). Lidar labels supervise points (Lovász-softmax + cross-entropy), the accumulated dense labels
supervise voxels (class-weighted cross-entropy); IGNORE labels count in neither. The checkpoint is a plain dict
(state dict + config JSON + variant + training summary) for ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fovea_core.training import ProgressLR, RunContext, TaskError, TrainTask, cosine_factor, train_main

from . import augment, data, real_data
from .config import CONFIGS, TPVConfig
from .frame import Frame
from .losses import class_weights, tpv_loss
from .model import TPVFormer, build_model

DEFAULT_OUT = Path("models/tpv/tpv_cpu.pt")


def training_points(frame: Frame, cfg: TPVConfig, count: int, rng: np.random.Generator, balance: float = 0.0):
    """Up to ``count`` labelled lidar points inside the volume, padded with label -1. ``balance`` > 0 draws a
    point of a class with n points in the frame with probability proportional to n^-balance (0: uniform; 0.5
    gives a class with 1/100 of the points 10x its share), so pedestrians and signs are seen every step."""
    keep = np.nonzero(data.points_in_volume(frame.points, cfg) & (frame.point_labels > 0))[0]
    weights = None
    if balance > 0 and len(keep):
        counts = np.bincount(frame.point_labels[keep], minlength=cfg.num_classes).astype(np.float64)
        weights = counts[frame.point_labels[keep]] ** -balance
        weights /= weights.sum()
    pick = rng.choice(keep, size=min(count, len(keep)), replace=False, p=weights) if len(keep) else keep
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


def load_matching_weights(model: TPVFormer, path: str | Path) -> tuple[int, list[str]]:
    """Initialise ``model`` from a checkpoint where names and shapes agree (pretrained -> fine-tuned model
    with an extra head or without a backbone). Returns (tensors loaded, names left at their initial values)."""
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    return len(matched), sorted(set(own) - set(matched))


# ---------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="cpu", choices=sorted(CONFIGS))
    parser.add_argument("--variant", default="tpv", choices=["tpv", "bev", "voxel"])
    parser.add_argument("--data", default="pandaset", choices=["pandaset", "generated"],
                        help="real PandaSet frames 00-43 or generated scenes")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="PandaSet sequence folder (default: shared/data/tpv/pandaset_002 beside the checkout)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="cache of generated scenes / preprocessed PandaSet frames (default data/tpv/...)")
    parser.add_argument("--train-frames", type=int, nargs="*", default=None,
                        help=f"PandaSet frames to train on (default {real_data.TRAIN_FRAMES[0]}-"
                             f"{real_data.TRAIN_FRAMES[-1]}; only training-split frames are accepted)")
    parser.add_argument("--train-scenes", type=int, default=len(data.TRAIN_SEEDS))
    parser.add_argument("--rig", choices=data.RIGS, default="random", help="rigs of the generated scenes")
    parser.add_argument("--init", type=Path, default=None, help="initial weights (e.g. the generated-scene model)")
    parser.add_argument("--no-images", action="store_true", help="the image-blind baseline (no backbone)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"), default=None)
    parser.add_argument("--backbone", default=None, choices=["tiny", "small", "resnet50", "resnet101"])
    parser.add_argument("--point-image-features", action="store_true")
    parser.add_argument("--aux-2d-weight", type=float, default=None)
    parser.add_argument("--augment", default=None, choices=["none", "symmetry", "shift"],
                        help="symmetry: quarter turns, mirror and shifts of the scene; shift: mirror and shifts "
                             "only (mostly along the drive); default: shift on PandaSet, none on generated")
    parser.add_argument("--shift-cells", type=int, nargs=2, default=None, metavar=("X", "Y"),
                        help="largest shift in cells (default 5 5 for symmetry, 10 2 for shift)")
    parser.add_argument("--augment-probability", type=float, default=1.0,
                        help="fraction of steps whose frame is moved (the rest show the street where it is)")
    parser.add_argument("--photometric", type=float, default=0.0, help="colour jitter strength (0 = off)")
    parser.add_argument("--drop-cameras", type=float, default=0.0, help="probability of dropping some cameras")
    parser.add_argument("--points", type=int, default=2048, help="lidar points per step for the point loss")
    parser.add_argument("--balance-points", type=float, default=0.0,
                        help="class-balanced point sampling exponent (0 uniform, 0.5 square-root balancing)")
    parser.add_argument("--lr", type=float, default=None)


def model_config(args: argparse.Namespace) -> TPVConfig:
    cfg = CONFIGS[args.config]()
    changes = {}
    if args.image_size:
        changes.update(image_width=args.image_size[0], image_height=args.image_size[1])
    if args.backbone:
        changes["backbone"] = args.backbone
    if args.no_images:
        changes["use_images"] = False
    if args.point_image_features:
        changes["point_image_features"] = True
    if args.aux_2d_weight is not None:
        changes["aux_2d_weight"] = args.aux_2d_weight
    if args.lr is not None:
        changes["lr"] = args.lr
    return replace(cfg, **changes)


def load_training_frames(args: argparse.Namespace, cfg: TPVConfig, ctx: RunContext) -> list[Frame]:
    with ctx.main_first():  # rank 0 renders / caches, the others read the cache
        if args.data == "generated":
            data_dir = args.data_dir or data.cache_dir(cfg, rig=args.rig)
            paths = data.generate(data_dir / "train", list(data.TRAIN_SEEDS)[:args.train_scenes], cfg,
                                  log=lambda *a, **k: ctx.log(" ".join(map(str, a))), rig=args.rig)
            return [Frame.load(p) for p in paths]
        frames = args.train_frames if args.train_frames else list(real_data.TRAIN_FRAMES)
        leaking = sorted(set(frames) - set(real_data.TRAIN_FRAMES))
        if leaking:
            raise TaskError(f"--train-frames {leaking}: not in the training split {real_data.TRAIN_FRAMES[0]}-"
                            f"{real_data.TRAIN_FRAMES[-1]} (validation frames and their neighbours stay out)")
        return real_data.load_frames(cfg, frames, args.data_root, cache_root=args.data_dir,
                                     log=lambda *a, **k: ctx.log(" ".join(map(str, a))))


def build_task(args: argparse.Namespace, ctx: RunContext) -> TrainTask:
    started = time.time()
    cfg = model_config(args)
    frames = load_training_frames(args, cfg, ctx)
    if not frames:
        raise TaskError("no training frames (check --data-root / --train-scenes)")
    mode = args.augment or ("shift" if args.data == "pandaset" else "none")
    symmetry = mode != "none"
    shift_cells = tuple(args.shift_cells or ((5, 5) if mode == "symmetry" else (10, 2)))
    if symmetry and not augment.grid_is_symmetric(cfg):
        raise TaskError(f"--augment {mode} needs a square grid centred on base_link (use --augment none)")
    labels = np.concatenate([f.voxel_labels.ravel() for f in frames])
    weights = class_weights(torch.from_numpy(np.bincount(labels[labels >= 0], minlength=cfg.num_classes)))
    model = build_model(cfg, args.variant)
    init_note = None
    if args.init:
        loaded, fresh = load_matching_weights(model, args.init)
        init_note = {"from": str(args.init), "tensors_loaded": loaded, "left_initial": fresh}
        ctx.log(f"[tpv] initialised {loaded} tensors from {args.init}; new: {fresh or 'none'}")
    ctx.log(f"[tpv] {len(frames)} {args.data} frames; augmentation {mode} (shifts up to {shift_cells} cells); "
            f"images {'off' if not cfg.use_images else f'{cfg.image_width}x{cfg.image_height}'}")

    def batches(rng: np.random.Generator):
        frame = frames[int(rng.integers(len(frames)))]
        if symmetry and rng.random() < args.augment_probability:
            frame = augment.grid_symmetry(frame, cfg, rng, shift_cells, rotate=mode == "symmetry")
        if args.drop_cameras:
            frame = augment.drop_cameras(frame, rng, probability=args.drop_cameras)
        if args.photometric:
            frame = augment.photometric(frame, rng, args.photometric)
        images, ego2img = data.model_inputs(frame, cfg)
        pts, lab = training_points(frame, cfg, args.points, rng, args.balance_points)
        return {"images": images, "ego2img": ego2img, "points": pts, "point_labels": lab,
                "voxel_labels": torch.from_numpy(frame.voxel_labels)[None]}

    def loss(model: TPVFormer, batch):
        aux = batch["points"] if cfg.aux_2d_weight > 0 and cfg.use_images else None
        voxel_logits, point_logits, aux_logits, visible = model.forward_train(
            batch["images"], batch["ego2img"], batch["points"], aux)
        total, parts = tpv_loss(voxel_logits, batch["voxel_labels"], point_logits, batch["point_labels"],
                                weights.to(voxel_logits.device), cfg.lovasz_weight)
        if aux_logits is not None:
            target = batch["point_labels"][:, None].expand(-1, visible.shape[1], -1)
            mask = visible & (target >= 0)
            aux_ce = F.cross_entropy(aux_logits[mask], target[mask]) if mask.any() else aux_logits.sum() * 0.0
            total = total + cfg.aux_2d_weight * aux_ce
            parts["aux_2d_ce"] = float(aux_ce.detach())
        return total, parts

    def save(trained: torch.nn.Module, out: Path, summary: dict) -> None:
        trained = trained.cpu().eval()
        info = {"data": args.data, "frames": len(frames), "iterations": summary["steps"],
                "seconds": summary["train_seconds"], "points_per_step": args.points,
                "balance_points": args.balance_points,
                "augment": {"grid_symmetry": symmetry, "mode": mode, "shift_cells": list(shift_cells),
                            "probability": args.augment_probability,
                            "photometric": args.photometric,
                            "drop_cameras": args.drop_cameras},
                "init": init_note, "final_loss": round(summary["recent_means"].get("loss", float("nan")), 4),
                "recent_means": {k: round(v, 4) for k, v in summary["recent_means"].items()},
                "total_seconds": round(time.time() - started, 1),
                **{k: summary[k] for k in ("machine", "torch", "threads", "world_size", "device", "precision")}}
        save_checkpoint(trained, Path(out), info)

    return TrainTask(
        model=model, loss=loss, batches=batches, save=save,
        optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
        schedule=lambda opt, budget: ProgressLR(opt, warmup_cosine(0.05)),
        clip_grad_norm=5.0,
        config={"model": cfg.to_dict(), "variant": args.variant, "data": args.data, "augment": mode,
                "shift_cells": list(shift_cells), "augment_probability": args.augment_probability,
                "photometric": args.photometric, "drop_cameras": args.drop_cameras, "points": args.points, "balance_points": args.balance_points,
                "init": str(args.init) if args.init else None})


def warmup_cosine(warmup: float, final: float = 0.02):
    """Linear warm-up over the first ``warmup`` of the budget, then cosine decay to ``final`` x lr."""
    cosine = cosine_factor(final)
    return lambda p: max(p / warmup, 0.02) if p < warmup else cosine((p - warmup) / (1 - warmup))


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, build_task, name="tpv", description="Train TPVFormer (generated scenes or PandaSet)",
                      out=str(DEFAULT_OUT), add_arguments=add_arguments, minutes=30.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Generated-scene dataset: render once, cache as ``Frame`` .npz files, turn frames into model inputs."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .config import CONFIGS, TPVConfig
from .frame import Frame
from .projection import ego_to_image, scale_intrinsics

DATA_ROOT = Path("data/tpv")
TRAIN_SEEDS = range(0, 200)
VAL_SEEDS = range(100_000, 100_040)  # held out: never seen in training
IMAGE_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGE_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


RIGS = ("random", "nuscenes")  # random: rigs.training_rig (nuScenes, PandaSet and random rigs); nuscenes: that one


def cache_dir(cfg: TPVConfig, root: Path = DATA_ROOT, rig: str = "random") -> Path:
    """Scenes are rendered for one image size, one voxel grid and one rig mode: each gets its own cache folder."""
    X, Y, Z = cfg.voxel_shape
    suffix = "" if rig == "nuscenes" else f"_{rig}_rigs"
    return Path(root) / f"{cfg.image_width}x{cfg.image_height}_{X}x{Y}x{Z}{suffix}"


def grid_of(cfg: TPVConfig):
    return cfg.x_range, cfg.y_range, cfg.z_range, cfg.voxel_shape


def frame_path(data_dir: Path, seed: int) -> Path:
    return Path(data_dir) / f"scene_{seed:06d}.npz"


def generate(data_dir: Path, seeds, cfg: TPVConfig, log=print, rig: str = "random") -> list[Path]:
    """Render every missing scene of ``seeds`` into ``data_dir`` (cached: existing files are reused)."""
    from . import render, rigs

    if rig not in RIGS:
        raise ValueError(f"rig {rig!r}: choose one of {RIGS}")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    size = (cfg.image_width, cfg.image_height)
    paths, start = [], time.time()
    for i, seed in enumerate(seeds):
        path = frame_path(data_dir, seed)
        if not path.exists():
            r = rigs.training_rig(seed, size) if rig == "random" else rigs.nuscenes_rig(size)
            render.make_frame(seed, r.names, r.intrinsics, r.cam2ego, size, grid_of(cfg)).save(path)
            log(f"scene {seed} ({i + 1}/{len(seeds)}, {r.kind} rig, {len(r)} cameras) {time.time() - start:.0f}s",
                flush=True)
        paths.append(path)
    return paths


def model_inputs(frame: Frame, cfg: TPVConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (1, N, 3, H, W) normalised float32, ego2img (1, N, 4, 4) float32) at the model's image size."""
    size = (cfg.image_width, cfg.image_height)
    images, K = frame.images, frame.intrinsics
    if frame.image_size != size:
        from PIL import Image
        sx, sy = size[0] / frame.image_size[0], size[1] / frame.image_size[1]
        images = np.stack([np.asarray(Image.fromarray(im).resize(size, Image.BILINEAR)) for im in images])
        K = np.stack([scale_intrinsics(k, sx, sy) for k in K])
    x = (images.astype(np.float32) / 255.0 - IMAGE_MEAN) / IMAGE_STD
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))[None]
    ego2img = torch.from_numpy(ego_to_image(K, frame.cam2ego).astype(np.float32))[None]
    return x, ego2img


def points_in_volume(points: np.ndarray, cfg: TPVConfig) -> np.ndarray:
    lo = np.array([cfg.x_range[0], cfg.y_range[0], cfg.z_range[0]])
    hi = np.array([cfg.x_range[1], cfg.y_range[1], cfg.z_range[1]])
    return np.all((points[:, :3] >= lo) & (points[:, :3] < hi), axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render and cache generated TPV training/validation scenes.")
    parser.add_argument("--config", default="cpu", choices=sorted(CONFIGS))
    parser.add_argument("--data-dir", type=Path, default=None, help="default: data/tpv/<image size>_<grid>")
    parser.add_argument("--train", type=int, default=len(TRAIN_SEEDS))
    parser.add_argument("--val", type=int, default=len(VAL_SEEDS))
    parser.add_argument("--rig", choices=RIGS, default="random")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"), default=None,
                        help="render at this size instead of the config's")
    args = parser.parse_args(argv)
    cfg = CONFIGS[args.config]()
    if args.image_size:
        from dataclasses import replace
        cfg = replace(cfg, image_width=args.image_size[0], image_height=args.image_size[1])
    data_dir = args.data_dir or cache_dir(cfg, rig=args.rig)
    generate(data_dir / "val", list(VAL_SEEDS)[:args.val], cfg, rig=args.rig)
    generate(data_dir / "train", list(TRAIN_SEEDS)[:args.train], cfg, rig=args.rig)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

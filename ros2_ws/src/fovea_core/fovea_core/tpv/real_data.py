"""PandaSet frames for training and evaluation: the temporal split, dense labels, and a cache of model-ready frames.

Sequence 002 is one 5.6 s drive down one street; the car moves 5 m in frames 00-45 and 4 m in 46-55. Training
frames come first, validation frames last, with a gap so that no validation frame or its neighbour is trained
on; dense labels of a frame accumulate all sweeps of its own split and no other (a validation sweep never
reaches training).
"""
from __future__ import annotations

import time
from pathlib import Path


from .config import TPVConfig
from .dense_labels import SplitAccumulator, dense_labels
from .frame import Frame
from .pandaset import PandaSetSequence

TRAIN_FRAMES = tuple(range(0, 44))   # 00-43
GAP_FRAMES = (44, 45)                # neighbours of the first validation frame: in no split
VAL_FRAMES = tuple(range(46, 56))    # 46-55
CACHE_ROOT = Path("data/tpv/pandaset")


def split_of(frame: int) -> tuple[int, ...]:
    for split in (TRAIN_FRAMES, VAL_FRAMES, GAP_FRAMES):
        if frame in split:
            return split
    raise KeyError(f"frame {frame} is in no split")


def cache_dir(cfg: TPVConfig, root: Path = CACHE_ROOT, sequence: str = "002") -> Path:
    X, Y, Z = cfg.voxel_shape
    grid = f"{cfg.x_range[0]:g}_{cfg.x_range[1]:g}_{cfg.y_range[0]:g}_{cfg.y_range[1]:g}_{cfg.z_range[0]:g}_{cfg.z_range[1]:g}"
    return Path(root) / sequence / f"{cfg.image_width}x{cfg.image_height}_{X}x{Y}x{Z}_{grid}"


def load_frames(cfg: TPVConfig, frames, data_root: str | Path | None = None, cache_root: Path | None = None,
                log=print) -> list[Frame]:
    """Model-ready PandaSet frames (images at the model size, dense labels on its grid), cached as .npz."""
    seq, accumulators = None, {}
    cache = cache_dir(cfg, Path(cache_root) if cache_root is not None else CACHE_ROOT)
    cache.mkdir(parents=True, exist_ok=True)
    grid = (cfg.x_range, cfg.y_range, cfg.z_range, cfg.voxel_shape)
    out, start = [], time.time()
    for i, f in enumerate(frames):
        path = cache / f"frame_{f:02d}.npz"
        if not path.exists():
            seq = seq or PandaSetSequence(data_root)
            frame = seq.load_frame(f, (cfg.image_width, cfg.image_height))
            split = split_of(f)
            if split not in accumulators:
                accumulators[split] = SplitAccumulator(seq, split)
            frame.voxel_labels = dense_labels(accumulators[split], f, grid, cfg.num_classes)
            frame.save(path)
            log(f"PandaSet frame {f:02d} cached ({i + 1}/{len(frames)}, {time.time() - start:.0f}s)", flush=True)
        out.append(Frame.load(path))
    return out

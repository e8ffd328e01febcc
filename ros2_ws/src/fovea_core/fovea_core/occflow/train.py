"""``fovea train occflow``: train ImplicitO (``--model implicit``) or the dense-grid baseline
(``--model dense``) on simulated scenes, on the shared runner (``fovea_core.training``: progress,
checkpoints / resume, TensorBoard, torchrun DDP, AMP on GPU).

Each step: one cached sample, its inputs masked at random as a robot meets them (older sweeps missing,
a dropped sweep, no tracker, no map, tracker only), ``queries_per_sample`` space-time queries (half near
agents, half of those on the agents' trails; ``data.sample_queries``), targets from the tracks of the
agents the lidar saw (``Sample.seen``). The model file is a plain dict (state dict, config JSON,
variant, training summary) for ``torch.load(..., weights_only=True)``.

    fovea train occflow --model implicit --minutes 25 --out models/occflow/implicito.pt
    fovea train occflow --model dense --minutes 20 --out models/occflow/dense_grid.pt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fovea_core.training import Budget, ProgressLR, RunContext, TrainTask, cosine_factor, train_main

from . import data
from .agents import occupancy_and_flow
from .config import CONFIGS, OccFlowConfig
from .grid import BevGrid
from .losses import dense_loss, implicit_loss
from .model import MODELS, dense_times
from .sample import Sample, model_inputs


def masked_inputs(sample: Sample, cfg: OccFlowConfig, rng: np.random.Generator) -> Sample:
    """The sample with inputs removed at random (the situations the node meets)."""
    keep = np.ones(cfg.sweeps, bool)
    u = rng.random()
    if u < 0.25:
        keep[:int(rng.integers(1, cfg.sweeps))] = False        # start-up: only the latest sweeps exist
    elif u < 0.35:
        keep[int(rng.integers(0, cfg.sweeps - 1))] = False      # one dropped sweep
    tracker = cfg.track_history and rng.random() < cfg.track_history_probability
    if tracker and rng.random() < 0.2:
        keep[:] = False                                          # tracker only, no lidar
    return sample.with_inputs(keep, tracker, rng.random() >= cfg.map_dropout)


def make_batch(sample: Sample, cfg: OccFlowConfig, variant: str, rng: np.random.Generator, count: int) -> dict:
    lidar, map_raster = model_inputs(masked_inputs(sample, cfg, rng), cfg)
    observed = sample.tracks.observed()
    times = dense_times(cfg) if variant == "dense" else None
    pts, frames = data.sample_queries(observed, cfg, count, rng, times)
    occ, flow, ok = occupancy_and_flow(observed, pts, frames, cfg.flow_dt, cfg.num_classes)
    t = observed.time_of(frames)
    batch = {"lidar": lidar, "map": map_raster,
             "queries": torch.from_numpy(np.concatenate([pts, t[:, None]], 1).astype(np.float32))[None],
             "occ": torch.from_numpy(occ.astype(np.float32))[None], "flow": torch.from_numpy(flow)[None],
             "flow_valid": torch.from_numpy(ok)[None]}
    if variant == "dense":
        row, col, _ = BevGrid.of(cfg).cell_index(pts)
        slice_of = {round(v, 6): i for i, v in enumerate(dense_times(cfg))}
        batch["slice"] = torch.tensor([[slice_of[round(float(v), 6)] for v in t]])
        batch["row"] = torch.from_numpy(np.clip(row, 0, cfg.ny - 1))[None]
        batch["col"] = torch.from_numpy(np.clip(col, 0, cfg.nx - 1))[None]
    return batch


def save_model(model: torch.nn.Module, path: Path, variant: str, info: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": model.cfg.to_json(), "variant": variant,
                "info": json.dumps(info, default=str)}, path)


def load_model(path: str | Path, parameter: str | None = None) -> tuple[torch.nn.Module, dict]:
    """A saved model (checked by ``fovea_core.model_files``: weights only, keys and shapes) in eval mode."""
    from fovea_core.model_files import check_state_dict, load_torch_file

    blob = load_torch_file(path, parameter, required_keys=("model", "config", "variant"))
    cfg = OccFlowConfig.from_dict(json.loads(blob["config"]))
    model = MODELS[blob["variant"]](cfg)
    check_state_dict(blob["model"], model, path, parameter)
    model.load_state_dict(blob["model"])
    model.eval()
    return model, json.loads(blob.get("info", "{}"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="cpu", choices=sorted(CONFIGS))
    parser.add_argument("--model", default="implicit", choices=sorted(MODELS))
    parser.add_argument("--data-dir", type=Path, default=None, help="default: data/occflow/<grid>")
    parser.add_argument("--train-scenes", type=int, default=len(data.TRAIN_SEEDS))
    parser.add_argument("--queries", type=int, default=None, help="queries per step (default: the config's)")


def build_task(args: argparse.Namespace, ctx: RunContext) -> TrainTask:
    cfg = CONFIGS[args.config]()
    root = args.data_dir or data.cache_dir(cfg)
    with ctx.main_first():
        train_paths = data.generate(root / "train", list(data.TRAIN_SEEDS)[:args.train_scenes], cfg, heldout=False,
                                    log=lambda *a, **k: ctx.log(" ".join(map(str, a))))
        heldout_paths = data.generate(root / "heldout", list(data.HELDOUT_SEEDS)[:2], cfg, heldout=True,
                                      log=lambda *a, **k: ctx.log(" ".join(map(str, a))))
    samples = [Sample.load(p).seen(cfg) for p in train_paths]
    ctx.log(f"{len(samples)} training samples from {root / 'train'}")
    heldout = [Sample.load(p).seen(cfg) for p in heldout_paths]
    model = MODELS[args.model](cfg)
    count = args.queries or cfg.queries_per_sample
    loss_fn = implicit_loss if args.model == "implicit" else dense_loss

    def batches(rng: np.random.Generator) -> dict:
        return make_batch(samples[int(rng.integers(len(samples)))], cfg, args.model, rng, count)

    val_rng = np.random.default_rng(12345)
    val_batches = [make_batch(s, cfg, args.model, val_rng, count) for s in heldout]

    def validate(m: torch.nn.Module) -> dict:
        parts = [loss_fn(m, b, cfg.flow_weight)[1] for b in val_batches]
        return {f"val_{k}": float(np.mean([float(p[k]) for p in parts])) for k in parts[0]}

    def save(m: torch.nn.Module, out: Path, summary: dict) -> None:
        save_model(m, out, args.model, {**summary, "train_samples": len(samples), "queries_per_step": count})

    return TrainTask(model=model, loss=lambda m, b: loss_fn(m, b, cfg.flow_weight), save=save, batches=batches,
                     optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
                     schedule=lambda opt, budget: ProgressLR(opt, cosine_factor(0.05)), clip_grad_norm=5.0,
                     validate=validate, validate_every=200,
                     config={"occflow": cfg.to_dict(), "model": args.model, "queries": count,
                             "train_scenes": args.train_scenes})


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, build_task, name="occflow", description=__doc__.split("\n")[0],
                      out="models/occflow/implicito.pt", add_arguments=add_arguments, minutes=25)


if __name__ == "__main__":
    raise SystemExit(main())

"""``fovea train anomaly``: the sync network, then the three AR models, on simulated normal event + frame
sequences, then thresholds calibrated on held-out normal sequences; both stages on the shared training runner.

    fovea train anomaly --minutes 6                 # both stages, each within the budget
    fovea train anomaly --stage sync --minutes 4    # only the sync network (runs/anomaly/sync_net.pt)
    fovea train anomaly --stage ar --minutes 6      # AR models on top of a trained sync network
    fovea train anomaly --stage calibrate           # recalibrate models/anomaly/anomaly.pt (no training)

Stage ``sync``: self-supervised, AVAD's sync objective (cross-entropy of the true offset among 2D + 1 shifted
ones) on single frame steps. Stage ``ar``: the causal transformers on 50-step windows of the per-step
distributions (classical, learned - from the frozen sync network - and events-only activity), next-step KL;
at the end the model is calibrated (:mod:`.calibration`: references, thresholds, the training steps' entropy)
on the calibration sequences and the model file is written. Stage ``calibrate`` only redoes that last part on
an existing model file (``--out``), e.g. after the features or scores changed.
:func:`fit_on_features` is the same recipe on features of a user's own recording (``fovea fit anomaly``).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from fovea_core.events.anomaly.ar_model import ar_loss
from fovea_core.events.anomaly.bundle import (AnomalyMeta, AnomalyModels, build_models, export_onnx_models,
                                              load_models, save_models)
from fovea_core.events.anomaly.calibration import calibrate, record_normal_entropy
from fovea_core.events.anomaly.data import (CALIBRATION_SEEDS, DEFAULT_CACHE, TRAIN_SEEDS, SequenceFeatures,
                                            cached_features, frame_distributions, simulated_streams)
from fovea_core.events.anomaly.scoring import kl_sequence
from fovea_core.events.anomaly.sync_net import SyncNet, contrastive_loss
from fovea_core.threads import set_process_threads
from fovea_core.training import Budget, ProgressLR, RunContext, TrainTask, cosine_factor, train_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", choices=("all", "sync", "ar", "calibrate"), default="all")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="simulated sequences are cached here (outside the repository)")
    parser.add_argument("--train-sequences", type=int, default=16)
    parser.add_argument("--calibration-sequences", type=int, default=5)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per simulated sequence")
    parser.add_argument("--sync-out", type=Path, default=Path("runs/anomaly/sync_net.pt"),
                        help="the sync network of stage sync, read by stage ar")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--false-alarm-rate", type=float, default=0.002,
                        help="share of normal calibration steps above the threshold")


def simulated_features(meta: AnomalyMeta, seeds, args) -> list[SequenceFeatures]:
    cfg, act = meta.feature_config(), meta.activity_config()
    out = []
    seeds = list(seeds)
    for i, seed in enumerate(seeds):
        out.append(cached_features(f"sim_{seed}_{args.duration:g}s", lambda s=seed: simulated_streams(
            s, args.duration, args.cache_dir), cfg, meta.sync_net["pool"], act, meta.events_step_ns,
            args.cache_dir.parent / "features"))
        print(f"[anomaly] features {i + 1}/{len(seeds)}", file=sys.stderr, flush=True)
    return out


# ---- stage 1: the sync network -----------------------------------------------------------------------------
def sync_task(meta: AnomalyMeta, train: list[SequenceFeatures], held_out: list[SequenceFeatures], batch: int,
              lr: float, save) -> TrainTask:
    cfg = meta.feature_config()
    net = SyncNet(cfg.grid, meta.sync_net["pool"], meta.sync_net["hidden"])
    counts = np.concatenate([f.pooled_counts for f in train])
    change = np.concatenate([f.pooled_change for f in train])
    val_counts = torch.from_numpy(np.concatenate([f.pooled_counts for f in held_out])[:512])
    val_change = torch.from_numpy(np.concatenate([f.pooled_change for f in held_out])[:512])

    def batches(rng: np.random.Generator):
        idx = rng.integers(0, len(counts), batch)
        return torch.from_numpy(counts[idx]), torch.from_numpy(change[idx])

    def loss(model, b):
        return contrastive_loss(model, b[0], b[1], cfg.max_offset_bins)

    def validate(model) -> dict:
        value, scalars = contrastive_loss(model, val_counts, val_change, cfg.max_offset_bins)
        return {"loss": float(value), "within_one_bin": float(scalars["within_one_bin"])}

    return TrainTask(model=net, loss=loss, batches=batches, save=save, validate=validate, validate_every=200,
                     optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=1e-4),
                     schedule=lambda opt, budget: ProgressLR(opt, cosine_factor(0.05)), clip_grad_norm=1.0,
                     config={"stage": "sync", "meta": asdict(meta), "batch": batch, "lr": lr,
                             "train_steps": int(len(counts))})


# ---- stage 2: the AR models --------------------------------------------------------------------------------
def distribution_sets(models: AnomalyModels, feats: list[SequenceFeatures]) -> dict[str, list[np.ndarray]]:
    """The sequences the AR models learn: each extractor's distributions (step windows) and the activity."""
    return {"classical": [frame_distributions(models, f, "classical")[0] for f in feats],
            "learned": [frame_distributions(models, f, "learned")[0] for f in feats],
            "events": [f.activity for f in feats]}


def ar_task(models: AnomalyModels, train: dict[str, list[np.ndarray]], held_out: dict[str, list[np.ndarray]],
            batch: int, lr: float, save, config: dict) -> TrainTask:
    context = models.meta.ar["context"]
    module = torch.nn.ModuleDict(models.ar)
    for name, seqs in train.items():
        if not any(len(s) > 2 for s in seqs):
            raise ValueError(f"no training sequence for the '{name}' AR model has more than 2 steps")

    def window(rng, seqs):
        usable = [s for s in seqs if len(s) > 2]
        s = usable[rng.integers(0, len(usable))]
        length = min(context, len(s))
        start = rng.integers(0, len(s) - length + 1)
        return s[start:start + length]

    def batches(rng: np.random.Generator):
        out = {}
        for name, seqs in train.items():
            # windows of one batch share a length: the shortest drawn (short recordings give short windows)
            drawn = [window(rng, seqs) for _ in range(batch)]
            n = min(len(d) for d in drawn)
            out[name] = torch.from_numpy(np.stack([d[:n] for d in drawn]).astype(np.float32))
        return out

    def loss(model, b):
        total, scalars = 0.0, {}
        for name, dists in b.items():
            value, s = ar_loss(model[name], dists)
            total = total + value
            scalars[f"kl_{name}"] = s["kl"]
        return total, scalars

    def validate(model) -> dict:
        return {f"kl_{name}": float(np.nanmean(np.concatenate([kl_sequence(model[name], s) for s in seqs])))
                for name, seqs in held_out.items() if seqs}

    return TrainTask(model=module, loss=loss, batches=batches, save=save, validate=validate, validate_every=200,
                     optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=1e-4),
                     schedule=lambda opt, budget: ProgressLR(opt, cosine_factor(0.05)), clip_grad_norm=1.0,
                     config=config)


def calibration_source(args, calib_seeds) -> str:
    return (f"{args.calibration_sequences} simulated normal sequences of {args.duration:g} s "
            f"(seeds {calib_seeds.start}-{calib_seeds.start + args.calibration_sequences - 1})")


def recalibrate(args, train_seeds, calib_seeds) -> int:
    """Stage calibrate: the model file's calibration redone on the calibration sequences (weights unchanged),
    its ONNX models exported again."""
    from fovea_core.paths import resolve_data_path

    out = resolve_data_path(args.out)
    models = load_models(out, "--out")
    meta = models.meta
    record_normal_entropy(models, simulated_features(meta, train_seeds, args))
    calibrate(models, simulated_features(meta, calib_seeds, args), args.false_alarm_rate,
              calibration_source(args, calib_seeds))
    save_models(models, out)
    checks = export_onnx_models(models, out.parent / "onnx")
    print(f"[anomaly] recalibrated {out}: thresholds {meta.thresholds}; ONNX max |ORT - torch| {checks}",
          file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    add_arguments(pre)
    known, _ = pre.parse_known_args(argv)
    meta = AnomalyMeta()
    ctx_args = known
    train_seeds = TRAIN_SEEDS[:ctx_args.train_sequences]
    calib_seeds = CALIBRATION_SEEDS[:ctx_args.calibration_sequences]

    if known.stage == "calibrate":  # no training run: only the model file and the thread count matter
        pre.add_argument("--out", type=Path, default=Path("models/anomaly/anomaly.pt"))
        pre.add_argument("--threads", type=int, default=1)
        known, _ = pre.parse_known_args(argv)
        set_process_threads(known.threads)
        return recalibrate(known, train_seeds, calib_seeds)

    if known.stage in ("all", "sync"):
        def build_sync(args, ctx: RunContext) -> TrainTask:
            with ctx.main_first():
                train, held = simulated_features(meta, train_seeds, args), simulated_features(meta, calib_seeds, args)

            def save(model, out: Path, summary: dict) -> None:
                out.parent.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), out)
            return sync_task(meta, train, held, args.batch, args.lr, save)

        sync_argv = argv + ["--out", str(known.sync_out), "--run-dir", str(known.sync_out.parent / "sync")]
        rc = train_main(sync_argv, build_sync, name="anomaly", description="anomaly stage sync: the sync network",
                        out=str(known.sync_out), add_arguments=add_arguments, minutes=4)
        if rc != 0:
            return rc

    if known.stage in ("all", "ar"):
        def build_ar(args, ctx: RunContext) -> TrainTask:
            from fovea_core.model_files import load_torch_file

            models = build_models(meta)
            models.sync_net.load_state_dict(load_torch_file(args.sync_out, "--sync-out"))
            with ctx.main_first():
                train = distribution_sets(models, simulated_features(meta, train_seeds, args))
                held_feats = simulated_features(meta, calib_seeds, args)
            held = distribution_sets(models, held_feats)

            def save(module, out: Path, summary: dict) -> None:
                record_normal_entropy(models, simulated_features(meta, train_seeds, args))
                calibrate(models, held_feats, args.false_alarm_rate, calibration_source(args, calib_seeds))
                models.meta.training = {"data": f"{len(train_seeds)} simulated sequences of {args.duration:g} s "
                                                f"(seeds {train_seeds.start}-{train_seeds.stop - 1})",
                                        "summary": summary}
                save_models(models, out)
                checks = export_onnx_models(models, out.parent / "onnx")
                print(f"[anomaly] thresholds {models.meta.thresholds} -> {out}; ONNX max |ORT - torch| {checks}",
                      file=sys.stderr, flush=True)
            config = {"stage": "ar", "meta": asdict(meta), "batch": args.batch, "lr": args.lr}
            return ar_task(models, train, held, args.batch, args.lr, save, config)

        return train_main(argv, build_ar, name="anomaly", description="anomaly stage ar: the AR models",
                          out="models/anomaly/anomaly.pt", add_arguments=add_arguments, minutes=6)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

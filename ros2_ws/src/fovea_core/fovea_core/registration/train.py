"""``fovea train registration``: the VBReg network on procedural + real-sweep correspondence sets, on the
shared training runner (``fovea_core.training``: torchrun DDP, AMP, resume, TensorBoard, progress).

    python -m fovea_core.registration.train --minutes 12          (or: fovea train registration)
    python -m torch.distributed.run --nproc_per_node 2 -m fovea_core.registration.train --minutes 12

Stages: generate labelled FPFH correspondence sets (cached to --cache; rank 0 first under torchrun), train on
fixed-size subsets with outlier ratios drawn from [--min-outlier, --max-outlier] (each rank draws its own)
until the budget ends, validate with the deterministic prior path, save the state dict + config + ONNX + a
training summary JSON. The network's number of iterations L is ``--network-iterations`` (``--iterations`` is
the runner's step budget).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fovea_core.training import ProgressLR, RunContext, TaskError, TrainTask, cosine_factor, train_main

from .data import CorrespondenceSample, draw_training_set, generate_samples
from .model_io import DEFAULT_ITERATIONS, DEFAULT_MODEL_DIR, ONNX_NAME, load_network, normalize_correspondences, save_network
from .network import VBRegConfig, VBRegNetwork, elbo_terms


def save_samples(samples: list[CorrespondenceSample], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        **{f"{i}_{key}": value for i, s in enumerate(samples) for key, value in (
            ("corr", s.correspondences), ("labels", s.labels), ("tau", np.array(s.inlier_threshold)),
            ("transform", s.transform), ("family", np.array(s.family)))},
        count=np.array(len(samples)),
    )


def load_samples(path: Path) -> list[CorrespondenceSample]:
    data = np.load(path)
    return [CorrespondenceSample(data[f"{i}_corr"], data[f"{i}_labels"], float(data[f"{i}_tau"]),
                                 data[f"{i}_transform"], str(data[f"{i}_family"])) for i in range(int(data["count"]))]


def make_batch(samples, size, outlier_range, rng):
    corr, labels = [], []
    for sample in samples:
        c, l = draw_training_set(sample, size, rng.uniform(*outlier_range), rng)
        corr.append(normalize_correspondences(c, sample.inlier_threshold))
        labels.append(l)
    return torch.from_numpy(np.stack(corr)), torch.from_numpy(np.stack(labels).astype(np.float32))


@torch.no_grad()
def validate(network, samples, size, rng) -> dict[str, float]:
    """Prior-path (test-time) inlier classification on held-out sets at a 90 % outlier ratio."""
    network.eval()
    device = next(network.parameters()).device
    tp = fp = fn = 0.0
    for sample in samples:
        inputs, labels = make_batch([sample], size, (0.9, 0.9), rng)
        logits, _ = network(inputs.to(device))
        labels = labels.to(device)
        predicted = logits[:, -1] > 0
        truth = labels > 0.5
        tp += float((predicted & truth).sum()); fp += float((predicted & ~truth).sum()); fn += float((~predicted & truth).sum())
    network.train()
    precision = tp / max(tp + fp, 1.0)
    recall = tp / max(tp + fn, 1.0)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / max(precision + recall, 1e-9)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default="/tmp/fovea_registration_samples.npz")
    parser.add_argument("--pairs-per-family", type=int, default=80)
    parser.add_argument("--correspondences", type=int, default=256, help="set size per training example")
    parser.add_argument("--batch", type=int, default=2, help="sets per step (per rank under torchrun)")
    parser.add_argument("--min-outlier", type=float, default=0.5)
    parser.add_argument("--max-outlier", type=float, default=0.97)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl-weight", type=float, default=1.0)
    parser.add_argument("--prior-path-weight", type=float, default=1.0)
    parser.add_argument("--network-iterations", type=int, default=12, help="L, the network's iterations")
    parser.add_argument("--feature-dim", type=int, default=128)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument("--validate-every", type=int, default=200, help="steps between validations")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--init-from", default=None, help="model folder to continue training from (its config wins)")


def prepare_samples(args: argparse.Namespace, ctx: RunContext) -> list[CorrespondenceSample]:
    cache = Path(args.cache)
    started = time.time()
    if cache.exists():
        samples = load_samples(cache)
        ctx.log(f"[data] loaded {len(samples)} correspondence sets from {cache}")
        return samples

    def progress(done, total, so_far):
        if done % 10 == 0 or done == total:
            ctx.log(f"[data] {done}/{total} scene rounds, {len(so_far)} sets, {time.time() - started:.0f}s")
    samples = generate_samples(args.pairs_per_family, seed=args.seed + 1000, progress=progress)
    save_samples(samples, cache)
    return samples


def build_task(args: argparse.Namespace, ctx: RunContext) -> TrainTask:
    started = time.time()
    with ctx.main_first():  # rank 0 generates and caches the sets; the others then load the cache
        samples = prepare_samples(args, ctx)
    samples = [s for s in samples if s.labels.sum() >= 3]
    data_seconds = time.time() - started
    families = {f: sum(s.family == f for s in samples) for f in sorted({s.family for s in samples})}
    natural_inlier_ratio = {f: float(np.mean([s.labels.mean() for s in samples if s.family == f])) for f in families}
    ctx.log(f"[data] {len(samples)} usable sets {families}; natural FPFH inlier ratio {natural_inlier_ratio}")
    # the same split on every rank (its own generator, not the rank's)
    order = np.random.default_rng(args.seed).permutation(len(samples))
    validation = [samples[i] for i in order[: max(6, len(samples) // 10)]]
    training = [samples[i] for i in order[max(6, len(samples) // 10):]]
    if not training:
        raise TaskError(f"only {len(samples)} usable correspondence sets, all needed for validation (6 at least): "
                        "raise --pairs-per-family")

    if args.init_from:
        network = load_network(args.init_from).train()
        config = network.config
        ctx.log(f"[model] continuing from {args.init_from} ({config.to_dict()})")
    else:
        config = VBRegConfig(args.network_iterations, args.feature_dim, args.hidden_dim, args.latent_dim)
        network = VBRegNetwork(config)

    def batches(rng: np.random.Generator):
        chosen = [training[i] for i in rng.integers(len(training), size=args.batch)]
        return make_batch(chosen, args.correspondences, (args.min_outlier, args.max_outlier), rng)

    def loss(model: VBRegNetwork, batch):
        terms = elbo_terms(model, batch[0], batch[1], args.kl_weight, args.prior_path_weight)
        return terms.loss, {"loglik_q": terms.log_likelihood.detach(), "kl": terms.kl.detach(),
                            "loglik_prior": terms.prior_log_likelihood.detach()}

    def save(trained: torch.nn.Module, out: Path, summary: dict) -> None:
        trained = trained.cpu()
        save_network(trained, out)
        onnx_diff = None
        if not args.no_export:
            from .export import export_network
            onnx_diff = export_network(trained, out / ONNX_NAME, weights_fp16=True,
                                       iterations=min(DEFAULT_ITERATIONS, trained.config.num_iterations))
            ctx.log(f"[export] {out / ONNX_NAME}: max abs diff {onnx_diff}")
        recent = summary["recent_means"]
        record = {
            "config": config.to_dict(), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "steps": summary["steps"], "train_seconds": summary["train_seconds"],
            "data_seconds": round(data_seconds, 1), "total_seconds": round(time.time() - started, 1),
            "sets": families, "natural_inlier_ratio": natural_inlier_ratio,
            "validation_at_90pct_outliers": summary["validation"],
            "final_loss_terms_mean_last100": {k: round(recent[k], 4) for k in ("loss", "loglik_q", "kl", "loglik_prior")
                                              if k in recent},
            "onnx_max_abs_diff": onnx_diff,
            **{k: summary[k] for k in ("machine", "torch", "threads", "world_size", "device", "precision")},
        }
        (out / "training_summary.json").write_text(json.dumps(record, indent=2) + "\n")

    return TrainTask(
        model=network, loss=loss, batches=batches, save=save,
        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=args.lr),
        schedule=lambda opt, budget: ProgressLR(opt, cosine_factor(0.1)),  # cosine to lr/10 over the budget
        clip_grad_norm=1.0,
        validate=lambda m: validate(m, validation, args.correspondences, np.random.default_rng(1)),
        validate_every=args.validate_every,
        config={"network": config.to_dict(), "correspondences": args.correspondences, "batch": args.batch,
                "outlier_range": [args.min_outlier, args.max_outlier], "lr": args.lr, "kl_weight": args.kl_weight,
                "prior_path_weight": args.prior_path_weight, "pairs_per_family": args.pairs_per_family})


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, build_task, name="registration", description="Train the VBReg correspondence network",
                      out=str(DEFAULT_MODEL_DIR), add_arguments=add_arguments, minutes=10.0)


if __name__ == "__main__":
    raise SystemExit(main())

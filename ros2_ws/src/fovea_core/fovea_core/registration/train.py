"""Train the VBReg network on procedural + real-sweep correspondence sets (CPU, single thread).

    python -m fovea_core.registration.train --minutes 12          (or: fovea train registration)

Stages: generate labelled FPFH correspondence sets (cached to --cache), train on fixed-size subsets with
outlier ratios drawn from [--min-outlier, --max-outlier] for a wall-clock budget, validate with the
deterministic prior path, save the state dict + config + ONNX + a training summary JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from .data import CorrespondenceSample, draw_training_set, generate_samples
from .model_io import DEFAULT_MODEL_DIR, ONNX_NAME, load_network, normalize_correspondences, save_network
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
    tp = fp = fn = 0.0
    for sample in samples:
        inputs, labels = make_batch([sample], size, (0.9, 0.9), rng)
        logits, _ = network(inputs)
        predicted = logits[:, -1] > 0
        truth = labels > 0.5
        tp += float((predicted & truth).sum()); fp += float((predicted & ~truth).sum()); fn += float((~predicted & truth).sum())
    network.train()
    precision = tp / max(tp + fp, 1.0)
    recall = tp / max(tp + fn, 1.0)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / max(precision + recall, 1e-9)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the VBReg correspondence network")
    parser.add_argument("--out", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--cache", default="/tmp/fovea_registration_samples.npz")
    parser.add_argument("--pairs-per-family", type=int, default=80)
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget")
    parser.add_argument("--correspondences", type=int, default=256, help="set size per training example")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--min-outlier", type=float, default=0.5)
    parser.add_argument("--max-outlier", type=float, default=0.97)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl-weight", type=float, default=1.0)
    parser.add_argument("--prior-path-weight", type=float, default=1.0)
    parser.add_argument("--iterations", type=int, default=12, help="L")
    parser.add_argument("--feature-dim", type=int, default=128)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--init-from", default=None, help="model folder to continue training from (its config wins)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    started = time.time()

    cache = Path(args.cache)
    if cache.exists():
        samples = load_samples(cache)
        print(f"[data] loaded {len(samples)} correspondence sets from {cache}", flush=True)
    else:
        def progress(done, total, so_far):
            if done % 10 == 0 or done == total:
                print(f"[data] {done}/{total} scene rounds, {len(so_far)} sets, "
                      f"{time.time() - started:.0f}s", flush=True)
        samples = generate_samples(args.pairs_per_family, seed=args.seed + 1000, progress=progress)
        save_samples(samples, cache)
    samples = [s for s in samples if s.labels.sum() >= 3]
    data_seconds = time.time() - started
    families = {f: sum(s.family == f for s in samples) for f in sorted({s.family for s in samples})}
    natural_inlier_ratio = {f: float(np.mean([s.labels.mean() for s in samples if s.family == f])) for f in families}
    print(f"[data] {len(samples)} usable sets {families}; natural FPFH inlier ratio {natural_inlier_ratio}", flush=True)
    order = rng.permutation(len(samples))
    validation = [samples[i] for i in order[: max(6, len(samples) // 10)]]
    training = [samples[i] for i in order[max(6, len(samples) // 10):]]

    if args.init_from:
        network = load_network(args.init_from).train()
        config = network.config
        print(f"[model] continuing from {args.init_from} ({config.to_dict()})", flush=True)
    else:
        config = VBRegConfig(args.iterations, args.feature_dim, args.hidden_dim, args.latent_dim)
        network = VBRegNetwork(config)
    optimiser = torch.optim.Adam(network.parameters(), lr=args.lr)
    budget = args.minutes * 60.0
    train_start = time.time()
    step, history = 0, []
    while time.time() - train_start < budget:
        fraction = (time.time() - train_start) / budget
        for group in optimiser.param_groups:  # cosine decay over the wall-clock budget
            group["lr"] = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * fraction)))
        batch = [training[i] for i in rng.integers(len(training), size=args.batch)]
        inputs, labels = make_batch(batch, args.correspondences, (args.min_outlier, args.max_outlier), rng)
        terms = elbo_terms(network, inputs, labels, args.kl_weight, args.prior_path_weight)
        optimiser.zero_grad()
        terms.loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimiser.step()
        step += 1
        history.append([float(t.detach()) for t in (terms.loss, terms.log_likelihood, terms.kl, terms.prior_log_likelihood)])
        if step % 25 == 0:
            recent = np.mean(history[-25:], axis=0)
            print(f"[train] step {step} {time.time() - train_start:.0f}/{budget:.0f}s loss {recent[0]:.3f} "
                  f"loglik(q) {recent[1]:.3f} KL {recent[2]:.3f} loglik(prior) {recent[3]:.3f}", flush=True)
        if step % 200 == 0:
            print(f"[val] step {step} {validate(network, validation, args.correspondences, np.random.default_rng(1))}", flush=True)
    train_seconds = time.time() - train_start
    metrics = validate(network, validation, args.correspondences, np.random.default_rng(1))
    print(f"[val] final {metrics}", flush=True)

    out = Path(args.out)
    save_network(network, out)
    onnx_diff = None
    if not args.no_export:
        from .export import export_network
        onnx_diff = export_network(network, out / ONNX_NAME)
        print(f"[export] {out / ONNX_NAME}: max abs diff {onnx_diff}", flush=True)
    summary = {
        "config": config.to_dict(), "args": vars(args), "steps": step, "train_seconds": round(train_seconds, 1),
        "data_seconds": round(data_seconds, 1), "total_seconds": round(time.time() - started, 1),
        "sets": families, "natural_inlier_ratio": natural_inlier_ratio, "validation_at_90pct_outliers": metrics,
        "final_loss_terms_mean_last100": dict(zip(["loss", "loglik_q", "kl", "loglik_prior"],
                                                  np.mean(history[-100:], axis=0).round(4).tolist())),
        "onnx_max_abs_diff": onnx_diff, "machine": platform.platform(), "torch": torch.__version__,
        "threads": args.threads,
    }
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[done] {step} steps in {train_seconds:.0f}s; saved to {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Evaluate trained HMNet variants on held-out simulated sequences (``fovea eval hmnet``).

    python -m fovea_core.events.hmnet.evaluate --models models/hmnet/hmnet.pt models/hmnet/baseline.pt

Each model runs through the streaming API (only due levels run), one sequence at a time from zero memories.
Metrics follow the paper's definitions: mIoU from one confusion matrix over the whole split; depth AbsRel /
RMSE / RMSElog over pixels with ground truth within each range cut-off. The first ``--warmup`` windows of every
sequence are not scored (the memories start empty). Latency per step is the model time of one 5 ms step
(tokens prepared beforehand, i.e. data loading excluded), single thread, after the warm-up windows.
Prints a table, writes JSON and PNG plots.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fovea_core.events.hmnet.data import DEFAULT_CACHE, build_split
from fovea_core.events.hmnet.metrics import DepthErrors, SegmentationConfusion
from fovea_core.events.hmnet.model import count_parameters
from fovea_core.events.hmnet.streaming import StreamingHMNet
from fovea_core.events.hmnet.train import load_model
from fovea_core.events.simulator.scene import CLASS_NAMES


def evaluate_model(model, sequences, warmup: int, cutoffs) -> dict:
    conf = SegmentationConfusion(model.cfg.num_classes)
    depth = DepthErrors(cutoffs, model.cfg.min_depth_m)
    latencies = []
    for seq in sequences:
        stream = StreamingHMNet.from_torch(model)
        for s in range(len(seq.tokens)):
            pred = stream.feed_tokens(seq.tokens[s])
            if s >= warmup:
                conf.add(pred.labels, seq.labels[s])
                depth.add(pred.depth, seq.depth[s])
                latencies.append(pred.latency_s)
    lat = np.array(latencies) * 1e3
    return {"miou": conf.miou(), "iou_per_class": dict(zip(CLASS_NAMES, [float(v) for v in conf.iou()])),
            "pixel_accuracy": conf.pixel_accuracy(), "depth": depth.result(),
            "latency_ms": {"mean": float(lat.mean()), "p50": float(np.percentile(lat, 50)),
                           "p99": float(np.percentile(lat, 99)), "steps": int(len(lat))},
            "parameters": count_parameters(model), "rates": list(model.cfg.rates)}


def plot_summary(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    axes[0].bar(names, [results[n]["miou"] for n in names], color="tab:blue")
    axes[0].set_title("mIoU (held-out, higher is better)")
    cut = next(iter(results[names[0]]["depth"]))
    axes[1].bar(names, [results[n]["depth"][cut]["abs_rel"] for n in names], color="tab:orange")
    axes[1].set_title(f"depth AbsRel <= {cut} (lower is better)")
    axes[2].bar(names, [results[n]["latency_ms"]["mean"] for n in names], color="tab:green")
    axes[2].set_title("latency per 5 ms step [ms], CPU 1 thread")
    for ax in axes:
        ax.tick_params(axis="x", rotation=15)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def label_colours(labels: np.ndarray) -> np.ndarray:
    palette = np.array([[40, 40, 40], [230, 80, 60], [60, 160, 230], [240, 200, 50]] + [[200, 200, 200]] * 60,
                       dtype=np.uint8)
    return palette[labels]


def plot_examples(model, seq, steps, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fovea_core.events.representations import event_histogram

    stream = StreamingHMNet.from_torch(model)
    preds = [stream.feed_tokens(seq.tokens[s]) for s in range(max(steps) + 1)]
    raw = seq.sequence
    fig, axes = plt.subplots(len(steps), 5, figsize=(13, 2.6 * len(steps)))
    for row, s in zip(np.atleast_2d(axes), steps):
        end = int(raw.window_end_ns[s])
        h = event_histogram(raw.events, raw.width, raw.height, 1, end - raw.window_ns, end)[0]
        ev_img = np.stack([h[1] > 0, np.zeros_like(h[0], bool), h[0] > 0], -1).astype(np.float32)
        panels = [(raw.frames[s], "frame (not used)", "gray"), (ev_img, "events, 5 ms", None),
                  (label_colours(seq.labels[s]), "labels (truth)", None),
                  (label_colours(preds[s].labels), f"HMNet labels, step {s}", None),
                  (preds[s].depth, "HMNet depth [m]", "viridis")]
        for ax, (img, title, cmap) in zip(row, panels):
            ax.imshow(img, cmap=cmap)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fovea eval hmnet", description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", type=Path,
                    default=[Path("models/hmnet/hmnet.pt"), Path("models/hmnet/baseline.pt")])
    ap.add_argument("--test-sequences", type=int, default=8)
    ap.add_argument("--windows", type=int, default=180)
    ap.add_argument("--warmup", type=int, default=18, help="windows per sequence not scored (90 ms)")
    ap.add_argument("--cutoffs", nargs="+", type=float, default=[5.0, 10.0, 20.0])
    ap.add_argument("--out-dir", type=Path, default=Path("models/hmnet/eval"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    loaded = {}
    for path in args.models:
        model, meta = load_model(path)
        loaded[f"{meta['variant']} ({path.stem})"] = (model, meta)
    cfg0 = next(iter(loaded.values()))[0].cfg
    t0 = time.monotonic()
    test = build_split("test", args.test_sequences, args.windows, cfg0, args.cache_dir)
    print(f"[eval] {len(test)} held-out sequences x {args.windows} windows ({time.monotonic() - t0:.1f}s)")
    results = {name: {**evaluate_model(model, test, args.warmup, args.cutoffs), "train": meta}
               for name, (model, meta) in loaded.items()}

    cut = f"{args.cutoffs[1]:g}m" if len(args.cutoffs) > 1 else f"{args.cutoffs[0]:g}m"
    header = f"{'model':28s} {'mIoU':>6s} {'pixAcc':>6s} {'AbsRel@' + cut:>12s} {'RMSE@' + cut:>10s} " \
             f"{'RMSElog@' + cut:>12s} {'ms/step':>8s} {'p99':>6s} {'params':>8s}"
    print(header)
    for name, r in results.items():
        d = r["depth"][cut]
        print(f"{name:28s} {r['miou']:6.3f} {r['pixel_accuracy']:6.3f} {d['abs_rel']:12.3f} {d['rmse']:10.3f} "
              f"{d['rmse_log']:12.3f} {r['latency_ms']['mean']:8.2f} {r['latency_ms']['p99']:6.2f} {r['parameters']:8d}")
    names = list(results)
    if len(names) >= 2:
        a, b = results[names[0]], results[names[1]]
        ratio = a["latency_ms"]["mean"] / b["latency_ms"]["mean"]
        print(f"[eval] latency ratio {names[0]} / {names[1]} = {ratio:.3f}; mIoU {a['miou']:.3f} vs {b['miou']:.3f}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = {"data": {"split": "test (simulated, seeds 900000+)", "sequences": len(test), "windows": args.windows,
                       "warmup_windows": args.warmup, "size": [cfg0.width, cfg0.height]},
              "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads},
              "results": results}
    (args.out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    plot_summary(results, args.out_dir / "summary.png")
    first_model = next(iter(loaded.values()))[0]
    n = args.windows
    plot_examples(first_model, test[0], sorted({min(n - 1, k) for k in (n // 9, n // 3, 2 * n // 3, n - 1)}),
                  args.out_dir / "examples.png")
    print(f"[eval] wrote {args.out_dir}/eval.json, summary.png, examples.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

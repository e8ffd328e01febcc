"""Latency per 5 ms step: HMNet (levels at 1/3/9 steps) vs the single-rate baseline (every level every step),
each on PyTorch and on ONNX Runtime (the exported step graphs), measured in one run on the same windows.

    python bench/hmnet.py [--hmnet models/hmnet/hmnet.pt] [--baseline models/hmnet/baseline.pt]

Per-step latency as in the paper: after warm-up, tokens prepared beforehand (data loading excluded), batch 1;
also end to end from the decoded event array of the window (tokenising included). Accuracy (mIoU, depth AbsRel)
of both trained models on held-out simulated sequences is measured in the same run, so the ratio is read
together with the accuracy it costs. Writes <--out>/hmnet.json (default bench/results/); the last printed line
is the headline.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fovea_core.events.hmnet.data import build_split
from fovea_core.events.hmnet.evaluate import evaluate_model
from fovea_core.events.hmnet.streaming import StreamingHMNet, export_step_graphs
from fovea_core.events.hmnet.train import load_model


def time_steps(stream: StreamingHMNet, seq, warmup: int, end_to_end: bool) -> np.ndarray:
    stream.reset()
    out = []
    for s in range(len(seq.tokens)):
        if end_to_end:
            raw = seq.sequence
            t0 = time.perf_counter()
            stream.feed(raw.events, int(raw.window_end_ns[s]))  # window selection + tokens + model
            dt = time.perf_counter() - t0
        else:
            dt = stream.feed_tokens(seq.tokens[s]).latency_s
        if s >= warmup:
            out.append(dt)
    return np.array(out) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hmnet", type=Path, default=Path("models/hmnet/hmnet.pt"))
    ap.add_argument("--baseline", type=Path, default=Path("models/hmnet/baseline.pt"))
    ap.add_argument("--windows", type=int, default=180)
    ap.add_argument("--warmup", type=int, default=18)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median round is reported")
    ap.add_argument("--accuracy-sequences", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for hmnet.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    models = {"hmnet": load_model(args.hmnet), "baseline": load_model(args.baseline)}
    cfg = models["hmnet"][0].cfg
    seq = build_split("test", 1, args.windows, cfg)[0]
    runners = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_diff = {}
        for name, (model, _) in models.items():
            onnx_diff[name] = export_step_graphs(model, Path(tmp) / name)
            runners[(name, "torch")] = StreamingHMNet.from_torch(model)
            runners[(name, "onnxruntime")] = StreamingHMNet.from_onnx(model.cfg, Path(tmp) / name, threads=args.threads)
        rounds = {k: [] for k in runners}
        e2e = {k: [] for k in runners}
        for _ in range(args.rounds):
            for key, stream in runners.items():
                rounds[key].append(time_steps(stream, seq, args.warmup, end_to_end=False))
                e2e[key].append(time_steps(stream, seq, args.warmup, end_to_end=True))

    def summary(samples):
        means = [s.mean() for s in samples]
        best = samples[int(np.argsort(means)[len(means) // 2])]
        return {"mean_ms": float(best.mean()), "p50_ms": float(np.percentile(best, 50)),
                "p99_ms": float(np.percentile(best, 99)), "steps": int(len(best)),
                "round_means_ms": [float(m) for m in means]}

    latency = {f"{m}/{rt}": {"model_step": summary(rounds[(m, rt)]), "end_to_end": summary(e2e[(m, rt)])}
               for (m, rt) in runners}
    test = build_split("test", args.accuracy_sequences, args.windows, cfg)
    accuracy = {}
    for name, (model, meta) in models.items():
        r = evaluate_model(model, test, args.warmup, (5.0, 10.0, 20.0))
        accuracy[name] = {"miou": r["miou"], "abs_rel_10m": r["depth"]["10m"]["abs_rel"], "train": meta}

    def lat(m, rt, kind="model_step"):
        return latency[f"{m}/{rt}"][kind]["mean_ms"]

    ratios = {
        "hmnet/baseline torch": lat("hmnet", "torch") / lat("baseline", "torch"),
        "hmnet/baseline onnxruntime": lat("hmnet", "onnxruntime") / lat("baseline", "onnxruntime"),
        "hmnet/baseline torch end-to-end": lat("hmnet", "torch", "end_to_end") / lat("baseline", "torch", "end_to_end"),
        "onnxruntime/torch hmnet": lat("hmnet", "onnxruntime") / lat("hmnet", "torch"),
        "onnxruntime/torch baseline": lat("baseline", "onnxruntime") / lat("baseline", "torch"),
    }
    for key, v in latency.items():
        print(f"{key:24s} step {v['model_step']['mean_ms']:7.3f} ms (p50 {v['model_step']['p50_ms']:.3f}, "
              f"p99 {v['model_step']['p99_ms']:.3f})  end-to-end {v['end_to_end']['mean_ms']:7.3f} ms")
    for name, a in accuracy.items():
        print(f"accuracy {name:9s} mIoU {a['miou']:.3f}  AbsRel@10m {a['abs_rel_10m']:.3f} "
              f"({args.accuracy_sequences} held-out sequences)")
    for key, v in ratios.items():
        print(f"ratio {key:34s} {v:.3f}")
    result = {"claim": "HMNet <= 0.6x single-rate baseline latency per 5 ms step at equal or better accuracy",
              "machine": {"platform": platform.platform(), "processor": platform.processor(), "python": sys.version.split()[0],
                          "torch": torch.__version__, "threads": args.threads},
              "data": {"latency": f"1 held-out simulated sequence, {args.windows} windows of 5 ms, first {args.warmup} not timed",
                       "accuracy": f"{args.accuracy_sequences} held-out simulated sequences"},
              "config": json.loads(cfg.to_json()), "onnx_max_abs_diff": onnx_diff, "latency": latency,
              "accuracy": accuracy, "ratios": ratios}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hmnet.json").write_text(json.dumps(result, indent=2))
    better = accuracy["hmnet"]["miou"] >= accuracy["baseline"]["miou"]
    print(f"headline: HMNet / single-rate baseline latency per 5 ms step (torch, CPU {args.threads} thread) = "
          f"{ratios['hmnet/baseline torch']:.2f}x, mIoU {accuracy['hmnet']['miou']:.3f} vs "
          f"{accuracy['baseline']['miou']:.3f} ({'equal or better' if better else 'lower'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

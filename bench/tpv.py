"""TPVFormer on real camera sets: latency and accuracy against the image-blind alternatives, one run.

Data: PandaSet sequence 002 validation frames 46-55 (real images of the six cameras, the real rig, the
labelled Pandar64 returns inside the grid as query points; CC BY 4.0, Hesai and Scale AI).

1. Per camera set, interleaved round by round so machine load hits all alike: the committed camera model on
   ONNX Runtime (the node's backend) and on PyTorch, the image-blind network (PyTorch) and the voxel lookup of
   the training frames (numpy): median latency and the point mIoU of the same predictions.
2. TPV vs dense voxel queries at the committed grid (freshly initialised: latency does not depend on the
   weights): latency, peak forward memory (fresh process), representation size.

    python bench/tpv.py [--rounds 3] [--threads 1]

Writes bench/results/tpv.json; the last printed line is the headline.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fovea_core.tpv import data, real_data
from fovea_core.tpv.baselines import VoxelLookup
from fovea_core.tpv.inference import TPVInference
from fovea_core.tpv.metrics import IoUAccumulator
from fovea_core.tpv.model import build_model
from fovea_core.tpv.profiling import forward_peak_memory_mib, median_latency_ms, representation_bytes
from fovea_core.tpv.scoring import predict
from fovea_core.tpv.train import load_checkpoint

MODELS = Path("models/tpv")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds over all frames")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint", type=Path, default=MODELS / "tpv_cpu.pt")
    ap.add_argument("--onnx", type=Path, default=MODELS / "tpv_cpu.onnx")
    ap.add_argument("--blind-checkpoint", type=Path, default=MODELS / "tpv_image_blind.pt")
    ap.add_argument("--frames", type=int, nargs="*", default=list(real_data.VAL_FRAMES))
    ap.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for tpv.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    camera, _ = load_checkpoint(args.checkpoint)
    blind, _ = load_checkpoint(args.blind_checkpoint)
    cfg = camera.cfg
    frames = real_data.load_frames(cfg, args.frames)
    lookup = VoxelLookup(cfg).fit(real_data.load_frames(cfg, real_data.TRAIN_FRAMES))
    ort = TPVInference.load("onnxruntime", model_path=args.onnx, intra_op_threads=args.threads)
    queries = []
    for f in frames:
        keep = data.points_in_volume(f.points, cfg) & (f.point_labels > 0)
        queries.append((f, f.points[keep], f.point_labels[keep]))

    methods = {
        "camera model, ONNX Runtime": lambda f, p: ort.predict(list(f.images), list(f.intrinsics), list(f.cam2ego),
                                                               p).point_labels,
        "camera model, PyTorch": lambda f, p: predict(camera, f, p)[2],
        "image-blind network, PyTorch": lambda f, p: predict(blind, f, p)[2],
        "voxel lookup (training frames)": lambda f, p: lookup.predict(f, p),
    }
    times = {m: [] for m in methods}
    scores = {m: IoUAccumulator(cfg.num_classes) for m in methods}
    with torch.no_grad():
        for r in range(args.rounds):
            for f, pts, labels in queries:
                for name, fn in methods.items():
                    start = time.perf_counter()
                    pred = fn(f, pts)
                    times[name].append((time.perf_counter() - start) * 1000)
                    if r == 0:
                        scores[name].update(pred, labels)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    result = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads,
                          "note": "shared 2-core machine; ratios within one run are what to compare"},
              "data": {"sequence": "PandaSet 002 (CC BY 4.0)", "frames": args.frames,
                       "query_points_per_set": int(np.mean([len(q[1]) for q in queries]))},
              "methods": {}}
    print(f"\n{'method':<34}{'ms / camera set':>16}{'point mIoU':>12}")
    for name in methods:
        ms = float(np.median(times[name]))
        result["methods"][name] = {"median_ms": round(ms, 1), "point_miou": round(scores[name].miou(), 4)}
        print(f"{name:<34}{ms:>16.1f}{scores[name].miou():>12.3f}")

    print(f"\n{'variant':<8}{'repr KiB':>10}{'peak MiB':>10}{'ms':>9}   ({cfg.plane_x}x{cfg.plane_y}x{cfg.plane_z} planes, "
          "PyTorch, one real camera set)")
    f, pts, _ = queries[0]
    images, ego2img = data.model_inputs(f, cfg)
    inputs = (images, ego2img, torch.from_numpy(pts[:4096])[None])
    variants = {v: build_model(cfg, v).eval() for v in ("tpv", "voxel")}
    rounds = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v, model in variants.items():
            with torch.no_grad():
                rounds[v].append(median_latency_ms(lambda: model(*inputs), 3))
    result["tpv_vs_voxel"] = {}
    for v, model in variants.items():
        mem = forward_peak_memory_mib(cfg, v, 4096, threads=args.threads)
        ms = float(np.median(rounds[v]))
        result["tpv_vs_voxel"][v] = {"representation_kib": representation_bytes(model) / 1024,
                                     "peak_forward_mib": round(mem, 1), "latency_ms": round(ms, 1)}
        print(f"{v:<8}{representation_bytes(model) / 1024:>10.0f}{mem:>10.1f}{ms:>9.1f}", flush=True)
    m = result["methods"]
    cam, blind_m = m["camera model, ONNX Runtime"], m["image-blind network, PyTorch"]
    tv = result["tpv_vs_voxel"]
    result["ratios"] = {
        "camera_over_blind_latency": round(cam["median_ms"] / blind_m["median_ms"], 3),
        "camera_minus_blind_miou_points": round(cam["point_miou"] - blind_m["point_miou"], 4),
        "onnxruntime_over_torch_latency": round(cam["median_ms"] / m["camera model, PyTorch"]["median_ms"], 3),
        "voxel_over_tpv_latency": round(tv["voxel"]["latency_ms"] / tv["tpv"]["latency_ms"], 3),
        "voxel_over_tpv_peak_memory": round(tv["voxel"]["peak_forward_mib"] / max(tv["tpv"]["peak_forward_mib"], 1e-9), 3),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tpv.json").write_text(json.dumps(result, indent=2))
    for k, v in result["ratios"].items():
        print(f"{k}: {v}")
    print(f"headline: on real PandaSet camera sets the camera model scores point mIoU {cam['point_miou']:.3f} vs "
          f"{blind_m['point_miou']:.3f} for the image-blind network ({cam['point_miou'] - blind_m['point_miou']:+.3f}) "
          f"at {cam['median_ms']:.0f} ms per set on ONNX Runtime ({args.threads} thread), "
          f"{result['ratios']['camera_over_blind_latency']:.1f}x the image-blind network's time")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""TPVFormer latency and memory, measured in one run (CPU, batch 1, six cameras, 4096 query points):

1. latency per frame, PyTorch eager vs ONNX Runtime (the exported graph), at two plane resolutions
   (the committed CPU config 50x50x8 and a 100x100x16 grid);
2. TPV vs the dense-voxel-query baseline at equal resolution (50x50x8): peak forward memory (RSS growth of
   one no-grad forward in a fresh process), scene-representation size and latency.

    python bench/tpv.py [--repeats 5] [--threads 1]

Latency does not depend on the weights, so freshly initialised models of each configuration are timed
(the 50x50x8 TPV one has exactly the committed model's graph). Writes bench/results/tpv.json; the last
printed line is the headline ratio.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from fovea_core.backends import load_backend
from fovea_core.tpv.config import cpu_config
from fovea_core.tpv.export import export
from fovea_core.tpv.model import build_model
from fovea_core.tpv.nuscenes_sample import load_rig
from fovea_core.tpv.profiling import forward_peak_memory_mib, median_latency_ms, representation_bytes
from fovea_core.tpv.projection import ego_to_image


def inputs_for(cfg, points: int):
    _, K, T = load_rig(image_size=(cfg.image_width, cfg.image_height))
    torch.manual_seed(0)
    images = torch.randn(1, 6, 3, cfg.image_height, cfg.image_width)
    ego2img = torch.from_numpy(ego_to_image(K, T)).float()[None]
    pts = torch.rand(1, points, 3) * 40 - 20
    return images, ego2img, pts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed forwards per round (median)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (median of round medians)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--points", type=int, default=4096)
    ap.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for tpv.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = cpu_config()
    configs = {"50x50x8": base, "100x100x16": dataclasses.replace(base, plane_x=100, plane_y=100, plane_z=16)}
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "threads": args.threads},
              "data": f"random images, real nuScenes rig calibration, {args.points} query points, batch 1",
              "backends": {}, "tpv_vs_voxel": {}}
    print(f"{'grid':<12}{'torch ms':>10}{'ORT ms':>10}{'torch/ORT':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in configs.items():
            model = build_model(cfg, "tpv").eval()
            inputs = inputs_for(cfg, args.points)
            onnx_path = Path(tmp) / f"tpv_{name}.onnx"
            diff = export(model, onnx_path)
            ort = load_backend("onnxruntime", onnx_path=onnx_path, device="cpu", intra_op_threads=args.threads)
            feed = {"images": inputs[0].numpy(), "ego2img": inputs[1].numpy(), "points": inputs[2].numpy()}
            # Alternate the two backends round by round so a change in machine load hits both alike.
            t_torch_rounds, t_ort_rounds = [], []
            for _ in range(args.rounds):
                with torch.no_grad():
                    t_torch_rounds.append(median_latency_ms(lambda: model(*inputs), args.repeats))
                t_ort_rounds.append(median_latency_ms(lambda: ort.run(feed), args.repeats))
            t_torch, t_ort = float(np.median(t_torch_rounds)), float(np.median(t_ort_rounds))
            result["backends"][name] = {"config": cfg.to_dict(), "torch_ms": round(t_torch, 1),
                                        "onnxruntime_ms": round(t_ort, 1), "torch_over_onnxruntime": round(t_torch / t_ort, 3),
                                        "onnx_max_abs_diff": {k: float(v) for k, v in diff.items()}}
            print(f"{name:<12}{t_torch:>10.1f}{t_ort:>10.1f}{t_torch / t_ort:>11.2f}", flush=True)
    print(f"\n{'variant':<8}{'repr KiB':>10}{'peak MiB':>10}{'ms':>9}   (50x50x8, PyTorch)")
    models = {v: build_model(base, v).eval() for v in ("tpv", "voxel")}
    inputs = inputs_for(base, args.points)
    rounds = {v: [] for v in models}
    for _ in range(args.rounds):
        for variant, model in models.items():
            with torch.no_grad():
                rounds[variant].append(median_latency_ms(lambda: model(*inputs), args.repeats))
    for variant, model in models.items():
        ms = float(np.median(rounds[variant]))
        mem = forward_peak_memory_mib(base, variant, args.points)
        result["tpv_vs_voxel"][variant] = {"representation_kib": representation_bytes(model) / 1024,
                                           "peak_forward_mib": round(mem, 1), "latency_ms": round(ms, 1)}
        print(f"{variant:<8}{representation_bytes(model) / 1024:>10.0f}{mem:>10.1f}{ms:>9.1f}", flush=True)
    tv = result["tpv_vs_voxel"]
    ratios = {"voxel_over_tpv_peak_memory": tv["voxel"]["peak_forward_mib"] / max(tv["tpv"]["peak_forward_mib"], 1e-9),
              "voxel_over_tpv_latency": tv["voxel"]["latency_ms"] / tv["tpv"]["latency_ms"],
              "voxel_over_tpv_representation": tv["voxel"]["representation_kib"] / tv["tpv"]["representation_kib"]}
    result["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tpv.json").write_text(json.dumps(result, indent=2))
    for k, v in result["ratios"].items():
        print(f"{k}: {v:.2f}x")
    b = result["backends"]["50x50x8"]
    r = b["torch_over_onnxruntime"]
    ort_words = f"{r:.2f}x faster than" if r >= 1 else f"{1 / r:.2f}x slower than"
    print(f"headline: at 50x50x8 dense voxel queries take {ratios['voxel_over_tpv_latency']:.2f}x the latency and "
          f"{ratios['voxel_over_tpv_peak_memory']:.2f}x the peak forward memory of TPV; ONNX Runtime (1 thread) is "
          f"{ort_words} PyTorch")
    return 0


if __name__ == "__main__":
    sys.exit(main())

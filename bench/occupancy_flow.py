"""ImplicitO's query cost against the dense-grid head, measured in one run (CPU, batch 1):

1. the implicit decoder at 1k, 10k and 100k queries vs the dense head predicting the whole grid (80 m x 80 m
   at 0.4 m, t = 0 and every 0.5 s to 3 s, 3 classes x (occupancy, flow)), both from the same encoder
   features of the real Argoverse 2 sample, PyTorch eager and ONNX Runtime;
2. the same at twice the extent (160 m x 160 m at 0.4 m): the dense head's cost grows with the grid, the
   decoder's only with the number of queries.
The encoder (once per sweep, shared by both) is timed for reference. Rounds alternate method and baseline
(median of round medians), so both see the same machine load.

    python bench/occupancy_flow.py [--repeats 3] [--rounds 3] [--threads 1]

Latency does not depend on the weights: the trained models are used when present, freshly initialised
ones of the same configuration otherwise (and for the 160 m grid, which no model was trained for).
Writes bench/results/occupancy_flow.json; the last printed line is the headline ratio.
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

from fovea_core.backends import export_onnx, load_backend
from fovea_core.occflow import data
from fovea_core.occflow.config import cpu_config
from fovea_core.occflow.export import export
from fovea_core.occflow.model import DenseGrid, ImplicitO
from fovea_core.occflow.sample import model_inputs

QUERY_COUNTS = (1_000, 10_000, 100_000)


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def random_queries(cfg, n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    q = np.stack([rng.uniform(*cfg.x_range, n), rng.uniform(*cfg.y_range, n), rng.uniform(0, cfg.horizon, n)], 1)
    return torch.from_numpy(q.astype(np.float32))[None]


def models(cfg, trained: bool):
    torch.manual_seed(0)
    implicit, dense = ImplicitO(cfg).eval(), DenseGrid(cfg).eval()
    if trained:
        from fovea_core.occflow.train import load_model

        for path, target in (("models/occflow/implicito.pt", "implicit"), ("models/occflow/dense_grid.pt", "dense")):
            if Path(path).exists():
                model, _ = load_model(path)
                if model.cfg.to_dict() == cfg.to_dict():
                    implicit, dense = (model, dense) if target == "implicit" else (implicit, model)
    return implicit, dense


def measure(cfg, lidar, map_raster, args, workdir: Path, trained: bool) -> dict:
    implicit, dense = models(cfg, trained)
    with torch.no_grad():
        maps = implicit.features(lidar, map_raster)
        z = dense.encoder(lidar, map_raster)
    export(implicit, workdir / "implicit")
    export_onnx(dense.head, {"z": z}, workdir / "dense_head.onnx", output_names=["occupancy_logits", "flow"])
    opts = {"intra_op_threads": args.threads}
    ort_dec = load_backend("onnxruntime", onnx_path=workdir / "implicit_decoder.onnx", **opts)
    ort_enc = load_backend("onnxruntime", onnx_path=workdir / "implicit_encoder.onnx", **opts)
    ort_dense = load_backend("onnxruntime", onnx_path=workdir / "dense_head.onnx", **opts)
    feeds = {n: random_queries(cfg, n, seed=n) for n in QUERY_COUNTS}
    maps_np, z_np = maps.numpy(), z.numpy()
    rounds = {k: [] for k in ["torch_dense", "ort_dense", "torch_encoder", "ort_encoder"]
              + [f"{b}_implicit_{n}" for b in ("torch", "ort") for n in QUERY_COUNTS]}
    with torch.no_grad():
        for r in range(args.rounds):
            rounds["torch_dense"].append(median_ms(lambda: dense.head(z), args.repeats))
            rounds["ort_dense"].append(median_ms(lambda: ort_dense.run({"z": z_np}), args.repeats))
            for n in QUERY_COUNTS:
                rounds[f"torch_implicit_{n}"].append(median_ms(lambda: implicit.decoder(maps, feeds[n]), args.repeats))
                rounds[f"ort_implicit_{n}"].append(median_ms(
                    lambda: ort_dec.run({"maps": maps_np, "queries": feeds[n].numpy()}), args.repeats))
            if r == 0:
                rounds["torch_encoder"].append(median_ms(lambda: implicit.features(lidar, map_raster), args.repeats))
                rounds["ort_encoder"].append(median_ms(lambda: ort_enc.run({"lidar": lidar.numpy(),
                                                                             "map": map_raster.numpy()}), args.repeats))
            print(f"  round {r + 1}/{args.rounds} done", flush=True)
    return {k: float(np.median(v)) for k, v in rounds.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = cpu_config()
    big = cfg.replace(x_range=(-80.0, 80.0), y_range=(-80.0, 80.0), max_offset=80.0)
    sample = data.real_lidar_sample(cfg).with_inputs(tracker=False)
    sample_big = data.real_lidar_sample(big).with_inputs(tracker=False)
    result = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads,
                          "note": "shared 2-core CPU (other engineers' jobs running): ratios are the claim, "
                                  "absolute times are noisy"},
              "data": "the real Argoverse 2 sample (val log 7fab2350, 2 real sweeps + map; CC BY-NC-SA 4.0) as "
                      "encoder input; queries uniform over the grid and 0-3 s",
              "grids": {}}
    for name, c, s in (("80m_0.4m", cfg, sample), ("160m_0.4m", big, sample_big)):
        print(f"grid {name} ({c.nx} x {c.ny} cells)", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            ms = measure(c, *model_inputs(s, c), args, Path(tmp), trained=(c is cfg))
        ms["cells"] = c.nx * c.ny
        result["grids"][name] = ms
    print(f"\n{'grid':<11}{'backend':<9}{'dense ms':>10}" + "".join(f"{f'{n // 1000}k q ms':>11}" for n in QUERY_COUNTS)
          + "".join(f"{f'dense/{n // 1000}k':>11}" for n in QUERY_COUNTS) + f"{'encoder ms':>12}")
    for name, ms in result["grids"].items():
        for b in ("torch", "ort"):
            ratios = {n: ms[f"{b}_dense"] / ms[f"{b}_implicit_{n}"] for n in QUERY_COUNTS}
            ms[f"{b}_ratio_dense_over_implicit"] = {str(n): round(v, 3) for n, v in ratios.items()}
            print(f"{name:<11}{b:<9}{ms[f'{b}_dense']:>10.1f}" + "".join(f"{ms[f'{b}_implicit_{n}']:>11.1f}" for n in QUERY_COUNTS)
                  + "".join(f"{ratios[n]:>10.2f}x" for n in QUERY_COUNTS) + f"{ms[f'{b}_encoder']:>12.1f}")
    small, large = result["grids"]["80m_0.4m"], result["grids"]["160m_0.4m"]
    growth_dense = large["ort_dense"] / small["ort_dense"]
    growth_implicit = large["ort_implicit_10000"] / small["ort_implicit_10000"]
    result["grid_growth_x4_cells"] = {"dense": round(growth_dense, 2), "implicit_10k": round(growth_implicit, 2)}
    print(f"\n4x the cells (160 m vs 80 m): dense head {growth_dense:.2f}x the time, implicit decoder at 10k "
          f"queries {growth_implicit:.2f}x")
    head = small["ort_ratio_dense_over_implicit"]["10000"]
    result["headline"] = {"dense_over_implicit_10k_ort_80m": head, "goal": ">= 5x", "met": head >= 5.0}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "occupancy_flow.json").write_text(json.dumps(result, indent=1))
    print(f"headline: dense grid head / implicit decoder at 10k queries = {head:.2f}x (80 m x 80 m at 0.4 m, "
          f"onnxruntime, {args.threads} thread; goal >= 5x: {'met' if head >= 5 else 'not met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

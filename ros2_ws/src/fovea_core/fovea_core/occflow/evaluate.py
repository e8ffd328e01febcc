"""``fovea eval occflow``: ImplicitO vs the dense-grid baseline vs constant velocity, per waypoint, on
held-out simulated scenes and on the real Argoverse 2 samples, in one run; a table (markdown + JSON) and
plots (metrics per waypoint; predicted occupancy and flow at 1, 2, 3 s on the real log beside the truth).

Sets (``data.py`` says how each is made):
  sim_heldout          held-out simulated scenes, lidar + map (the paper's setting)
  sim_heldout_mapless  the same scenes' first half without the map (map channels masked)
  real_lidar           the real AV2 sweeps, lidar + map; ``_mapless``: lidar only; ``_tracker``: + tracks
  av2_log_boxes        the AV2 log's annotation frames: tracked-object history + map, no lidar
  av2_scenario         the AV2 forecasting scenario the same way
The constant-velocity baseline extrapolates the true boxes (perfect perception) in every set.

    fovea eval occflow --implicit models/occflow/implicito.pt --dense models/occflow/dense_grid.pt
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import data
from .agents import rasterise
from .config import CLASS_NAMES, OccFlowConfig
from .grid import BevGrid
from .metrics import MetricTable, waypoint_metrics
from .predict import constant_velocity_predictor, dense_predictor, implicit_predictor
from .sample import Sample
from .train import load_model

METRICS = ("occupancy_auc", "occupancy_soft_iou", "flow_epe", "flow_grounded_auc", "flow_grounded_soft_iou")
SHORT = {"occupancy_auc": "AUC", "occupancy_soft_iou": "Soft-IoU", "flow_epe": "EPE [m]",
         "flow_grounded_auc": "FG AUC", "flow_grounded_soft_iou": "FG Soft-IoU"}
METHODS = ("ImplicitO", "dense grid", "constant velocity")


def ground_truth(sample: Sample, cfg: OccFlowConfig, t: float):
    occ, flow, ok = rasterise(sample.tracks.observed(), BevGrid.of(cfg), t, cfg.flow_dt, cfg.num_classes)
    return occ, flow * ok[:, None]


class MotionProbe:
    """Does predicted occupancy move with the vehicles? For every vehicle moving faster than ``min_speed``
    at t = 0 (over the last 0.5 s) and inside the grid (2 m margin) at all waypoints: the predicted vehicle
    occupancy at the cell of its centre at t = 0 ("start") and at the cell of its true centre at each
    waypoint ("true"). A forecaster that moves occupancy has "start" falling and "true" staying high; one
    that predicts a static prior has both flat."""

    def __init__(self, cfg: OccFlowConfig, min_speed: float = 4.0) -> None:
        self.cfg, self.min_speed, self.grid = cfg, min_speed, BevGrid.of(cfg)
        self.values: dict[str, dict[str, list]] = {}
        self.vehicles = 0

    def cells(self, sample: Sample, times):
        """(vehicles, 1 + waypoints) row and column indices: the t = 0 centre, then the true centres."""
        tracks, cfg = sample.tracks.observed(), self.cfg
        k, lag = tracks.current, int(round(0.5 / tracks.period))
        frames = [k] + [int(f) for f in tracks.frame_of(np.asarray(times))]
        if k - lag < 0 or frames[-1] >= tracks.num_frames:
            return None
        lo = np.array([cfg.x_range[0], cfg.y_range[0]]) + 2.0
        hi = np.array([cfg.x_range[1], cfg.y_range[1]]) - 2.0
        speed = np.linalg.norm(tracks.xy[k] - tracks.xy[k - lag], axis=1) / (lag * tracks.period)
        keep = (tracks.cls == 0) & tracks.valid[k - lag] & tracks.valid[frames].all(0) & (speed > self.min_speed)
        keep &= ((tracks.xy[frames] >= lo) & (tracks.xy[frames] <= hi)).all((0, 2))
        if not keep.any():
            return None
        row, col, _ = self.grid.cell_index(tracks.xy[frames][:, keep].reshape(-1, 2))
        return row.reshape(len(frames), -1).T, col.reshape(len(frames), -1).T

    def add(self, name: str, cells, preds) -> None:
        rows, cols = cells
        v = self.values.setdefault(name, {"start": [], "true": []})
        v["start"].append(np.stack([occ[0][rows[:, 0], cols[:, 0]] for occ, _ in preds], 1))
        v["true"].append(np.stack([occ[0][rows[:, j + 1], cols[:, j + 1]] for j, (occ, _) in enumerate(preds)], 1))

    def markdown(self, set_name: str, times) -> str:
        lines = [f"**{set_name}**, moving vehicles (> {self.min_speed:g} m/s at t = 0, {self.vehicles} vehicle-samples): "
                 "mean predicted vehicle occupancy at the t = 0 centre / at the true centre", "",
                 "| method | " + " | ".join(f"{t:g} s" for t in times) + " |", "|---|" + "---|" * len(times)]
        for name, v in self.values.items():
            start, true = np.concatenate(v["start"]).mean(0), np.concatenate(v["true"]).mean(0)
            lines.append(f"| {name} | " + " | ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(start, true)) + " |")
        return "\n".join(lines)


def score(samples: list[Sample], predictors: dict, cfg: OccFlowConfig, table: MetricTable, log=print,
          probe: MotionProbe | None = None) -> None:
    if abs(cfg.flow_dt - cfg.waypoint_dt) > 1e-9:
        raise ValueError("flow-grounded metrics warp by one waypoint: flow_dt must equal waypoint_dt")
    times = list(cfg.waypoints)
    for i, sample in enumerate(samples):
        truth = [ground_truth(sample, cfg, t) for t in [0.0] + times]
        cells = probe.cells(sample, times) if probe is not None else None
        if cells is not None:
            probe.vehicles += len(cells[0])
        for name, predict in predictors.items():
            preds = predict(sample, times)
            if cells is not None:
                probe.add(name, cells, preds)
            for k, (occ, flow) in enumerate(preds):
                for c, cls in enumerate(CLASS_NAMES):
                    table.add(name, times[k], cls, waypoint_metrics(occ[c], flow[c], truth[k + 1][0][c],
                                                                  truth[k + 1][1][c], truth[k][0][c], cfg.resolution))
        if (i + 1) % 5 == 0 or i + 1 == len(samples):
            log(f"  {i + 1}/{len(samples)} samples", flush=True)


def markdown(tables: dict[str, MetricTable], counts: dict[str, int], cls: str = "vehicle") -> str:
    lines = [f"Class: {cls}. Each value: mean over waypoints {', '.join(f'{w:g}' for w in next(iter(tables.values())).waypoints(METHODS[0]))} s "
             "of the per-waypoint mean over samples (undefined sample-waypoints skipped).", "",
             "| set | samples | method | " + " | ".join(SHORT[m] for m in METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]
    for set_name, table in tables.items():
        for method in METHODS:
            if not table.waypoints(method):
                continue
            vals = [table.mean(method, cls, m) for m in METRICS]
            lines.append(f"| {set_name} | {counts[set_name]} | {method} | "
                         + " | ".join("—" if v is None else f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines)


def per_waypoint_markdown(table: MetricTable, set_name: str, cls: str = "vehicle") -> str:
    lines = [f"**{set_name}**, {cls}, per waypoint (AUC / Soft-IoU / EPE m / FG AUC / FG Soft-IoU):", "",
             "| method | " + " | ".join(f"{w:g} s" for w in table.waypoints(METHODS[0])) + " |",
             "|---|" + "---|" * len(table.waypoints(METHODS[0]))]
    for method in METHODS:
        if not table.waypoints(method):
            continue
        cells = []
        for w in table.waypoints(method):
            v = [table.mean(method, cls, m, w) for m in METRICS]
            cells.append(" / ".join("—" if x is None else f"{x:.2f}" for x in v))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(tables: dict[str, MetricTable], out: Path, cls: str = "vehicle") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(tables)
    fig, axes = plt.subplots(len(names), 4, figsize=(16, 3.2 * len(names)), squeeze=False)
    for r, set_name in enumerate(names):
        for c, metric in enumerate(("occupancy_auc", "occupancy_soft_iou", "flow_epe", "flow_grounded_auc")):
            ax = axes[r, c]
            for method in METHODS:
                ws = tables[set_name].waypoints(method)
                vals = [tables[set_name].mean(method, cls, metric, w) for w in ws]
                if ws:
                    ax.plot(ws, [np.nan if v is None else v for v in vals], "o-", label=method)
            ax.set_title(f"{set_name}: {SHORT[metric]}", fontsize=9)
            ax.set_xlabel("waypoint [s]")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def plot_times(sample: Sample, predictors: dict, cfg: OccFlowConfig, out: Path, times=(1.0, 2.0, 3.0),
               title: str = "") -> None:
    """Rows: ground truth, then each method; columns: the given times. Vehicle occupancy (colour), reverse
    flow arrows (every 4th cell where occupancy > 0.3), the latest sweep's returns above the road (grey),
    the agents' boxes at t = 0 (thin outlines) so motion is visible against where they started."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = BevGrid.of(cfg)
    extent = [cfg.x_range[0], cfg.x_range[1], cfg.y_range[0], cfg.y_range[1]]
    rows = [("ground truth", [ground_truth(sample, cfg, t) for t in times])]
    rows += [(name, predict(sample, list(times))) for name, predict in predictors.items()]
    returns = sample.lidar_counts[-1][2:].sum(0) > 0
    now = ground_truth(sample, cfg, 0.0)[0][0] > 0
    centres = grid.cell_centres()
    fig, axes = plt.subplots(len(rows), len(times), figsize=(4.2 * len(times), 4.2 * len(rows)), squeeze=False)
    for r, (name, preds) in enumerate(rows):
        for c, (occ, flow) in enumerate(preds):
            ax = axes[r, c]
            ax.imshow(np.where(returns, 0.15, 0.0), origin="lower", extent=extent, cmap="gray_r", vmin=0, vmax=1)
            ax.imshow(np.ma.masked_less(occ[0], 0.05), origin="lower", extent=extent, cmap="magma_r", vmin=0, vmax=1,
                      alpha=0.9)
            ax.contour(centres[..., 0], centres[..., 1], now, levels=[0.5], colors="tab:green", linewidths=0.5)
            sel = (occ[0] > 0.3) & (np.indices(occ[0].shape)[0] % 4 == 0) & (np.indices(occ[0].shape)[1] % 4 == 0)
            ax.quiver(centres[..., 0][sel], centres[..., 1][sel], flow[0, 0][sel], flow[0, 1][sel], color="tab:blue",
                      angles="xy", scale_units="xy", scale=1.0, width=0.003)
            ax.plot(0, 0, "g^", ms=8)
            ax.set_title(f"{name}: vehicles at t = {times[c]:g} s", fontsize=9)
            ax.set_xlim(extent[:2])
            ax.set_ylim(extent[2:])
    fig.suptitle(f"{title} Arrows: reverse flow (where the occupant was {cfg.flow_dt:g} s earlier); green outlines: "
                 "vehicles at t = 0; green triangle: ego", fontsize=10, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(out, dpi=65)
    plt.close(fig)


REAL_LOG_TITLE = "Argoverse 2 val log 7fab2350 (real sweeps; CC BY-NC-SA 4.0, Argo AI)."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fovea eval occflow",
                                     description="Evaluate ImplicitO against the dense grid and constant velocity.")
    parser.add_argument("--implicit", type=Path, default=Path("models/occflow/implicito.pt"))
    parser.add_argument("--dense", type=Path, default=Path("models/occflow/dense_grid.pt"))
    parser.add_argument("--data-dir", type=Path, default=None, help="simulated cache (default data/occflow/<grid>)")
    parser.add_argument("--av2-root", type=Path, default=None, help="default: ../shared/data/occflow/av2")
    parser.add_argument("--heldout-scenes", type=int, default=len(data.HELDOUT_SEEDS))
    parser.add_argument("--out", type=Path, default=Path("models/occflow/eval"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sim-pictures", type=int, default=3, help="held-out simulated samples drawn at 0.5/1.5/3 s")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    implicit, _ = load_model(args.implicit, "--implicit")
    dense, _ = load_model(args.dense, "--dense")
    cfg = implicit.cfg
    if dense.cfg.to_dict() != cfg.to_dict():
        raise SystemExit("the two models were trained for different grids/configs")
    predictors = {"ImplicitO": implicit_predictor(implicit), "dense grid": dense_predictor(dense),
                  "constant velocity": constant_velocity_predictor(cfg)}
    learned = {k: v for k, v in predictors.items() if k != "constant velocity"}
    root = args.data_dir or data.cache_dir(cfg)
    heldout = [Sample.load(p).seen(cfg) for p in data.generate(root / "heldout",
                                                               list(data.HELDOUT_SEEDS)[:args.heldout_scenes],
                                                               cfg, heldout=True)]
    log_dir = args.av2_root / "sensor/val/7fab2350-7eaf-3b7e-a39d-6937a4c1bede" if args.av2_root else None
    scen_dir = args.av2_root / "forecasting_scenarios/0a1e6f0a-1817-4a98-b02e-db8c9327d151" if args.av2_root else None
    real = data.real_lidar_sample(cfg, log_dir).seen(cfg)
    sets = {
        "sim_heldout": ([s.with_inputs(tracker=False) for s in heldout], predictors),
        "sim_heldout_mapless": ([s.with_inputs(tracker=False, use_map=False) for s in heldout[:len(heldout) // 2]], learned),
        "real_lidar": ([real.with_inputs(tracker=False)], predictors),
        "real_lidar_mapless": ([real.with_inputs(tracker=False, use_map=False)], learned),
        "real_lidar_tracker": ([real], learned),
        "av2_log_boxes": (data.real_box_samples(cfg, log_dir=log_dir), predictors),
        "av2_scenario": (data.scenario_samples(cfg, scenario_dir=scen_dir), predictors),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tables, counts, start = {}, {}, time.time()
    probes = {name: MotionProbe(cfg) for name in ("sim_heldout", "av2_log_boxes", "av2_scenario")}
    for name, (samples, preds) in sets.items():
        print(f"{name}: {len(samples)} samples, {', '.join(preds)} ({time.time() - start:.0f} s)", flush=True)
        tables[name], counts[name] = MetricTable(), len(samples)
        score(samples, preds, cfg, tables[name], probe=probes.get(name))
    report = [markdown(tables, counts)]
    for cls in ("pedestrian", "cyclist"):
        report.append(markdown({k: v for k, v in tables.items() if k in ("sim_heldout", "av2_log_boxes", "av2_scenario", "real_lidar")}, counts, cls))
    for name in ("sim_heldout", "real_lidar", "av2_log_boxes", "av2_scenario"):
        report.append(per_waypoint_markdown(tables[name], name))
    report += [probe.markdown(name, cfg.waypoints) for name, probe in probes.items()]
    text = "\n\n".join(report)
    (args.out / "eval.md").write_text(text + "\n")
    (args.out / "eval.json").write_text(json.dumps({"sets": {k: {"samples": counts[k], "metrics": t.to_json()}
                                                             for k, t in tables.items()},
                                                    "config": cfg.to_dict(), "seconds": round(time.time() - start, 1)},
                                                   indent=1))
    plot_curves({k: tables[k] for k in ("sim_heldout", "real_lidar", "av2_log_boxes", "av2_scenario")},
                args.out / "metrics_per_waypoint.png")
    plot_times(real.with_inputs(tracker=False), predictors, cfg, args.out / "real_log_1_2_3s.png", title=REAL_LOG_TITLE)
    for i in range(min(args.sim_pictures, len(heldout))):
        plot_times(heldout[i].with_inputs(tracker=False), predictors, cfg, args.out / f"sim_heldout_{i}_0.5_1.5_3s.png",
                   times=(0.5, 1.5, 3.0), title=f"Held-out simulated scene ({heldout[i].source}), sample {i}.")
    print(text)
    print(f"wrote {args.out}/eval.md, eval.json, metrics_per_waypoint.png, real_log_1_2_3s.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

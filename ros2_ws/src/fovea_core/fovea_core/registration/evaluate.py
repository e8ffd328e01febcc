"""Evaluate VBReg vs SC2 vs RANSAC side by side on the real pairs and pairs derived from them.

    python -m fovea_core.registration.evaluate            (or: fovea eval registration)

Data (never used in training):
- indoor RGB-D fragment pair (3DMatch-style, GeoTransformer demo) — 3DMatch rule RE < 15°, TE < 0.30 m
- outdoor lidar scan pair (small_gicp demo) — KITTI rule RE < 5°, TE < 0.60 m
- derived pairs: from each real pair, ``--derived`` harder pairs: the source is cropped (indoor: a random
  half-space keeping 60–85 % of it; outdoor: a random 60–120° azimuth sector removed from each scan) and
  moved by an extra known rigid motion (indoor: any rotation up to 180° about a random axis, ≤ 1 m;
  outdoor: yaw up to ±180°, roll/pitch ≤ 2°, ≤ 5 m); ground truth is composed accordingly.
All methods see the same FPFH correspondences per pair. Sweeps, on each real pair plus ``--sweep-pairs``
copies moved by extra rigid motions (no crops): recall vs injected outlier ratio (real FPFH inliers kept,
real outliers subsampled or synthetic mismatches added, at most ``--max-correspondences``) and recall vs
overlap (opposing half-space crops of source and target; the measured overlap is reported).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import open3d as o3d
import torch

from fovea_core.paths import shared_data_dir

from .features import Correspondences, build_correspondences
from .model_io import DEFAULT_MODEL_DIR
from .pipeline import METHODS, Registration, RegistrationConfig
from .rigid import apply_transform, axis_angle_to_matrix, make_transform, rotation_error_deg, translation_error

RULES = {"indoor": (15.0, 0.30), "outdoor": (5.0, 0.60)}  # (max RE degrees, max TE metres)


@dataclass
class Pair:
    name: str
    scale: str  # indoor | outdoor
    source: np.ndarray
    target: np.ndarray
    transform: np.ndarray  # ground truth, source → target


def load_real_pairs(root: Path | None = None) -> list[Pair]:
    root = root or shared_data_dir() / "registration"
    indoor = root / "indoor_rgbd_fragment_pair"
    outdoor = root / "outdoor_lidar_scan_pair"
    read = lambda p: np.asarray(o3d.io.read_point_cloud(str(p)).points, dtype=np.float64)  # noqa: E731
    return [
        Pair("indoor_real", "indoor", np.load(indoor / "src.npy"), np.load(indoor / "ref.npy"), np.load(indoor / "gt.npy")),
        Pair("outdoor_real", "outdoor", read(outdoor / "source.ply"), read(outdoor / "target.ply"),
             np.loadtxt(outdoor / "T_target_source.txt")),
    ]


def halfspace_crop(points: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    projection = points @ direction
    return points[projection <= np.quantile(projection, keep)]


def sector_crop(points: np.ndarray, removed_deg: float, rng: np.random.Generator) -> np.ndarray:
    azimuth = np.degrees(np.arctan2(points[:, 1], points[:, 0]))
    start = rng.uniform(-180, 180)
    inside = ((azimuth - start) % 360.0) < removed_deg
    return points[~inside]


def derive_pair(pair: Pair, index: int, rng: np.random.Generator, crop: bool = True) -> Pair:
    """A harder pair from a real one: crops (optional) and an extra known rigid motion of the source."""
    if pair.scale == "indoor":
        source = halfspace_crop(pair.source, rng.uniform(0.6, 0.85), rng) if crop else pair.source
        target = pair.target
        motion = make_transform(axis_angle_to_matrix(_random_axis(rng) * rng.uniform(0, np.pi)), rng.uniform(-1, 1, 3))
    else:
        source = sector_crop(pair.source, rng.uniform(60, 120), rng) if crop else pair.source
        target = sector_crop(pair.target, rng.uniform(60, 120), rng) if crop else pair.target
        motion = make_transform(
            axis_angle_to_matrix(np.array([*np.radians(rng.uniform(-2, 2, 2)), rng.uniform(-np.pi, np.pi)])),
            np.array([*rng.uniform(-5, 5, 2), 0.0]),
        )
    # source'' = M source' , so the new ground truth is T_gt M^-1
    return Pair(f"{pair.name}_{'derived' if crop else 'moved'}{index}", pair.scale, apply_transform(motion, source), target,
                pair.transform @ np.linalg.inv(motion))


def opposing_crops(pair: Pair, keep: float, rng: np.random.Generator) -> Pair:
    """Lower overlap on purpose: along a random horizontal direction (in the target frame) the source keeps
    its lower ``keep`` fraction and the target its upper ``keep`` fraction, so only the middle band is seen
    by both; keep = 1 leaves the pair unchanged."""
    if keep >= 1.0:
        return pair
    direction = np.array([*_random_axis(rng)[:2], 0.0])
    direction /= np.linalg.norm(direction)
    source_projection = apply_transform(pair.transform, pair.source) @ direction
    target_projection = pair.target @ direction
    source = pair.source[source_projection <= np.quantile(source_projection, keep)]
    target = pair.target[target_projection >= np.quantile(target_projection, 1.0 - keep)]
    return Pair(f"{pair.name}_keep{keep}", pair.scale, source, target, pair.transform)


def _random_axis(rng):
    axis = rng.normal(size=3)
    return axis / np.linalg.norm(axis)


def config_for(scale: str, args) -> RegistrationConfig:
    base = RegistrationConfig.indoor if scale == "indoor" else RegistrationConfig.outdoor
    return base(backend=args.backend, model_dir=args.model_dir, max_correspondences=args.max_correspondences)


def score(estimate: np.ndarray, pair: Pair, corr: Correspondences, predicted: np.ndarray, tau: float) -> dict:
    max_re, max_te = RULES[pair.scale]
    re, te = rotation_error_deg(estimate, pair.transform), translation_error(estimate, pair.transform)
    truth = np.linalg.norm(apply_transform(pair.transform, corr.source) - corr.target, axis=1) < tau
    tp = float((predicted & truth).sum())
    precision = tp / max(predicted.sum(), 1)
    recall = tp / max(truth.sum(), 1)
    return {
        "success": bool(re < max_re and te < max_te), "re_deg": re, "te_m": te,
        "inlier_precision": precision, "inlier_recall": recall,
        "inlier_f1": 2 * precision * recall / max(precision + recall, 1e-12),
        "gt_inlier_ratio": float(truth.mean()), "num_correspondences": len(corr),
    }


def run_methods(registration: Registration, pair: Pair, methods, corr=None, feature_seconds=0.0) -> dict:
    """Every method on the same correspondences of one pair."""
    cfg = registration.config
    if corr is None:
        tic = time.perf_counter()
        corr, _, _ = build_correspondences(pair.source, pair.target, cfg.voxel_size, cfg.mutual,
                                           max_correspondences=cfg.max_correspondences,
                                           rng=np.random.default_rng(cfg.seed))
        feature_seconds = time.perf_counter() - tic
    results = {}
    for method in methods:
        timings = {}
        tic = time.perf_counter()
        solved = registration.solve(corr, replace(cfg, method=method), timings)
        solve_seconds = time.perf_counter() - tic
        results[method] = {**score(solved.transform, pair, corr, solved.inlier_mask, cfg.inlier_threshold),
                           "solve_s": solve_seconds, "time_s": solve_seconds + feature_seconds}
    return results


def inject_outliers(pair: Pair, corr: Correspondences, ratio: float, tau: float, cap: int, rng) -> Correspondences:
    """Keep real FPFH inliers, fill with real outliers then synthetic mismatches to reach ``ratio``."""
    residual = np.linalg.norm(apply_transform(pair.transform, corr.source) - corr.target, axis=1)
    inliers, outliers = np.flatnonzero(residual < tau), np.flatnonzero(residual >= tau)
    total = min(cap, int(len(inliers) / max(1.0 - ratio, 1e-6)))
    n_in = max(3, int(round((1.0 - ratio) * total)))
    keep_in = rng.choice(inliers, min(n_in, len(inliers)), replace=False)
    n_out = total - len(keep_in)
    keep_out = rng.choice(outliers, min(n_out, len(outliers)), replace=False)
    source = np.vstack([corr.source[keep_in], corr.source[keep_out]])
    target = np.vstack([corr.target[keep_in], corr.target[keep_out]])
    missing = total - len(source)
    if missing > 0:
        fake_source = corr.source[rng.integers(len(corr), size=missing)]
        fake_target = corr.target[rng.integers(len(corr), size=missing)]
        source, target = np.vstack([source, fake_source]), np.vstack([target, fake_target])
    index = np.arange(len(source))
    return Correspondences(source, target, index, index)


def summarize(rows: list[dict]) -> dict:
    successes = [r for r in rows if r["success"]]
    mean = lambda key, items: float(np.mean([r[key] for r in items])) if items else float("nan")  # noqa: E731
    return {
        "pairs": len(rows), "recall": len(successes) / max(len(rows), 1),
        "re_deg": mean("re_deg", successes), "te_m": mean("te_m", successes),
        "inlier_precision": mean("inlier_precision", rows), "inlier_recall": mean("inlier_recall", rows),
        "inlier_f1": mean("inlier_f1", rows), "time_s": mean("time_s", rows),
    }


def format_table(groups: dict[str, dict[str, dict]]) -> str:
    header = (f"{'data':<24}{'method':<8}{'pairs':>6}{'recall':>8}{'RE°':>8}{'TE m':>8}"
              f"{'in.P':>7}{'in.R':>7}{'in.F1':>7}{'s/pair':>8}")
    lines = [header, "-" * len(header)]
    for group, methods in groups.items():
        for method, s in methods.items():
            lines.append(f"{group:<24}{method:<8}{s['pairs']:>6}{s['recall']:>8.3f}{s['re_deg']:>8.2f}{s['te_m']:>8.3f}"
                         f"{s['inlier_precision']:>7.3f}{s['inlier_recall']:>7.3f}{s['inlier_f1']:>7.3f}{s['time_s']:>8.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Registration evaluation: VBReg vs SC2 vs RANSAC")
    parser.add_argument("--derived", type=int, default=10, help="derived pairs per real pair")
    parser.add_argument("--sweep-pairs", type=int, default=3,
                        help="rigidly moved (uncropped) copies per real pair used in the sweeps")
    parser.add_argument("--outlier-ratios", default="0.5,0.8,0.9,0.95,0.97,0.99")
    parser.add_argument("--overlap-keep", default="1.0,0.85,0.75,0.65,0.58")
    parser.add_argument("--max-correspondences", type=int, default=1000)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--model-dir", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--data-root", default=None, help="default: <shared data>/registration")
    parser.add_argument("--out", default=str(DEFAULT_MODEL_DIR / "evaluation"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-sweeps", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    real = load_real_pairs(Path(args.data_root) if args.data_root else None)
    registrations = {scale: Registration(config_for(scale, args)) for scale in ("indoor", "outdoor")}
    if "vbreg" in methods:  # load the model before timing anything: start-up is not time per pair
        for registration in registrations.values():
            registration.scorer.run({"correspondences": np.zeros((1, 16, 6), np.float32)})
    per_pair, groups = {}, {}
    derived_by_scale = {}
    for pair in real:
        derived = [derive_pair(pair, i, rng) for i in range(args.derived)]
        derived_by_scale[pair.scale] = derived
        for group_name, pairs in ((pair.name, [pair]), (f"{pair.name}_derived", derived)):
            rows = {m: [] for m in methods}
            for p in pairs:
                result = run_methods(registrations[pair.scale], p, methods)
                per_pair[p.name] = result
                for m in methods:
                    rows[m].append(result[m])
                print(f"[pair] {p.name}: " + "  ".join(
                    f"{m} {'OK ' if r['success'] else 'FAIL'} RE {r['re_deg']:.2f} TE {r['te_m']:.3f} {r['time_s']:.2f}s"
                    for m, r in result.items()), flush=True)
            groups[group_name] = {m: summarize(rows[m]) for m in methods}

    sweeps = {}
    if not args.no_sweeps:
        sweeps = run_sweeps(real, derived_by_scale, registrations, methods, args, rng)
    table = format_table(groups)
    print("\n" + table)
    result = {
        "data": {"real": [p.name for p in real], "derived_per_real_pair": args.derived,
                 "derivation": __doc__.split("Data (never used in training):")[1].strip()},
        "groups": groups, "per_pair": per_pair, "sweeps": sweeps, "table": table,
        "seconds": round(time.time() - started, 1), "machine": platform.platform(),
        "backend": args.backend, "model_dir": args.model_dir, "torch_threads": args.threads,
    }
    (out / "evaluation.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    if sweeps:
        plot_sweeps(sweeps, out)
    print(f"\nwrote {out / 'evaluation.json'} and plots in {out} ({time.time() - started:.0f}s)")
    return 0


def run_sweeps(real, derived_by_scale, registrations, methods, args, rng) -> dict:
    ratios = [float(x) for x in args.outlier_ratios.split(",")]
    keeps = [float(x) for x in args.overlap_keep.split(",")]
    sweeps = {"outlier_ratio": {}, "overlap": {}}
    for pair in real:
        registration = registrations[pair.scale]
        cfg = registration.config
        # the real pair plus copies moved by extra known rigid motions (no crops), so the sweeps vary only
        # the outlier ratio or the overlap
        pairs = [pair] + [derive_pair(pair, i, rng, crop=False) for i in range(args.sweep_pairs)]
        base = []
        for p in pairs:
            corr, _, _ = build_correspondences(p.source, p.target, cfg.voxel_size, cfg.mutual,
                                               max_correspondences=cfg.max_correspondences,
                                               rng=np.random.default_rng(cfg.seed))
            base.append(corr)
        curve = {m: [] for m in methods}
        for ratio in ratios:
            rows = {m: [] for m in methods}
            for p, corr in zip(pairs, base):
                injected = inject_outliers(p, corr, ratio, cfg.inlier_threshold, args.max_correspondences, rng)
                for m, r in run_methods(registration, p, methods, injected).items():
                    rows[m].append(r)
            for m in methods:
                curve[m].append(summarize(rows[m])["recall"])
            print(f"[sweep] {pair.scale} outlier ratio {ratio}: " +
                  "  ".join(f"{m} {curve[m][-1]:.2f}" for m in methods), flush=True)
        sweeps["outlier_ratio"][pair.scale] = {"x": ratios, "pairs": len(pairs), "recall": curve}

        overlap_curve = {m: [] for m in methods}
        measured = []
        for keep in keeps:
            rows = {m: [] for m in methods}
            overlaps = []
            for p in pairs:
                cropped = opposing_crops(p, keep, rng)
                overlaps.append(overlap_fraction(cropped, cfg))
                for m, r in run_methods(registration, cropped, methods).items():
                    rows[m].append(r)
            measured.append(float(np.mean(overlaps)))
            for m in methods:
                overlap_curve[m].append(summarize(rows[m])["recall"])
            print(f"[sweep] {pair.scale} source kept {keep} (overlap {measured[-1]:.2f}): " +
                  "  ".join(f"{m} {overlap_curve[m][-1]:.2f}" for m in methods), flush=True)
        sweeps["overlap"][pair.scale] = {"kept_fraction": keeps, "x": measured, "pairs": len(pairs),
                                         "recall": overlap_curve}
    return sweeps


def overlap_fraction(pair: Pair, cfg: RegistrationConfig) -> float:
    """Fraction of the (downsampled) source that lies within 2 voxels of the target under the ground truth
    (the overlap ratio as 3DMatch-style benchmarks define it, relative to the source)."""
    from scipy.spatial import cKDTree

    from .features import voxel_downsample

    source = apply_transform(pair.transform, voxel_downsample(pair.source, cfg.voxel_size))
    distances, _ = cKDTree(voxel_downsample(pair.target, cfg.voxel_size)).query(source)
    return float(np.mean(distances < 2 * cfg.voxel_size))


def plot_sweeps(sweeps: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for kind, xlabel in (("outlier_ratio", "injected outlier ratio"), ("overlap", "overlap (fraction of source)")):
        figure, axes = plt.subplots(1, len(sweeps[kind]), figsize=(5 * len(sweeps[kind]), 4), squeeze=False)
        for axis, (scale, curve) in zip(axes[0], sweeps[kind].items()):
            order = np.argsort(curve["x"])
            for method, recall in curve["recall"].items():
                axis.plot(np.asarray(curve["x"])[order], np.asarray(recall)[order], marker="o", label=method)
            axis.set_title(f"{scale} ({curve['pairs']} pairs)")
            axis.set_xlabel(xlabel)
            axis.set_ylabel("registration recall")
            axis.set_ylim(-0.05, 1.05)
            axis.grid(True, alpha=0.3)
            axis.legend()
        figure.tight_layout()
        figure.savefig(out / f"recall_vs_{kind}.png", dpi=100)
        plt.close(figure)


if __name__ == "__main__":
    raise SystemExit(main())

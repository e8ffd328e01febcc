"""Registration benchmark on a real lidar sequence: Fovea odometry vs KISS-ICP, and global registration
VBReg vs SC2 vs RANSAC, in one run.

    python bench/registration.py [--out bench/results] [--data-root ../shared/data/tpv/pandaset_002]

Data: PandaSet sequence 002, frames 00-55 (56 real Pandar64 sweeps at 10 Hz, 9 m of driving), each sweep
moved from world coordinates into its body frame with lidar/poses.json (fovea_core.registration.sequence).
PandaSet by Hesai and Scale AI, CC BY 4.0 + PandaSet Dataset Terms of Use (see the data's PROVENANCE.md).

1. Odometry. Fovea (scan-to-map VGICP on small_gicp, VBReg fallback; config/registration.yaml values) and
   KISS-ICP 1.3.0 (its defaults; deskew off because PandaSet's points are already motion-compensated — on,
   its RPE is worse here), each with one thread and with all threads, run in lockstep (scan k through every
   pipeline before scan k + 1) so all see the same load. Per run: rate (scans / second of registration calls), relative pose error per frame, end
   drift, relative translation error over 2/4/6/8 m segments.
2. Global registration. Pairs (i, i + gap) for gaps 1, 5, 10, 20, 40 frames, the source turned by a random
   rotation (uniform on SO(3)) so no method gets an initial guess; one FPFH front end (voxel --global-voxel,
   mutual faiss matches, a random cap of --correspondences) shared by VBReg, SC2 and Open3D RANSAC. Success:
   RE < 5 deg and TE < 0.6 m (the KITTI rule). Also timed: the front end's descriptor matching with faiss
   against the numpy matrix product it replaced, and VBReg on a compatibility-guided top-K subset.

Writes registration.json (+ registration_trajectory.png); the last printed line is the headline.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fovea_core.geometry.transforms import invert_rigid
from fovea_core.registration.features import match_clouds
from fovea_core.registration.odometry import LidarOdometry, OdometryConfig
from fovea_core.registration.icp import IcpConfig
from fovea_core.registration.pipeline import Registration, RegistrationConfig
from fovea_core.registration.rigid import apply_transform, make_transform, rotation_error_deg, translation_error
from fovea_core.registration.sequence import load_sweeps
from fovea_core.registration.threads import limited_threads

SEGMENTS_M = (2.0, 4.0, 6.0, 8.0)
GAPS = (1, 5, 10, 20, 40)
SUCCESS_RE_DEG, SUCCESS_TE_M = 5.0, 0.6


# ---------------------------------------------------------------------------------------------- odometry
class FoveaRunner:
    def __init__(self, threads: int, global_voxel: float):
        self.threads, self.global_voxel = threads, global_voxel

    def start(self):
        registration = Registration(RegistrationConfig.outdoor(backend="onnxruntime", voxel_size=self.global_voxel,
                                                               max_correspondences=1000, prefilter_top_k=150,
                                                               threads=self.threads))
        self.odometry = LidarOdometry(OdometryConfig(icp=IcpConfig(threads=self.threads)), registration)

    def step(self, sweep) -> np.ndarray:
        result = self.odometry.step(sweep.points, sweep.stamp_ns)
        return result.pose if result.pose is not None else None


class KissRunner:
    def __init__(self, threads: int, deskew: bool = False):
        self.threads, self.deskew = threads, deskew

    def start(self):
        from kiss_icp.config import KISSConfig
        from kiss_icp.kiss_icp import KissICP

        config = KISSConfig()
        config.data.deskew = self.deskew
        config.mapping.voxel_size = config.data.max_range / 100.0  # what its pipeline sets when unset
        config.registration.max_num_threads = self.threads
        self.kiss = KissICP(config)

    def step(self, sweep) -> np.ndarray:
        self.kiss.register_frame(sweep.points, sweep.relative_times)
        return self.kiss.last_pose.copy()


def trajectory_metrics(estimates: list, sweeps) -> dict:
    truths = [invert_rigid(sweeps[0].pose) @ sweep.pose for sweep in sweeps]
    rpe_t, rpe_r = [], []
    for i in range(1, len(sweeps)):
        estimate, truth = invert_rigid(estimates[i - 1]) @ estimates[i], invert_rigid(truths[i - 1]) @ truths[i]
        rpe_t.append(translation_error(estimate, truth))
        rpe_r.append(rotation_error_deg(estimate, truth))
    distance = np.concatenate([[0.0], np.cumsum([np.linalg.norm(truths[i][:3, 3] - truths[i - 1][:3, 3])
                                                 for i in range(1, len(truths))])])
    segments = {}
    for length in SEGMENTS_M:
        errors = []
        for i in range(len(truths)):
            later = np.flatnonzero(distance >= distance[i] + length)
            if not len(later):
                break
            j = later[0]
            estimate, truth = invert_rigid(estimates[i]) @ estimates[j], invert_rigid(truths[i]) @ truths[j]
            errors.append(translation_error(estimate, truth) / (distance[j] - distance[i]))
        segments[f"{length:g}m"] = {"segments": len(errors), "rte_percent": 100.0 * float(np.mean(errors))
                                    if errors else None}
    return {
        "rpe_translation_m": float(np.mean(rpe_t)), "rpe_rotation_deg": float(np.mean(rpe_r)),
        "rpe_translation_max_m": float(np.max(rpe_t)),
        "end_drift_m": translation_error(estimates[-1], truths[-1]),
        "end_drift_deg": rotation_error_deg(estimates[-1], truths[-1]),
        "path_length_m": float(distance[-1]), "rte": segments,
    }


def benchmark_odometry(sweeps, args) -> dict:
    all_threads = os.cpu_count() or 1
    runners = {
        "fovea_1_thread": FoveaRunner(1, args.global_voxel), "kiss_icp_1_thread": KissRunner(1),
        f"fovea_{all_threads}_threads": FoveaRunner(all_threads, args.global_voxel),
        f"kiss_icp_{all_threads}_threads": KissRunner(all_threads),
        "kiss_icp_1_thread_deskew": KissRunner(1, deskew=True),
    }
    rates = {name: [] for name in runners}
    results = {}
    for round_index in range(args.rounds):
        # lockstep: every runner registers scan k before any registers scan k + 1, so a load spike from the
        # other jobs on this shared machine hits all of them alike (whole-sequence runs one after another
        # gave per-run ratios from 0.6x to 2.9x under the same code)
        active = {name: runner for name, runner in runners.items() if not (name.endswith("deskew") and round_index)}
        seconds = {name: 0.0 for name in active}
        poses = {name: [] for name in active}
        for runner in active.values():
            runner.start()
        for sweep in sweeps:
            for name, runner in active.items():
                tic = time.perf_counter()
                pose = runner.step(sweep)
                seconds[name] += time.perf_counter() - tic
                poses[name].append(pose if pose is not None else (poses[name][-1] if poses[name] else np.eye(4)))
        for name, runner in active.items():
            rates[name].append(len(sweeps) / seconds[name])
            results[name] = poses[name]
            extra = f", paths {runner.odometry.counts}" if isinstance(runner, FoveaRunner) else ""
            print(f"[odometry] round {round_index + 1} {name}: {rates[name][-1]:.2f} Hz{extra}", flush=True)
    report = {}
    for name, poses in results.items():
        report[name] = {"rate_hz": float(np.median(rates[name])), "rates_hz": rates[name],
                        **trajectory_metrics(poses, sweeps)}
        if isinstance(runners[name], FoveaRunner):
            report[name]["paths"] = dict(runners[name].odometry.counts)
    report["_poses"] = results
    return report


def plot_trajectories(poses: dict, sweeps, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truths = np.array([(invert_rigid(sweeps[0].pose) @ s.pose)[:3, 3] for s in sweeps])
    figure, (top, side) = plt.subplots(1, 2, figsize=(12, 4.5))
    top.plot(truths[:, 0], truths[:, 1], "k-", lw=3, alpha=0.4, label="ground truth")
    side.plot(truths[:, 0], truths[:, 2], "k-", lw=3, alpha=0.4)
    for name in ("fovea_1_thread", "kiss_icp_1_thread"):
        xyz = np.array([p[:3, 3] for p in poses[name]])
        top.plot(xyz[:, 0], xyz[:, 1], ".-", ms=3, label=name)
        side.plot(xyz[:, 0], xyz[:, 2], ".-", ms=3)
    top.set(xlabel="x (m, first body frame)", ylabel="y (m)", title="PandaSet 002 frames 00-55: top view")
    side.set(xlabel="x (m)", ylabel="z (m)", title="side view")
    top.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ------------------------------------------------------------------------------------- global registration
def uniform_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_product_matches(source_features: np.ndarray, target_features: np.ndarray, chunk: int = 4096):
    """The descriptor matching this project used before faiss (chunked ‖r‖² − 2 q·r + argmin, both
    directions, mutual filter): kept here only as the baseline the faiss path is timed against."""
    def nearest(queries, references):
        references = references.astype(np.float32)
        norms = (references ** 2).sum(axis=1)
        out = np.empty(len(queries), dtype=np.int64)
        for start in range(0, len(queries), chunk):
            block = queries[start:start + chunk].astype(np.float32)
            out[start:start + chunk] = np.argmin(norms[None, :] - 2.0 * block @ references.T, axis=1)
        return out
    forward, backward = nearest(source_features, target_features), nearest(target_features, source_features)
    return np.flatnonzero(backward[forward] == np.arange(len(forward)))


def benchmark_global(sweeps, args) -> dict:
    rng = np.random.default_rng(args.seed)
    config = RegistrationConfig.outdoor(backend="onnxruntime", voxel_size=args.global_voxel,
                                        max_correspondences=args.correspondences, threads=1)
    registration = Registration(config)
    described = {}
    rows = {name: [] for name in ("vbreg", "sc2", "ransac", f"vbreg_top{args.top_k}")}
    match_times = {"faiss": [], "matrix_product": []}
    by_gap = {}
    for gap in GAPS:
        starts = np.linspace(0, len(sweeps) - 1 - gap, args.pairs_per_gap).round().astype(int)
        by_gap[gap] = {name: [] for name in rows}
        for start in starts:
            target_sweep, source_sweep = sweeps[start], sweeps[start + gap]
            rotation = make_transform(uniform_rotation(rng), rng.uniform(-2.0, 2.0, 3))
            truth = invert_rigid(target_sweep.pose) @ source_sweep.pose @ invert_rigid(rotation)
            source_points = apply_transform(rotation, source_sweep.points)
            if start not in described:
                described[start] = registration.prepare(target_sweep.points, "target")
            source = registration.prepare(source_points, "source")
            target = described[start]
            tic = time.perf_counter()
            corr = match_clouds(source, target, max_correspondences=args.correspondences,
                                rng=np.random.default_rng(0), threads=1)
            match_times["faiss"].append(time.perf_counter() - tic)
            if len(match_times["matrix_product"]) < args.matrix_product_pairs:
                tic = time.perf_counter()
                with limited_threads(1):
                    matrix_product_matches(source.features, target.features)
                match_times["matrix_product"].append(time.perf_counter() - tic)
            for name in rows:
                method = "vbreg" if name.startswith("vbreg") else name
                variant = replace(config, method=method, prefilter_top_k=args.top_k if name.startswith("vbreg_top") else 0)
                tic = time.perf_counter()
                with limited_threads(1):
                    solved = registration.solve(corr, variant, {})
                seconds = time.perf_counter() - tic
                re, te = rotation_error_deg(solved.transform, truth), translation_error(solved.transform, truth)
                row = {"gap": gap, "start": int(start), "seconds": seconds, "re_deg": re, "te_m": te,
                       "success": bool(re < SUCCESS_RE_DEG and te < SUCCESS_TE_M),
                       "correspondences": min(len(corr), variant.prefilter_top_k or len(corr)),
                       "inlier_ratio": float(np.mean(np.linalg.norm(apply_transform(truth, corr.source) - corr.target,
                                                                    axis=1) < config.inlier_threshold))}
                rows[name].append(row)
                by_gap[gap][name].append(row)
            print(f"[global] gap {gap:2d} frames {start:2d}->{start + gap:2d}: {len(corr)} correspondences, "
                  f"inlier ratio {rows['vbreg'][-1]['inlier_ratio']:.2f}; " + ", ".join(
                      f"{name} {'ok' if rows[name][-1]['success'] else 'FAIL'} {rows[name][-1]['seconds'] * 1e3:.0f} ms"
                      for name in rows), flush=True)
    summary = {}
    for name, entries in rows.items():
        ok = [e for e in entries if e["success"]]
        summary[name] = {
            "pairs": len(entries), "recall": len(ok) / len(entries),
            "re_deg": float(np.mean([e["re_deg"] for e in ok])) if ok else None,
            "te_m": float(np.mean([e["te_m"] for e in ok])) if ok else None,
            "seconds_median": float(np.median([e["seconds"] for e in entries])),
            "recall_by_gap": {str(g): float(np.mean([e["success"] for e in by_gap[g][name]])) for g in GAPS},
        }
    return {"summary": summary, "pairs": rows, "voxel_m": args.global_voxel,
            "correspondence_cap": args.correspondences,
            "matching_seconds_median": {k: float(np.median(v)) for k, v in match_times.items() if v}}


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--data-root", default=None, help="PandaSet 002 folder (default ../shared/data/tpv/pandaset_002)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved odometry rounds")
    parser.add_argument("--global-voxel", type=float, default=1.0, help="FPFH voxel for global registration, m")
    parser.add_argument("--correspondences", type=int, default=1000)
    parser.add_argument("--top-k", type=int, default=150, help="compatibility-guided subset for VBReg")
    parser.add_argument("--pairs-per-gap", type=int, default=4)
    parser.add_argument("--matrix-product-pairs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-global", action="store_true")
    parser.add_argument("--global-only", action="store_true", help="skip the odometry part (no headline)")
    args = parser.parse_args(argv)
    sweeps = load_sweeps(data_root=args.data_root)
    print(f"PandaSet 002: {len(sweeps)} sweeps, {np.mean([len(s.points) for s in sweeps]):.0f} points each", flush=True)
    result = {"machine": platform.platform(), "cpus": os.cpu_count(), "data": "PandaSet 002 frames 00-55 (real)",
              "load_average_start": os.getloadavg()}
    if args.global_only:
        result["global"] = benchmark_global(sweeps, args)
        (Path(args.out) / "registration_global.json").write_text(json.dumps(result, indent=2) + "\n")
        for name, row in result["global"]["summary"].items():
            print(f"[global] {name}: recall {row['recall']:.2f}, {row['seconds_median']:.3f} s per pair")
        return 0
    odometry = benchmark_odometry(sweeps, args)
    poses = odometry.pop("_poses")
    result["odometry"] = odometry
    result["load_average_after_odometry"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_trajectories(poses, sweeps, out / "registration_trajectory.png")
    print("\n| run | Hz | RPE m | RPE deg | end drift m / deg | RTE 2/4/6/8 m (%) |\n|---|---|---|---|---|---|")
    for name, run in odometry.items():
        rte = " / ".join(f"{seg['rte_percent']:.2f}" if seg["rte_percent"] is not None else "-"
                         for seg in run["rte"].values())
        print(f"| {name} | {run['rate_hz']:.2f} | {run['rpe_translation_m']:.4f} | {run['rpe_rotation_deg']:.4f} | "
              f"{run['end_drift_m']:.3f} / {run['end_drift_deg']:.3f} | {rte} |")
    if not args.skip_global:
        result["global"] = benchmark_global(sweeps, args)
        print("\n| method | recall | RE deg | TE m | s per pair (median) | recall by gap 1/5/10/20/40 |\n|---|---|---|---|---|---|")
        for name, row in result["global"]["summary"].items():
            fmt = lambda v, f: f"{v:{f}}" if v is not None else "-"  # noqa: E731
            print(f"| {name} | {row['recall']:.2f} | {fmt(row['re_deg'], '.2f')} | {fmt(row['te_m'], '.3f')} | "
                  f"{row['seconds_median']:.3f} | {' / '.join(f'{v:.2f}' for v in row['recall_by_gap'].values())} |")
        summary = result["global"]["summary"]
        ransac = summary["ransac"]["seconds_median"]
        for name in ("vbreg", f"vbreg_top{args.top_k}", "sc2"):
            print(f"[ratio] {name} / ransac time per pair = {summary[name]['seconds_median'] / ransac:.2f}, "
                  f"recall {summary[name]['recall']:.2f} vs {summary['ransac']['recall']:.2f}")
        match = result["global"]["matching_seconds_median"]
        if "matrix_product" in match:
            print(f"[ratio] descriptor matching faiss / matrix product = {match['faiss'] / match['matrix_product']:.2f} "
                  f"({match['faiss'] * 1e3:.0f} vs {match['matrix_product'] * 1e3:.0f} ms per pair)")
    result["load_average_end"] = os.getloadavg()
    fovea, kiss = odometry["fovea_1_thread"], odometry["kiss_icp_1_thread"]
    ratio = fovea["rate_hz"] / kiss["rate_hz"]
    result["headline"] = {"fovea_over_kiss_icp_rate_1_thread": ratio}
    (out / "registration.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'registration.json'} (load average {result['load_average_start'][0]:.1f} -> "
          f"{result['load_average_end'][0]:.1f}; shared 2-core machine)")
    print(f"headline: Fovea odometry / KISS-ICP rate, one thread each, PandaSet 002 = {ratio:.2f}x "
          f"({fovea['rate_hz']:.2f} vs {kiss['rate_hz']:.2f} Hz) at RPE {fovea['rpe_translation_m']:.4f} vs "
          f"{kiss['rpe_translation_m']:.4f} m, end drift {fovea['end_drift_m']:.3f} vs {kiss['end_drift_m']:.3f} m")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

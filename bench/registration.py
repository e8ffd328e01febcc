"""Registration benchmark: time per pair for VBReg (torch, onnxruntime) vs RANSAC on the same correspondences,
and scan-to-keyframe odometry rate on a 20k-point scan sequence with the onnxruntime backend.

    python bench/registration.py [--out bench/results]

Data: the real outdoor lidar pair (shared/data/registration/outdoor_lidar_scan_pair). Correspondences: FPFH
at a 0.25 m voxel, one-way nearest neighbours, random subsets of 1k and 5k. Odometry sequence: --frames
scans of 20k points each, drawn at random from the real target scan and seen from poses 0.5 m / 1° apart,
run with the configured odometry settings (config/registration.yaml: random cap of 300 matches, one
onnxruntime thread) and with the earlier settings (onnxruntime's default threads), interleaved in the same run.
Writes registration.json; the last printed line is the headline ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

# The node runs with one OpenMP thread (launch/registration.launch.py): Open3D's FPFH and the network's runtime
# otherwise fight over the cores. Measure what the node runs; must be set before numpy/Open3D load.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch

from fovea_core.registration.evaluate import load_real_pairs
from fovea_core.registration.features import describe, match_clouds
from fovea_core.registration.pipeline import Registration, RegistrationConfig
from fovea_core.registration.rigid import (
    apply_transform, axis_angle_to_matrix, make_transform, rotation_error_deg, translation_error,
)


def time_solver(registration: Registration, corr, method: str, repeats: int) -> tuple[float, float, float]:
    """Median seconds per pair of one solver (network + voting for VBReg) and its last RE/TE."""
    cfg = registration.config
    times, solved = [], None
    for _ in range(repeats):
        tic = time.perf_counter()
        solved = registration.solve(corr, cfg.__class__(**{**cfg.__dict__, "method": method}), {})
        times.append(time.perf_counter() - tic)
    return statistics.median(times), solved


def odometry_sequence(world: np.ndarray, frames: int, points: int, rng) -> tuple[list[np.ndarray], list[np.ndarray]]:
    poses, scans = [], []
    for k in range(frames):
        pose = make_transform(axis_angle_to_matrix(np.array([0, 0, np.radians(1.0 * k)])), np.array([0.5 * k, 0, 0]))
        subset = world[rng.choice(len(world), points, replace=False)]
        scans.append(apply_transform(np.linalg.inv(pose), subset) + rng.normal(size=(points, 3)) * 0.01)
        poses.append(pose)
    return scans, poses


def run_odometry(registration: Registration, scans, keyframe_distance=1.0, keyframe_angle=10.0):
    """The node's odometry loop without ROS: describe each scan once, register to the keyframe. Returns the
    wall time, the trajectory, the failure count and per-frame stage times (seconds)."""
    keyframe, pose_keyframe, trajectory, failures = None, np.eye(4), [], 0
    stages = {name: [] for name in ("describe", "matching", "network", "voting", "fitness")}
    tic = time.perf_counter()
    for points in scans:
        start = time.perf_counter()
        scan = registration.prepare(points, "scan")
        stages["describe"].append(time.perf_counter() - start)
        if keyframe is None:
            keyframe, pose = scan, np.eye(4)
        else:
            result = registration.register_prepared(scan, keyframe)
            timings = result.timings
            stages["matching"].append(timings["features"])
            stages["network"].append(timings.get("network", 0.0))
            stages["voting"].append(timings["solve"] - timings.get("network", 0.0))
            stages["fitness"].append(timings["total"] - timings["features"] - timings["solve"])
            if not result.success:
                failures += 1
                trajectory.append(trajectory[-1])
                continue
            pose = pose_keyframe @ result.transform
            moved = np.linalg.norm(result.transform[:3, 3])
            turned = rotation_error_deg(result.transform, np.eye(4))
            if moved > keyframe_distance or turned > keyframe_angle:
                keyframe, pose_keyframe = scan, pose
        trajectory.append(pose)
    return time.perf_counter() - tic, trajectory, failures, stages


def odometry_settings(args, baseline: bool) -> dict:
    """Registration settings of one odometry run: the configured fast path, or the committed baseline
    (random 300-match subset, onnxruntime's default threads) it is compared against in the same run."""
    if baseline:
        return {"voxel_size": args.odometry_voxel, "max_correspondences": 300, "correspondence_selection": "random",
                "network_threads": 0}
    return {"voxel_size": args.odometry_voxel, "max_correspondences": args.odometry_correspondences,
            "correspondence_selection": args.odometry_selection, "network_threads": args.odometry_network_threads}


def trajectory_errors(trajectory, poses) -> dict:
    """End drift and mean/max pose error over the whole sequence, against the known poses."""
    truths = [np.linalg.inv(poses[0]) @ pose for pose in poses]
    te = [translation_error(est, truth) for est, truth in zip(trajectory, truths)]
    re = [rotation_error_deg(est, truth) for est, truth in zip(trajectory, truths)]
    return {"final_translation_error_m": te[-1], "final_rotation_error_deg": re[-1],
            "mean_translation_error_m": float(np.mean(te)), "max_translation_error_m": float(np.max(te)),
            "mean_rotation_error_deg": float(np.mean(re)), "max_rotation_error_deg": float(np.max(re))}


def benchmark_odometry(scans, poses, args) -> dict:
    """Fast path and baseline, interleaved round by round on the same scans so both see the same load of
    this shared CPU; the rate is the median over rounds, stage times the median over all frames."""
    runs = {}
    for name, baseline in (("baseline", True), ("configured", False)):
        registration = Registration(RegistrationConfig.outdoor(backend="onnxruntime", **odometry_settings(args, baseline)))
        # warm-up: model load and first-call allocation are not part of the rate
        registration.register_prepared(registration.prepare(scans[1]), registration.prepare(scans[0]))
        runs[name] = {"registration": registration, "rates": [], "stages": {}}
    for _ in range(args.odometry_rounds):
        for run in runs.values():
            seconds, trajectory, failures, stages = run_odometry(run["registration"], scans)
            run["rates"].append(len(scans) / seconds)
            run["trajectory"], run["failures"] = trajectory, failures
            for stage, values in stages.items():
                run["stages"].setdefault(stage, []).extend(values)
    report = {}
    for name, run in runs.items():
        report[name] = {
            "frames": len(scans), "points_per_scan": args.scan_points, "backend": "onnxruntime",
            **odometry_settings(args, name == "baseline"), "rounds": args.odometry_rounds,
            "rate_hz": float(np.median(run["rates"])), "rates_hz": run["rates"], "goal_hz": 10.0,
            "failures": run["failures"],
            "stage_ms": {stage: float(np.median(values)) * 1e3 for stage, values in run["stages"].items()},
            **trajectory_errors(run["trajectory"], poses),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results", help="folder for registration.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--scan-points", type=int, default=20_000)
    parser.add_argument("--odometry-correspondences", type=int, default=300, help="cap (config/registration.yaml)")
    parser.add_argument("--odometry-selection", default="random", choices=("random", "ratio"),
                        help="how the cap picks matches (config/registration.yaml)")
    parser.add_argument("--odometry-network-threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--odometry-rounds", type=int, default=3, help="interleaved rounds of baseline and configured")
    parser.add_argument("--odometry-voxel", type=float, default=0.5, help="FPFH voxel for the odometry run, metres")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    pair = next(p for p in load_real_pairs() if p.scale == "outdoor")
    source, target = describe(pair.source, 0.25), describe(pair.target, 0.25)
    all_matches = match_clouds(source, target, mutual=False)
    result = {"machine": platform.platform(), "threads": args.threads, "omp_num_threads": os.environ["OMP_NUM_THREADS"], "data": "outdoor_lidar_scan_pair (real)",
              "available_correspondences": len(all_matches), "per_pair": {}}
    registrations = {backend: Registration(RegistrationConfig.outdoor(backend=backend)) for backend in ("torch", "onnxruntime")}
    for size in [int(s) for s in args.sizes.split(",")]:
        keep = np.sort(rng.choice(len(all_matches), min(size, len(all_matches)), replace=False))
        corr = all_matches.subset(keep)
        row = {"correspondences": len(corr)}
        for name, registration, method in (("vbreg_torch", registrations["torch"], "vbreg"),
                                           ("vbreg_onnxruntime", registrations["onnxruntime"], "vbreg"),
                                           ("ransac", registrations["torch"], "ransac")):
            registration.solve(corr, registration.config, {}) if method == "vbreg" else None  # warm-up
            seconds, solved = time_solver(registration, corr, method, args.repeats)
            row[name] = {"seconds": seconds, "re_deg": rotation_error_deg(solved.transform, pair.transform),
                         "te_m": translation_error(solved.transform, pair.transform)}
            print(f"[pair] {len(corr)} correspondences {name}: {seconds * 1e3:.1f} ms/pair "
                  f"(RE {row[name]['re_deg']:.2f}°, TE {row[name]['te_m']:.3f} m)", flush=True)
        for name in ("vbreg_torch", "vbreg_onnxruntime"):
            row[f"{name}_over_ransac"] = row[name]["seconds"] / row["ransac"]["seconds"]
            print(f"[ratio] {len(corr)}: {name} / ransac time = {row[f'{name}_over_ransac']:.2f}", flush=True)
        result["per_pair"][str(size)] = row

    world = pair.target
    scans, poses = odometry_sequence(world, args.frames, args.scan_points, rng)
    result["load_average_before_odometry"] = os.getloadavg()
    odometry = benchmark_odometry(scans, poses, args)
    result["load_average_after_odometry"] = os.getloadavg()
    result["odometry"], result["odometry_baseline"] = odometry["configured"], odometry["baseline"]
    for name, label in (("baseline", "baseline (default onnxruntime threads)"), ("configured", "configured")):
        run = odometry[name]
        stages = " ".join(f"{stage} {ms:.1f}" for stage, ms in run["stage_ms"].items())
        print(f"[odometry] {label}: {len(scans)} scans x {args.scan_points} points, "
              f"{run['max_correspondences']} {run['correspondence_selection']} matches: {run['rate_hz']:.2f} Hz "
              f"(goal 10 Hz; rounds {', '.join(f'{r:.2f}' for r in run['rates_hz'])}), {run['failures']} failures, "
              f"end drift {run['final_translation_error_m']:.3f} m / {run['final_rotation_error_deg']:.2f}°, "
              f"mean error {run['mean_translation_error_m']:.3f} m / {run['mean_rotation_error_deg']:.2f}°; "
              f"ms per frame: {stages}", flush=True)
    speedup = odometry["configured"]["rate_hz"] / odometry["baseline"]["rate_hz"]
    result["odometry_speedup_over_baseline"] = speedup
    print(f"[ratio] odometry rate configured / baseline = {speedup:.2f} "
          f"(load average {result['load_average_before_odometry'][0]:.1f} -> "
          f"{result['load_average_after_odometry'][0]:.1f})", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "registration.json").write_text(json.dumps(result, indent=2) + "\n")
    headline = result["per_pair"][args.sizes.split(",")[0]]["vbreg_onnxruntime_over_ransac"]
    print(f"wrote {out / 'registration.json'}")
    print(f"headline: VBReg (onnxruntime) / RANSAC time per pair at {args.sizes.split(',')[0]} correspondences "
          f"= {headline:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

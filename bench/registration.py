"""Registration benchmark: time per pair for VBReg (torch, onnxruntime) vs RANSAC on the same correspondences,
and scan-to-keyframe odometry rate on a 20k-point scan sequence with the onnxruntime backend.

    python bench/registration.py [--out bench/results]

Data: the real outdoor lidar pair (shared/data/registration/outdoor_lidar_scan_pair). Correspondences: FPFH
at a 0.25 m voxel, one-way nearest neighbours, random subsets of 1k and 5k. Odometry sequence: --frames
scans of 20k points each, drawn at random from the real target scan and seen from poses 0.5 m / 1° apart.
Writes registration.json; the last printed line is the headline ratio.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
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
    """The node's odometry loop without ROS: describe each scan once, register to the keyframe."""
    keyframe, pose_keyframe, trajectory, failures = None, np.eye(4), [], 0
    tic = time.perf_counter()
    for points in scans:
        scan = registration.prepare(points, "scan")
        if keyframe is None:
            keyframe, pose = scan, np.eye(4)
        else:
            result = registration.register_prepared(scan, keyframe)
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
    return time.perf_counter() - tic, trajectory, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results", help="folder for registration.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--scan-points", type=int, default=20_000)
    parser.add_argument("--odometry-correspondences", type=int, default=300)
    parser.add_argument("--odometry-voxel", type=float, default=0.5, help="FPFH voxel for the odometry run, metres")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    pair = next(p for p in load_real_pairs() if p.scale == "outdoor")
    source, target = describe(pair.source, 0.25), describe(pair.target, 0.25)
    all_matches = match_clouds(source, target, mutual=False)
    result = {"machine": platform.platform(), "threads": args.threads, "data": "outdoor_lidar_scan_pair (real)",
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
    odometry = Registration(RegistrationConfig.outdoor(backend="onnxruntime", voxel_size=args.odometry_voxel,
                                                        max_correspondences=args.odometry_correspondences))
    odometry.prepare(scans[0])  # warm-up: model load and first-call allocation are not part of the rate
    odometry.register_prepared(odometry.prepare(scans[1]), odometry.prepare(scans[0]))
    seconds, trajectory, failures = run_odometry(odometry, scans)
    truth_last = np.linalg.inv(poses[0]) @ poses[-1]
    rate = len(scans) / seconds
    result["odometry"] = {
        "frames": len(scans), "points_per_scan": args.scan_points, "backend": "onnxruntime",
        "max_correspondences": args.odometry_correspondences, "voxel_size": args.odometry_voxel, "seconds": seconds, "rate_hz": rate,
        "goal_hz": 10.0, "failures": failures,
        "final_translation_error_m": translation_error(trajectory[-1], truth_last),
        "final_rotation_error_deg": rotation_error_deg(trajectory[-1], truth_last),
    }
    print(f"[odometry] {len(scans)} scans x {args.scan_points} points: {rate:.2f} Hz (goal 10 Hz), "
          f"{failures} failures, end drift {result['odometry']['final_translation_error_m']:.3f} m / "
          f"{result['odometry']['final_rotation_error_deg']:.2f}°", flush=True)
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

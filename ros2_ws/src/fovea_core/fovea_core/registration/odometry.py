"""Lidar odometry: scan-to-local-map ICP where ICP is right, global registration (VBReg) where it is not.

Each scan goes to the ICP tracker (``icp.ScanToMapIcp``) from the constant-velocity prediction. The tracker's
answer is not trusted, and the scan goes to global registration against the previous scan instead, when

- there is no usable prediction: the time since the last scan exceeds ``max_gap_s`` (a gap, a time jump);
- the ICP result moved far from the prediction (``max_correction``, in KISS-ICP's model-error metres): a
  large unexpected motion, which ICP only tracks when it happens to fall in its basin;
- ICP's fitness collapsed below ``min_fitness`` (start-up included: the second scan has no motion model).

Global registration needs no initial guess; its transform seeds one more ICP pass against the map. When
that fails as well the scan gets no pose ("lost") and the next one tries again. Each step says which path
produced its pose: "start", "icp", "global" or "lost".

``MapLocalizer``: the same two paths against a prior map (no initial pose): global registration against
the map on the first scan, on request and when ICP loses track; ICP against the fixed map in between.

Also here: ``PoseErrorTracker`` (pose error against ground truth, for diagnostics and benchmarks).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fovea_core.geometry.transforms import invert_rigid
from fovea_core.registration.icp import IcpConfig, ScanToMapIcp, model_error
from fovea_core.registration.pipeline import DegenerateInputError, clean_points
from fovea_core.registration.rigid import rotation_error_deg, translation_error

PATHS = ("start", "icp", "global", "lost")
MIN_SCAN_POINTS = 50  # after range crop and voxel grid; fewer cannot anchor six degrees of freedom


@dataclass
class OdometryConfig:
    icp: IcpConfig = field(default_factory=IcpConfig)
    max_gap_s: float = 0.5  # a longer scan-to-scan period is a gap: the prediction is not trusted
    max_correction: float = 2.0  # ICP result vs prediction (model error, metres) beyond which it is checked
    min_fitness: float = 0.5  # ICP fitness below this is a collapse
    global_registration: bool = True  # False: ICP only (a failure is "lost")


@dataclass
class OdometryStep:
    path: str  # start | icp | global | lost
    pose: np.ndarray | None  # odom ← body, None when lost
    reason: str  # why the path was taken ("" for plain ICP)
    fitness: float
    timings: dict[str, float] = field(default_factory=dict)


class LidarOdometry:
    """``step(points, stamp_ns)`` per scan; ``registration`` is a ``pipeline.Registration`` (VBReg by default)
    used for the global path, or None for ICP only."""

    def __init__(self, config: OdometryConfig | None = None, registration=None):
        self.config = config or OdometryConfig()
        self.registration = registration if self.config.global_registration else None
        self.icp = ScanToMapIcp(self.config.icp)
        self.last_stamp_ns: int | None = None
        self.previous_points: np.ndarray | None = None  # last scan with a pose, body frame, for the global path
        self._previous_described = None
        self.counts = {path: 0 for path in PATHS}

    def reset(self) -> None:
        self.icp.reset()
        self.last_stamp_ns, self.previous_points, self._previous_described = None, None, None

    def step(self, points: np.ndarray, stamp_ns: int, relative_times: np.ndarray | None = None) -> OdometryStep:
        points = np.asarray(points)
        if relative_times is not None and points.ndim == 2 and len(relative_times) == len(points):
            relative_times = np.asarray(relative_times, dtype=np.float64)[np.isfinite(points[:, :3]).all(axis=1)]
        else:
            relative_times = None  # deskewing needs one time per point
        points = clean_points(points, "scan")
        if self.last_stamp_ns is not None and stamp_ns <= self.last_stamp_ns:
            raise DegenerateInputError(f"scan stamp {stamp_ns} is not after the previous one ({self.last_stamp_ns})")
        tic = time.perf_counter()
        frame, source = self.icp.preprocess(points, relative_times)
        timings = {"preprocess": time.perf_counter() - tic}
        if source.size() < MIN_SCAN_POINTS:
            cfg = self.config.icp
            raise DegenerateInputError(
                f"scan has {source.size()} points between {cfg.min_range} and {cfg.max_range} m after the "
                f"{cfg.frame_voxel_factor * cfg.voxel_size:g} m voxel grid (minimum {MIN_SCAN_POINTS})")
        if self.icp.empty:
            self.icp.accept(frame, np.eye(4))
            return self._done(OdometryStep("start", self.icp.pose.copy(), "first scan", 1.0, timings), points, stamp_ns)
        gap_s = (stamp_ns - self.last_stamp_ns) * 1e-9
        reason = ""
        if gap_s > self.config.max_gap_s:
            reason = f"gap of {gap_s:.2f} s"
        else:
            tic = time.perf_counter()
            prediction = self.icp.predict()
            result = self.icp.register(source, prediction)
            timings["icp"] = time.perf_counter() - tic
            correction = model_error(invert_rigid(prediction) @ result.pose, self.config.icp.max_range)
            if result.fitness < self.config.min_fitness:
                reason = f"fitness collapse ({result.fitness:.2f} < {self.config.min_fitness})"
                if self.icp.scans == 1:
                    reason = "start-up: " + reason
            elif correction > self.config.max_correction:
                reason = f"large motion (ICP moved {correction:.2f} m from the prediction)"
            else:
                self.icp.accept(frame, result.pose, prediction)
                return self._done(OdometryStep("icp", result.pose, "", result.fitness, timings), points, stamp_ns)
        return self._global(points, frame, source, stamp_ns, reason, timings)

    def _global(self, points, frame, source, stamp_ns, reason, timings) -> OdometryStep:
        if self.registration is None:
            self.icp.forget_motion()
            return self._done(OdometryStep("lost", None, reason + "; no global registration", 0.0, timings),
                              None, stamp_ns)
        tic = time.perf_counter()
        if self._previous_described is None:
            self._previous_described = self.registration.prepare(self.previous_points, "previous scan")
        try:
            result = self.registration.register_prepared(self.registration.prepare(points, "scan"),
                                                         self._previous_described)
        except ValueError as exc:  # DegenerateInputError: not enough geometry in common
            result, failure = None, str(exc)
        timings["global"] = time.perf_counter() - tic
        if result is None or not result.success:
            self.icp.forget_motion()
            failure = failure if result is None else result.message
            return self._done(OdometryStep("lost", None, f"{reason}; global registration failed: {failure}", 0.0,
                                           timings), None, stamp_ns)
        guess = self.icp.pose @ result.transform
        refined = self.icp.register(source, guess)
        pose = refined.pose if refined.fitness >= self.config.min_fitness else guess
        self.icp.accept(frame, pose)
        self.icp.forget_motion()  # the jump says nothing about the next motion
        return self._done(OdometryStep("global", pose, reason, max(refined.fitness, result.fitness), timings),
                          points, stamp_ns)

    def _done(self, step: OdometryStep, points: np.ndarray | None, stamp_ns: int) -> OdometryStep:
        self.counts[step.path] += 1
        self.last_stamp_ns = stamp_ns
        if points is not None:
            self.previous_points, self._previous_described = points, None
        return step


class MapLocalizer:
    """Pose of each scan in a prior map's frame. ``registration`` (VBReg) finds the pose without a guess."""

    def __init__(self, map_points: np.ndarray, registration, config: OdometryConfig | None = None):
        self.config = config or OdometryConfig()
        self.registration = registration
        self.map_described = registration.prepare(map_points, "map")  # raises DegenerateInputError
        self.icp = ScanToMapIcp(self.config.icp)
        self.icp.set_map(clean_points(map_points, "map"))
        self.relocalize_reason = "start-up: no pose yet"
        self.last_stamp_ns: int | None = None
        self.counts = {path: 0 for path in PATHS}

    def request_relocalization(self, reason: str = "requested") -> None:
        self.relocalize_reason = reason

    def step(self, points: np.ndarray, stamp_ns: int) -> OdometryStep:
        points = clean_points(points, "scan")
        frame, source = self.icp.preprocess(points)
        if source.size() < MIN_SCAN_POINTS:
            raise DegenerateInputError(f"scan has {source.size()} points in range after the voxel grid "
                                       f"(minimum {MIN_SCAN_POINTS})")
        gap_s = (stamp_ns - self.last_stamp_ns) * 1e-9 if self.last_stamp_ns is not None else 0.0
        self.last_stamp_ns = stamp_ns
        if not self.relocalize_reason and gap_s > self.config.max_gap_s:
            self.relocalize_reason = f"gap of {gap_s:.2f} s"
        if not self.relocalize_reason:
            prediction = self.icp.predict()
            result = self.icp.register(source, prediction)
            if result.fitness >= self.config.min_fitness:
                self.icp.accept(frame, result.pose, prediction, insert=False)
                return self._count(OdometryStep("icp", result.pose, "", result.fitness))
            self.relocalize_reason = f"tracking lost (fitness {result.fitness:.2f} < {self.config.min_fitness})"
        reason, timings = self.relocalize_reason, {}
        tic = time.perf_counter()
        try:
            found = self.registration.register_prepared(self.registration.prepare(points, "scan"), self.map_described)
        except DegenerateInputError as exc:
            found, failure = None, str(exc)
        timings["global"] = time.perf_counter() - tic
        if found is None or not found.success:
            failure = failure if found is None else found.message
            return self._count(OdometryStep("lost", None, f"{reason}; global registration failed: {failure}", 0.0,
                                            timings))
        refined = self.icp.register(source, found.transform)
        pose = refined.pose if refined.fitness >= self.config.min_fitness else found.transform
        self.icp.accept(frame, pose, insert=False)
        self.icp.forget_motion()
        self.relocalize_reason = ""
        return self._count(OdometryStep("global", pose, reason, max(refined.fitness, found.fitness), timings))

    def _count(self, step: OdometryStep) -> OdometryStep:
        self.counts[step.path] += 1
        return step


@dataclass
class PoseErrorTracker:
    """Error of estimated poses against ground truth poses, both given in their own fixed frames.

    With ``relative_to_first`` (odometry, which starts at the identity) the truth is re-expressed relative to
    the first ground-truth pose seen, so the two trajectories share their origin.
    """

    relative_to_first: bool
    first_truth: np.ndarray | None = None
    last: tuple[float, float] = (0.0, 0.0)
    max_translation_m: float = 0.0
    max_rotation_deg: float = 0.0

    def add(self, estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
        """(translation error m, rotation error deg) of this pose; maxima are kept."""
        if self.first_truth is None:
            self.first_truth = truth
        if self.relative_to_first:
            truth = invert_rigid(self.first_truth) @ truth
        self.last = (translation_error(estimate, truth), rotation_error_deg(estimate, truth))
        self.max_translation_m = max(self.max_translation_m, self.last[0])
        self.max_rotation_deg = max(self.max_rotation_deg, self.last[1])
        return self.last

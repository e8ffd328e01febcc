"""Scan-to-local-map ICP after the KISS-ICP recipe (Vizzo et al., RA-L 2023), with small_gicp as the engine.

The recipe's pieces, each a few lines here: range crop; optional deskewing with per-point time under the
constant-velocity model; the scan on a voxel grid (``frame_voxel_factor`` map voxels; for the k-d tree
variants ICP registers a sparser copy at ``source_voxel_factor``); a voxel map of the last scans around the
robot (VGICP: small_gicp's ``GaussianVoxelMap``, a mean and covariance per voxel; the others its
``IncrementalVoxelMap``, a few points per voxel; voxels unseen for ``map_horizon`` scans are dropped); the
constant-velocity prediction as initial guess; the adaptive correspondence threshold 3σ, σ being the RMS of
past prediction errors.
small_gicp runs the nearest-neighbour search (its k-d tree) and the Gauss-Newton solve in C++.

Every library call gets ``threads`` explicitly (small_gicp defaults to one thread, but say it anyway).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import small_gicp

from fovea_core.geometry.transforms import invert_rigid

REGISTRATION_TYPES = ("VGICP", "GICP", "PLANE_ICP", "ICP")


@dataclass
class IcpConfig:
    voxel_size: float = 1.0  # map voxel, metres (KISS-ICP: max_range / 100)
    max_range: float = 100.0
    min_range: float = 1.0  # returns off the vehicle itself
    # VGICP: the map is small_gicp's GaussianVoxelMap (a mean and covariance per voxel, updated as scans are
    # inserted), so nothing about the map is recomputed per scan; the others rebuild a k-d tree over the map
    # points every scan (and normals / covariances for PLANE_ICP / GICP).
    registration_type: str = "VGICP"
    # the scan is registered and enters the map at this many map voxels. KISS-ICP takes 0.5; 0.75 made a scan
    # 0.65-0.69x as expensive (covariances and VGICP scale with its points) at RPE 4.2 instead of 4.0 mm on PandaSet
    # 002 (interleaved runs), which a 10 Hz node needs on a shared 2-core CPU
    frame_voxel_factor: float = 0.75
    source_voxel_factor: float = 1.5  # the scan is registered at this many map voxels (KISS-ICP: 1.5)
    map_horizon: int = 100  # scans a voxel survives without being seen again
    initial_threshold: float = 2.0  # σ before any motion has been observed, metres
    max_correspondence: float = 1.5  # cap on the 3σ correspondence distance, metres (see ``register``)
    min_motion: float = 0.1  # prediction errors below this (metres) do not update σ (standing still)
    max_iterations: int = 20
    # Convergence: small_gicp stops once an update is below 0.1° / 1 mm by default. That is coarser than a
    # 10 Hz scan needs: the unfinished part of the correction then feeds the constant-velocity prediction and
    # grows scan by scan (measured: yaw error 0.01° → 11° within 15 PandaSet scans). KISS-ICP's 1e-4 instead.
    rotation_epsilon: float = 1e-4  # radians
    translation_epsilon: float = 1e-4  # metres
    neighbors: int = 10  # normals / covariances from this many map neighbours
    deskew: bool = False  # needs per-point time; off for data already motion-compensated (PandaSet)
    threads: int = 1

    def __post_init__(self) -> None:
        if self.registration_type not in REGISTRATION_TYPES:
            raise ValueError(f"registration_type must be one of {REGISTRATION_TYPES}, got {self.registration_type!r}")
        if not (0 <= self.min_range < self.max_range):
            raise ValueError(f"need 0 <= min_range < max_range, got {self.min_range} / {self.max_range}")
        if self.voxel_size <= 0 or self.threads < 1:
            raise ValueError("voxel_size must be positive and threads at least 1")


@dataclass
class IcpResult:
    pose: np.ndarray  # odom ← body of this scan
    prediction: np.ndarray  # the constant-velocity guess it started from
    fitness: float  # fraction of registered points with a map point within the correspondence threshold
    threshold: float  # the correspondence distance used (3σ, capped; VGICP: + half a voxel), metres
    iterations: int
    converged: bool
    points: int  # points that took part in the registration


def model_error(deviation: np.ndarray, max_range: float) -> float:
    """How far a point at max range moves under ``deviation``: translation + the rotation's chord."""
    angle = np.arccos(np.clip((np.trace(deviation[:3, :3]) - 1.0) / 2.0, -1.0, 1.0))
    return float(np.linalg.norm(deviation[:3, 3]) + 2.0 * max_range * np.sin(angle / 2.0))


@dataclass
class AdaptiveThreshold:
    """σ = RMS of the prediction errors seen while moving (KISS-ICP §III-C)."""

    initial: float
    min_motion: float
    max_range: float
    _sum_squares: float = 0.0
    _samples: int = 0

    @property
    def sigma(self) -> float:
        return float(np.sqrt(self._sum_squares / self._samples)) if self._samples else self.initial

    def update(self, deviation: np.ndarray) -> None:
        error = model_error(deviation, self.max_range)
        if error > self.min_motion:
            self._sum_squares += error * error
            self._samples += 1


def deskew(points: np.ndarray, relative_times: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Move each point to where it would be seen at the end of the sweep (relative time 1), assuming the
    last inter-scan motion ``delta`` spread uniformly over the sweep (rotation by its axis-angle fraction)."""
    from scipy.spatial.transform import Rotation

    rotation_vector = Rotation.from_matrix(delta[:3, :3]).as_rotvec()
    fraction = (np.asarray(relative_times, dtype=np.float64) - 1.0)[:, None]  # in [-1, 0]
    rotations = Rotation.from_rotvec(fraction * rotation_vector[None, :])
    return rotations.apply(points) + fraction * delta[:3, 3][None, :]


def orthonormalized(transform: np.ndarray) -> np.ndarray:
    """The nearest rigid transform (rotation projected onto SO(3) by SVD). Poses are chained scan after
    scan (pose · delta, delta from the inverse): a rotation that is not exactly orthonormal makes the
    transpose-inverse wrong and the error multiplies each scan (seen: 1e-16 to 1e8 within 50 scans)."""
    u, _, vt = np.linalg.svd(transform[:3, :3])
    out = np.array(transform, dtype=np.float64, copy=True)
    out[:3, :3] = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    out[3] = (0.0, 0.0, 0.0, 1.0)
    return out


def crop_range(points: np.ndarray, min_range: float, max_range: float) -> np.ndarray:
    """Boolean mask of points with min_range < |p| < max_range."""
    distance = np.linalg.norm(points, axis=1)
    return (distance > min_range) & (distance < max_range)


@dataclass
class ScanToMapIcp:
    """State of the ICP tracker: the local map (odom frame), the last pose and the last motion."""

    config: IcpConfig = field(default_factory=IcpConfig)
    pose: np.ndarray = field(default_factory=lambda: np.eye(4))
    delta: np.ndarray = field(default_factory=lambda: np.eye(4))  # last inter-scan motion (prev ← current)
    scans: int = 0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self, pose: np.ndarray | None = None) -> None:
        cfg = self.config
        voxel_map = small_gicp.GaussianVoxelMap if cfg.registration_type == "VGICP" else small_gicp.IncrementalVoxelMap
        self.map = voxel_map(cfg.voxel_size)
        self.map.set_lru(cfg.map_horizon, 10)
        self.threshold = AdaptiveThreshold(cfg.initial_threshold, cfg.min_motion, cfg.max_range)
        self.pose = np.eye(4) if pose is None else orthonormalized(pose)
        self.delta = np.eye(4)
        self.scans = 0

    @property
    def empty(self) -> bool:
        return self.scans == 0

    def preprocess(self, points: np.ndarray, relative_times: np.ndarray | None = None):
        """(frame for the map, sparser cloud to register) as small_gicp clouds, body frame."""
        cfg = self.config
        keep = crop_range(points, cfg.min_range, cfg.max_range)
        points = points[keep]
        if cfg.deskew and relative_times is not None:
            points = deskew(points, np.asarray(relative_times)[keep], self.delta)
        frame = small_gicp.voxelgrid_sampling(small_gicp.PointCloud(points), cfg.frame_voxel_factor * cfg.voxel_size,
                                              cfg.threads)
        if cfg.registration_type == "VGICP":  # one cloud with covariances serves registration and the map
            small_gicp.estimate_covariances(frame, small_gicp.KdTree(frame, cfg.threads), cfg.neighbors, cfg.threads)
            return frame, frame
        source = small_gicp.voxelgrid_sampling(frame, cfg.source_voxel_factor * cfg.voxel_size, cfg.threads)
        return frame, source

    def predict(self, scale: float = 1.0) -> np.ndarray:
        """Constant-velocity guess; ``scale`` stretches the last motion (a scan period longer than usual)."""
        if scale == 1.0:
            return self.pose @ self.delta
        from scipy.spatial.transform import Rotation

        rotation = Rotation.from_rotvec(scale * Rotation.from_matrix(self.delta[:3, :3]).as_rotvec()).as_matrix()
        stretched = np.eye(4)
        stretched[:3, :3], stretched[:3, 3] = rotation, scale * self.delta[:3, 3]
        return self.pose @ stretched

    def register(self, source, initial_guess: np.ndarray) -> IcpResult:
        """Align ``source`` (body frame) to the local map from ``initial_guess``; the state is not changed."""
        cfg = self.config
        # small_gicp has no robust kernel in Python (KISS-ICP's Geman-McClure), so the correspondence
        # distance is the only guard against wrong pairs; uncapped, a few bad scans raise σ, which admits more
        # wrong pairs (seen here: divergence within 40 PandaSet scans at 3σ = 6 m). Beyond the cap, a wrong
        # prediction shows up as a fitness collapse and the global registration takes over.
        distance = min(3.0 * self.threshold.sigma, cfg.max_correspondence)
        if cfg.registration_type == "VGICP":
            # VGICP pairs a point with the Gaussian of the voxel it falls in, and small_gicp gates on the distance
            # to that voxel's mean, not to the nearest surface point (KISS-ICP's 3σ): points of a surface patch
            # lie up to about half a voxel from its mean. Without this allowance, once σ settled (3σ ≈ 0.3 m from
            # PandaSet 002 frame 27 on) most correct pairs fell outside the gate at voxels of 1.2 m and more, and
            # the fitness collapse lost track on half the sequence.
            distance += 0.5 * cfg.voxel_size
            result = small_gicp.align(self.map, source, initial_guess, max_correspondence_distance=distance,
                                      num_threads=cfg.threads, max_iterations=cfg.max_iterations,
                                      rotation_epsilon=cfg.rotation_epsilon, translation_epsilon=cfg.translation_epsilon)
            pose = np.array(result.T_target_source, dtype=np.float64, copy=True)
            fitness = result.num_inliers / max(source.size(), 1)  # points that found a map voxel
            return IcpResult(pose, initial_guess, float(fitness), distance, int(result.iterations),
                             bool(result.converged), source.size())
        # keep the array referenced for the whole call: the cloud may view its memory rather than copy it
        map_xyz = np.ascontiguousarray(self.map.voxel_points()[:, :3])
        map_points = small_gicp.PointCloud(map_xyz)
        tree = small_gicp.KdTree(map_points, cfg.threads)
        if cfg.registration_type == "PLANE_ICP":
            small_gicp.estimate_normals(map_points, tree, cfg.neighbors, cfg.threads)
        elif cfg.registration_type == "GICP":
            small_gicp.estimate_normals_covariances(map_points, tree, cfg.neighbors, cfg.threads)
            small_gicp.estimate_covariances(source, None, cfg.neighbors, cfg.threads)
        result = small_gicp.align(map_points, source, tree, initial_guess, registration_type=cfg.registration_type,
                                  max_correspondence_distance=distance, num_threads=cfg.threads,
                                  max_iterations=cfg.max_iterations, rotation_epsilon=cfg.rotation_epsilon,
                                  translation_epsilon=cfg.translation_epsilon)
        # copy: the binding's matrix is a view into the result object
        pose = np.array(result.T_target_source, dtype=np.float64, copy=True)
        registered = source.size()
        moved = source.points()[:, :3] @ pose[:3, :3].T + pose[:3, 3]
        _, distances = tree.batch_nearest_neighbor_search(moved, cfg.threads)
        fitness = float(np.mean(np.sqrt(np.asarray(distances)) < distance)) if registered else 0.0
        return IcpResult(pose, initial_guess, fitness, distance, int(result.iterations), bool(result.converged),
                         registered)

    def set_map(self, points: np.ndarray) -> None:
        """Replace the local map by a fixed prior map (localization): its voxels never expire and
        ``accept(..., insert=False)`` keeps scans out of it."""
        cfg = self.config
        self.reset()
        self.map.set_lru(2**31 - 1, 2**31 - 1)
        cloud = small_gicp.voxelgrid_sampling(small_gicp.PointCloud(np.asarray(points, dtype=np.float64)),
                                              cfg.frame_voxel_factor * cfg.voxel_size, cfg.threads)
        if cfg.registration_type == "VGICP":
            small_gicp.estimate_covariances(cloud, small_gicp.KdTree(cloud, cfg.threads), cfg.neighbors, cfg.threads)
        self.map.insert(cloud)

    def accept(self, frame, pose: np.ndarray, prediction: np.ndarray | None = None, insert: bool = True) -> None:
        """Make ``pose`` the current one: update σ (from the prediction error), the motion model and the map."""
        if prediction is not None:
            self.threshold.update(invert_rigid(prediction) @ pose)
        pose = orthonormalized(pose)
        self.delta = orthonormalized(invert_rigid(self.pose) @ pose) if self.scans else np.eye(4)
        self.pose = pose
        if insert:
            self.map.insert(frame, self.pose)
        self.scans += 1

    def forget_motion(self) -> None:
        """After a jump the last motion says nothing about the next one."""
        self.delta = np.eye(4)


__all__ = ["IcpConfig", "IcpResult", "ScanToMapIcp", "AdaptiveThreshold", "deskew", "model_error",
           "REGISTRATION_TYPES"]

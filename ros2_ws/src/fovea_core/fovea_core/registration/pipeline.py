"""One entry point: ``Registration(config).register(source_xyz, target_xyz) -> RegistrationResult``.

source/target → validate → voxel + FPFH + mutual NN → score (VBReg network | SC2 | RANSAC) → voting search
→ (optional ICP) → fitness / inliers → success flag against the configured confidence thresholds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import open3d as o3d

from .baselines import solve_ransac, solve_sc2
from .compatibility import compatibility_top_k, spatial_compatibility_rows
from .features import SELECTIONS, Correspondences, DescribedCloud, describe, match_clouds, to_open3d
from .model_io import DEFAULT_ITERATIONS, DEFAULT_MODEL_DIR, load_scorer, normalize_correspondences
from .rigid import apply_transform
from fovea_core.threads import limited_threads
from .voting import VotingConfig, VotingResult, vote_and_fit

METHODS = ("vbreg", "sc2", "ransac")


class DegenerateInputError(ValueError):
    """The clouds cannot constrain a rigid transform (too few points, NaNs only, one point, a plane...)."""


@dataclass
class RegistrationConfig:
    method: str = "vbreg"
    voxel_size: float = 0.05  # metres; FPFH radii are 2x / 5x this
    inlier_threshold: float = 0.10  # τ, metres (0.10 indoor RGB-D, 1.2 outdoor lidar)
    mutual: bool = True
    max_correspondences: int = 1000  # cap on the FPFH matches (a random subset beyond it)
    prefilter_top_k: int = 0  # VBReg only: score just the k most compatible of them (0 = all; see compatibility_top_k)
    correspondence_selection: str = "random"  # beyond the cap: "random" subset | "ratio" (most distinctive)
    fpfh_max_neighbors: int = 100  # histogram neighbours per point (within 5 voxels); fewer = faster FPFH
    min_points: int = 50  # per cloud after dropping non-finite points and downsampling
    min_correspondences: int = 10
    flatness_limit: float = 1e-4  # λ_min/λ_max of the point covariance below this → feature-less
    # voting
    seed_ratio: float = 0.1
    min_seeds: int = 8
    neighbors: int = 40
    wilson_z: float = 1.96
    max_hypotheses: int = 32
    refine_iterations: int = 10
    # network
    backend: str = "torch"  # torch | onnxruntime | tensorrt
    network_threads: int = 0  # onnxruntime intra-op threads; 0 = ``threads``
    network_iterations: int = DEFAULT_ITERATIONS  # the first L of the trained iterations (an ONNX file holds its L)
    threads: int = 1  # every other library call: faiss matching, k-d trees, Open3D (FPFH, RANSAC, ICP), BLAS
    model_dir: str = str(DEFAULT_MODEL_DIR)
    onnx_path: str = ""
    # RANSAC baseline
    ransac_max_iterations: int = 100_000
    ransac_confidence: float = 0.999
    # optional final polish
    icp: bool = False
    icp_max_iterations: int = 30
    icp_max_distance: float = 0.0  # metres; 0 → τ / 2 (a tighter gate than τ keeps ICP off wrong surfaces)
    # success thresholds: below any of these the result is reported as a failure
    min_inlier_count: int = 10
    min_inlier_ratio: float = 0.0
    min_fitness: float = 0.05  # fraction of downsampled source points with a target point within τ
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.correspondence_selection not in SELECTIONS:
            raise ValueError(f"correspondence_selection must be one of {SELECTIONS}, "
                             f"got {self.correspondence_selection!r}")
        for name in ("voxel_size", "inlier_threshold"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def indoor(cls, **overrides) -> "RegistrationConfig":
        """RGB-D fragments (3DMatch scale)."""
        return cls(**{"voxel_size": 0.05, "inlier_threshold": 0.10, **overrides})

    @classmethod
    def outdoor(cls, **overrides) -> "RegistrationConfig":
        """Rotating lidar scans (KITTI scale)."""
        return cls(**{"voxel_size": 0.5, "inlier_threshold": 1.2, **overrides})

    def voting(self) -> VotingConfig:
        return VotingConfig(
            inlier_threshold=self.inlier_threshold,
            seed_ratio=self.seed_ratio,
            min_seeds=self.min_seeds,
            neighbors=self.neighbors,
            wilson_z=self.wilson_z,
            max_hypotheses=self.max_hypotheses,
            refine_iterations=self.refine_iterations,
        )


@dataclass
class RegistrationResult:
    transform: np.ndarray  # 4x4, maps source into the target frame
    fitness: float  # overlap: fraction of downsampled source points within τ of the target after alignment
    inlier_count: int  # correspondences with residual < τ
    inlier_ratio: float  # inlier_count / number of correspondences
    success: bool
    message: str
    method: str
    num_correspondences: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage + "total"
    inlier_mask: np.ndarray | None = None  # (num_correspondences,) bool
    correspondences: Correspondences | None = None


def clean_points(points: np.ndarray, name: str) -> np.ndarray:
    """(N, 3+) array → finite (M, 3) float64; raises DegenerateInputError with the reason otherwise."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise DegenerateInputError(f"{name} cloud must be an (N, 3) array, got shape {points.shape}")
    points = points[:, :3].astype(np.float64)
    finite = np.isfinite(points).all(axis=1)
    if not finite.any():
        raise DegenerateInputError(f"{name} cloud has no finite points ({len(points)} given, all NaN/inf)")
    return points[finite]


class Registration:
    """Pairwise registration with a selectable method; loads the network lazily on first VBReg use."""

    def __init__(self, config: RegistrationConfig | None = None, scorer=None):
        self.config = config or RegistrationConfig()
        self._scorer = scorer

    @property
    def scorer(self):
        if self._scorer is None:
            self._scorer = load_scorer(self.config.backend, self.config.model_dir, self.config.onnx_path or None,
                                       threads=self.config.network_threads or self.config.threads,
                                       parameter="onnx_path" if self.config.onnx_path else "model_dir",
                                       iterations=self.config.network_iterations)
        return self._scorer

    def _check_cloud(self, points: np.ndarray, name: str) -> None:
        cfg = self.config
        if len(points) < cfg.min_points:
            raise DegenerateInputError(
                f"{name} cloud has {len(points)} points after voxel downsampling at {cfg.voxel_size} m "
                f"(minimum {cfg.min_points}): too few, or all points nearly identical"
            )
        eigenvalues = np.linalg.eigvalsh(np.cov(points.T))
        if eigenvalues[-1] <= 0 or eigenvalues[0] / eigenvalues[-1] < cfg.flatness_limit:
            raise DegenerateInputError(
                f"{name} cloud is feature-less (planar or linear: covariance eigenvalues "
                f"{np.round(eigenvalues, 6).tolist()}); a rigid transform is not constrained"
            )

    def prepare(self, points: np.ndarray, name: str = "cloud") -> DescribedCloud:
        """Validate, downsample and describe one cloud (reuse the result for a keyframe or a map)."""
        with limited_threads(self.config.threads):
            described = describe(clean_points(points, name), self.config.voxel_size, self.config.fpfh_max_neighbors)
        self._check_cloud(described.points, name)
        if not np.any(described.features):
            raise DegenerateInputError(f"{name} cloud has no usable FPFH descriptors (no neighbours within "
                                       f"{5 * self.config.voxel_size:.2f} m)")
        return described

    def register(self, source: np.ndarray, target: np.ndarray, method: str | None = None) -> RegistrationResult:
        """Register two (N, 3) arrays: the transform maps ``source`` into ``target``'s frame."""
        start = time.perf_counter()
        source_described = self.prepare(source, "source")
        target_described = self.prepare(target, "target")
        return self.register_prepared(source_described, target_described, method, start)

    def register_prepared(
        self, source: DescribedCloud, target: DescribedCloud, method: str | None = None, start: float | None = None
    ) -> RegistrationResult:
        cfg = self.config if method is None else replace(self.config, method=method)
        start = time.perf_counter() if start is None else start
        timings: dict[str, float] = {}
        correspondences = match_clouds(source, target, cfg.mutual, max_correspondences=cfg.max_correspondences,
                                       rng=np.random.default_rng(cfg.seed), selection=cfg.correspondence_selection,
                                       threads=cfg.threads)
        timings["features"] = time.perf_counter() - start
        if len(correspondences) < cfg.min_correspondences:
            raise DegenerateInputError(
                f"only {len(correspondences)} FPFH correspondences (minimum {cfg.min_correspondences}): "
                "the clouds have too little distinctive geometry in common"
            )
        with limited_threads(cfg.threads):
            solved = self.solve(correspondences, cfg, timings)
        transform = solved.transform
        if cfg.icp:
            tic = time.perf_counter()
            with limited_threads(cfg.threads):
                transform = np.asarray(o3d.pipelines.registration.registration_icp(
                    to_open3d(source.points), to_open3d(target.points),
                    cfg.icp_max_distance or cfg.inlier_threshold / 2.0, transform,
                    o3d.pipelines.registration.TransformationEstimationPointToPoint(),
                    o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=cfg.icp_max_iterations),
                ).transformation).copy()
            timings["icp"] = time.perf_counter() - tic
        residuals = np.linalg.norm(apply_transform(transform, correspondences.source) - correspondences.target, axis=1)
        inlier_mask = residuals < cfg.inlier_threshold
        distances, _ = target.tree.query(apply_transform(transform, source.points), k=1, workers=cfg.threads)
        fitness = float(np.mean(distances < cfg.inlier_threshold))
        inlier_count = int(inlier_mask.sum())
        inlier_ratio = inlier_count / len(correspondences)
        timings["total"] = time.perf_counter() - start
        failures = []
        if inlier_count < cfg.min_inlier_count:
            failures.append(f"inlier count {inlier_count} < {cfg.min_inlier_count}")
        if inlier_ratio < cfg.min_inlier_ratio:
            failures.append(f"inlier ratio {inlier_ratio:.3f} < {cfg.min_inlier_ratio}")
        if fitness < cfg.min_fitness:
            failures.append(f"fitness {fitness:.3f} < {cfg.min_fitness}")
        message = "ok" if not failures else "below confidence thresholds: " + "; ".join(failures)
        return RegistrationResult(
            transform=transform, fitness=fitness, inlier_count=inlier_count, inlier_ratio=inlier_ratio,
            success=not failures, message=message, method=cfg.method, num_correspondences=len(correspondences),
            timings=timings, inlier_mask=inlier_mask, correspondences=correspondences,
        )

    def solve(self, correspondences: Correspondences, cfg: RegistrationConfig, timings: dict) -> VotingResult:
        """Transform from correspondences alone (also used directly by evaluation and the benchmark)."""
        tic = time.perf_counter()
        if cfg.method == "vbreg" and cfg.prefilter_top_k and len(correspondences) > cfg.prefilter_top_k:
            correspondences = correspondences.subset(compatibility_top_k(
                correspondences.source, correspondences.target, cfg.inlier_threshold, cfg.prefilter_top_k))
        source, target = correspondences.source, correspondences.target
        if cfg.method == "ransac":
            result = solve_ransac(source, target, cfg.inlier_threshold, cfg.ransac_max_iterations,
                                  cfg.ransac_confidence, cfg.seed)
        elif cfg.method == "sc2":
            result = solve_sc2(source, target, cfg.voting())
        else:
            result = self.solve_vbreg(source, target, cfg, timings)
        timings["solve"] = time.perf_counter() - tic
        return result

    def solve_vbreg(self, source: np.ndarray, target: np.ndarray, cfg: RegistrationConfig, timings: dict) -> VotingResult:
        tic = time.perf_counter()
        inputs = normalize_correspondences(np.hstack([source, target]), cfg.inlier_threshold)[None]
        outputs = self.scorer.run({"correspondences": inputs})
        logits = np.asarray(outputs["inlier_logits"])[0]  # (L, N)
        features = np.asarray(outputs["features"])[0]  # (N, D)
        timings["network"] = time.perf_counter() - tic
        confidence = 1.0 / (1.0 + np.exp(-logits.mean(axis=0)))
        # Hypotheses grow along pairs that are both geometrically compatible (β) and close in the learned
        # feature space (as PointDSC's feature-space neighbourhoods), favouring confident members.
        def compatibility_rows(seeds: np.ndarray) -> np.ndarray:
            beta = spatial_compatibility_rows(source, target, seeds, cfg.inlier_threshold)
            similarity = np.clip(features[seeds] @ features.T, 0.0, None)
            return beta * similarity * confidence[None, :]

        return vote_and_fit(source, target, confidence, compatibility_rows, cfg.voting(), iteration_votes=logits > 0)

"""Samples: simulated (cached ``.npz`` under ``data/occflow/``, gitignored) and real (Argoverse 2).

Simulated scenes (``traffic.simulate`` + ``lidar_sim``): training maps are procedural (2 of 3 scenes) or
the real AV2 *Austin* lane graph of the forecasting scenario (1 of 3); the held-out scenes use procedural
maps with other seeds and the real AV2 *Pittsburgh* lane graph of the sensor log, which training never
sees, so the real-log evaluation is on a map the model was not trained on. Each 6 s scene gives two
samples (t = 0 at 0.5 s and 2.5 s).

Real samples (Argoverse 2, CC BY-NC-SA 4.0; ../shared/data/occflow/av2/PROVENANCE.md):
- ``real_lidar``: the log's two real sweeps (t = 0 at the second; the first motion-compensated into it;
  the 3 older sweeps masked), its map, and the tracked boxes' next 3 s as ground truth.
- ``log_boxes``: every 5th annotation frame of the log with 0.5 s of history and 3 s of future: no lidar
  (all sweeps masked), the tracked-object history from the annotations (a robot with a tracker has it).
- ``scenario``: the forecasting scenario the same way, every 5th step with 3 s of future.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .agents import AgentTracks
from .config import OccFlowConfig
from .lidar_sim import LidarRig, cast_sweep
from .sample import Sample, build_sample

DATA_ROOT = Path("data/occflow")
TRAIN_SEEDS = range(0, 240)
HELDOUT_SEEDS = range(50_000, 50_020)
SCENE_FRAMES = 60
SAMPLE_CURRENT_FRAMES = (5, 25)
EGO_HEIGHT = 0.4   # base_link above the road (AV2's ego origin is ~0.4 m up)


def history_frames(cfg: OccFlowConfig) -> int:
    return int(round(cfg.flow_dt / cfg.sweep_period))


def future_frames(cfg: OccFlowConfig) -> int:
    return int(round(cfg.horizon / cfg.sweep_period))


def cache_dir(cfg: OccFlowConfig, root: Path = DATA_ROOT) -> Path:
    return Path(root) / f"{cfg.nx}x{cfg.ny}_{cfg.resolution:g}m_{cfg.sweeps}x{cfg.height_bins}"


def _ego_from_world(x: float, y: float, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -s], [s, c]])
    T = np.eye(3)
    T[:2, :2], T[:2, 2] = R.T, -R.T @ np.array([x, y])
    return T


def _window(tracks: AgentTracks, current: int, past: int, future: int, T: np.ndarray, yaw0: float) -> AgentTracks:
    f = np.arange(current - past, current + future + 1)
    xy = tracks.xy[f] @ T[:2, :2].T + T[:2, 2]
    return AgentTracks(xy, tracks.yaw[f] - yaw0, tracks.valid[f], tracks.size, tracks.cls, past, tracks.period)


def scene_samples(seed: int, cfg: OccFlowConfig, heldout: bool, rig: LidarRig = LidarRig()) -> list[Sample]:
    """The samples of one simulated scene."""
    from . import av2_reader, procedural_map, traffic

    rng = np.random.default_rng(seed)
    if seed % 3 == 0:
        real = av2_reader.Av2SensorLog.open() if heldout else av2_reader.Av2Scenario.open()
        vmap, source = real.map_city, ("sim/av2_pittsburgh_map" if heldout else "sim/av2_austin_map")
    else:
        vmap, source = procedural_map.random_map(rng), "sim/procedural_map"
    scene = traffic.simulate(vmap, rng, frames=SCENE_FRAMES)
    tracks, past, future = scene.tracks, history_frames(cfg), future_frames(cfg)
    samples = []
    for k0 in SAMPLE_CURRENT_FRAMES:
        ex, ey, eyaw = scene.ego[k0]
        T = _ego_from_world(ex, ey, eyaw)
        sweeps = []
        for k in range(k0 - cfg.sweeps + 1, k0 + 1):
            live = tracks.valid[k]
            boxes = (np.concatenate([tracks.xy[k][live], scene.static[0]]),
                     np.concatenate([tracks.yaw[k][live], scene.static[1]]),
                     np.concatenate([tracks.size[live], scene.static[2]]),
                     np.full(int(live.sum()) + len(scene.static[0]), scene.ground_z),
                     np.concatenate([scene.heights[live], scene.static[3]]))
            world = cast_sweep(rig, tuple(scene.ego[k]), EGO_HEIGHT - scene.ground_z, boxes, scene.ground_z, rng)
            local = np.concatenate([world[:, :2] @ T[:2, :2].T + T[:2, 2], world[:, 2:] - EGO_HEIGHT], 1)
            sweeps.append(local)
        window = _window(tracks, k0, past, future, T, eyaw)
        near = (np.abs(window.xy) < max(cfg.x_range[1], cfg.y_range[1]) + 20).all(-1).any(0)
        samples.append(build_sample(cfg, sweeps, window.select(near), vmap.transformed(T), source=source,
                                    stamp_ns=int(seed * 1e9 + k0 * 1e8)))
    return samples


def generate(out_dir: Path, seeds, cfg: OccFlowConfig, heldout: bool, log=print) -> list[Path]:
    """Simulate every missing scene of ``seeds`` into ``out_dir`` (cached) and return the sample paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, start = [], time.time()
    seeds = list(seeds)
    for i, seed in enumerate(seeds):
        names = [out_dir / f"scene_{seed:06d}_{j}.npz" for j in range(len(SAMPLE_CURRENT_FRAMES))]
        if not all(p.exists() for p in names):
            for p, s in zip(names, scene_samples(seed, cfg, heldout)):
                s.save(p)
            if (i + 1) % 10 == 0 or i + 1 == len(seeds):
                log(f"simulated scene {i + 1}/{len(seeds)} ({time.time() - start:.0f} s)", flush=True)
        paths.extend(names)
    return paths


# ---- real Argoverse 2 samples ------------------------------------------------------------------------
def real_lidar_sample(cfg: OccFlowConfig, log_dir: Path | None = None) -> Sample:
    from .av2_reader import Av2SensorLog

    log = Av2SensorLog.open(log_dir)
    t0 = log.sweep_stamps[-1]
    sweeps = [log.sweep_in(s, t0) for s in log.sweep_stamps]
    tracks = log.tracks(t0, history_frames(cfg), future_frames(cfg))
    return build_sample(cfg, sweeps, tracks, log.map_in(t0), source="av2/real_lidar", stamp_ns=t0)


def real_box_samples(cfg: OccFlowConfig, stride: int = 5, log_dir: Path | None = None) -> list[Sample]:
    from .av2_reader import Av2SensorLog

    log = Av2SensorLog.open(log_dir)
    past, future = history_frames(cfg), future_frames(cfg)
    out = []
    for k in range(max(past, cfg.sweeps - 1), len(log.box_stamps) - future, stride):
        t0 = int(log.box_stamps[k])
        out.append(build_sample(cfg, [], log.tracks(t0, past, future), log.map_in(t0),
                                source="av2/log_boxes", stamp_ns=t0))
    return out


def scenario_samples(cfg: OccFlowConfig, stride: int = 5, scenario_dir: Path | None = None) -> list[Sample]:
    from .av2_reader import Av2Scenario

    sc = Av2Scenario.open(scenario_dir)
    past, future = history_frames(cfg), future_frames(cfg)
    out = []
    for step in range(max(past, cfg.sweeps - 1), sc.xy.shape[0] - future, stride):
        out.append(build_sample(cfg, [], sc.tracks(step, past, future), sc.map_in(step),
                                source="av2/scenario", stamp_ns=step))
    return out


# ---- training queries -----------------------------------------------------------------------------------
# Near-agent queries pick the agent class-balanced (vehicles count twice: they are the main class of the
# metrics; uniform over agents gave the pedestrian and cyclist channels almost no positive queries).
NEAR_QUERY_CLASS_WEIGHTS = (2.0, 1.0, 1.0)
TRAIL_FRACTION = 0.5      # near-agent queries placed at the agent's box at another frame than the query's


def sample_queries(tracks: AgentTracks, cfg: OccFlowConfig, count: int, rng: np.random.Generator,
                   times: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``count`` space-time queries: (Q, 2) points and (Q,) frame indices of ``tracks``; t is 0 for a share
    ``current_query_fraction`` (where occupancy and its reverse flow are what the sweeps show: the
    detection and velocity every later time builds on), else uniform over the horizon's frames (or over
    ``times``). A share ``near_actor_fraction`` lies in or near an agent's
    box (grown by 15 % of its size + 0.5 m on each side); for ``TRAIL_FRACTION`` of those the box is taken
    at another random frame than the query's, so the model is also asked where the agent was or will be
    at other times (mostly empty there: without these the targets never said that occupancy moves on,
    and the predictions hardly changed between 0.5 and 3 s). The rest is uniform over the grid."""
    frames_all = tracks.current + (np.arange(future_frames(cfg) + 1) if times is None
                                   else np.rint(np.asarray(times) / tracks.period).astype(int))
    n_near = int(count * cfg.near_actor_fraction) if tracks.num_agents else 0
    frames = np.where(rng.random(count) < cfg.current_query_fraction, tracks.current,
                      frames_all[rng.integers(len(frames_all), size=count)])
    pts = np.stack([rng.uniform(*cfg.x_range, count), rng.uniform(*cfg.y_range, count)], 1)
    if n_near:
        f = frames[:n_near]
        box_frame = np.where(rng.random(n_near) < TRAIL_FRACTION, frames_all[rng.integers(len(frames_all), size=n_near)], f)
        box_frame = np.clip(box_frame, 0, tracks.num_frames - 1)
        live = tracks.valid[box_frame]                                          # (n, A)
        onehot = np.eye(len(NEAR_QUERY_CLASS_WEIGHTS))[np.clip(tracks.cls, 0, len(NEAR_QUERY_CLASS_WEIGHTS) - 1)]
        per_class = live.astype(np.float64) @ onehot                           # (n, C) live agents per class
        weight = np.asarray(NEAR_QUERY_CLASS_WEIGHTS)[tracks.cls][None] / np.maximum(per_class @ onehot.T, 1)
        with np.errstate(divide="ignore"):
            score = np.where(live, np.log(weight) + rng.gumbel(size=live.shape), -np.inf)
        agent = np.argmax(score, 1)                                            # weighted draw (Gumbel-max)
        has = live.any(1)
        half = tracks.size[agent] / 2 * 1.15 + 0.5
        local = rng.uniform(-1, 1, (n_near, 2)) * half
        yaw = tracks.yaw[box_frame, agent]
        c, s = np.cos(yaw), np.sin(yaw)
        near = tracks.xy[box_frame, agent] + np.stack([c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1]], 1)
        pts[:n_near] = np.where(has[:, None], near, pts[:n_near])
    return pts, frames


def main(argv: list[str] | None = None) -> int:
    """Simulate the training and held-out scenes into the cache (``python -m fovea_core.occflow.data``)."""
    import argparse

    from .config import CONFIGS

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", default="cpu", choices=sorted(CONFIGS))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--train-scenes", type=int, default=len(TRAIN_SEEDS))
    parser.add_argument("--heldout-scenes", type=int, default=len(HELDOUT_SEEDS))
    args = parser.parse_args(argv)
    cfg = CONFIGS[args.config]()
    root = args.data_dir or cache_dir(cfg)
    generate(root / "heldout", list(HELDOUT_SEEDS)[:args.heldout_scenes], cfg, heldout=True)
    generate(root / "train", list(TRAIN_SEEDS)[:args.train_scenes], cfg, heldout=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

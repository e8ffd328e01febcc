"""Normal sequences for training and calibration, and their per-step feature inputs.

Simulated sequences (the event simulator with its frame camera) are cached as ``.npz`` files of plain arrays
(``allow_pickle`` stays off) under a cache folder outside the repository, keyed by seed, duration and size.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fovea_core.events.anomaly.features import SUB_BIN_NS, EventCounts, FeatureConfig, StepExtractor
from fovea_core.events.anomaly.streams import EventFrameStreams, FrameStream

DEFAULT_CACHE = Path("out") / "anomaly" / "sim"
FEATURES_VERSION = 2  # 2: exact window edges, nominal-length windows, NCC kept instead of distributions
# seeds of the three splits never overlap
TRAIN_SEEDS = range(1000, 2000)
CALIBRATION_SEEDS = range(2000, 3000)
TEST_SEEDS = range(3000, 4000)


def simulated_streams(seed: int, duration_s: float, cache_dir: Path | None = DEFAULT_CACHE, width: int = 96,
                      height: int = 72) -> EventFrameStreams:
    from fovea_core.events.simulator.frames import simulate_event_frames

    path = Path(cache_dir) / f"seq_{seed}_{duration_s:g}s_{width}x{height}.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            return EventFrameStreams(z["events"], FrameStream(z["stamps"], z["images"]), width, height)
    seq = simulate_event_frames(seed, duration_s, width, height)
    streams = EventFrameStreams(seq.events, FrameStream(seq.frame_stamps, seq.frames), width, height)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path.with_suffix(".tmp.npz"), events=seq.events, stamps=seq.frame_stamps, images=seq.frames)
        path.with_suffix(".tmp.npz").replace(path)
    return streams


def simulated_set(seeds, duration_s: float, cache_dir: Path | None = DEFAULT_CACHE, label: str = "sequences",
                  **size) -> list[EventFrameStreams]:
    """Several sequences, with a progress line per sequence (simulation takes seconds per sequence)."""
    out = []
    start = time.monotonic()
    seeds = list(seeds)
    for i, seed in enumerate(seeds):
        out.append(simulated_streams(seed, duration_s, cache_dir, **size))
        print(f"[anomaly data] {label}: {i + 1}/{len(seeds)} ({time.monotonic() - start:.0f} s)", file=sys.stderr,
              flush=True)
    return out


@dataclass
class SequenceInputs:
    """Per frame step k = 1..N-1 of one sequence."""

    counts: np.ndarray  # (K, O, 2, P) float32
    nominal_counts: np.ndarray  # (K, O, 2, P) float32: the nominal-length windows (StepExtractor)
    change: np.ndarray  # (K, 2, P) float32
    stamps: np.ndarray  # (K,) int64 (frame k)
    intervals: np.ndarray  # (K,) int64
    events_in_step: np.ndarray  # (K,)


def sequence_inputs(streams: EventFrameStreams, cfg: FeatureConfig) -> SequenceInputs:
    """The steps of a recorded sequence, with the extractor the detector streams through: events pushed as
    far as each step needs them, so the results are the detector's."""
    f = streams.frames
    times = np.ascontiguousarray(streams.events["t"])
    extractor = StepExtractor(streams.width, streams.height, cfg)
    steps, pushed, previous = [], 0, None
    for k in range(len(f)):
        upto = int(np.searchsorted(times, int(f.stamps[k]) + cfg.horizon_ns))
        extractor.push_events(streams.events[pushed:max(pushed, upto)])
        pushed = max(pushed, upto)
        current = extractor.frame(f.images[k])
        if previous is not None:
            steps.append(extractor.step(int(f.stamps[k - 1]), previous, int(f.stamps[k]), current))
        previous = current
    if not steps:
        o, p = cfg.num_offsets, cfg.num_patches
        empty = np.zeros((0, o, 2, p), np.float32)
        return SequenceInputs(empty, empty, np.zeros((0, 2, p), np.float32), np.zeros(0, np.int64),
                              np.zeros(0, np.int64), np.zeros(0, np.int64))
    return SequenceInputs(np.stack([s.counts for s in steps]), np.stack([s.nominal for s in steps]),
                          np.stack([s.change for s in steps]), np.array([s.stamp_ns for s in steps], np.int64),
                          np.array([s.interval_ns for s in steps], np.int64),
                          np.array([s.events_in_step for s in steps], np.int64))


@dataclass
class SequenceFeatures:
    """What training, calibration and evaluation need of one sequence (the full shifted counts are large, so
    only their pooled copies for the sync network are kept). Distributions are made from these with the
    model's temperatures (:func:`frame_distributions`), so a site calibration needs no new features."""

    pooled_counts: np.ndarray  # (K, O, 2, P / pool^2) float32
    nominal_pooled_counts: np.ndarray  # (K, O, 2, P / pool^2) float32: the nominal-length windows
    pooled_change: np.ndarray  # (K, 2, P / pool^2) float32
    ncc: np.ndarray  # (K, O) classical cross-correlation per offset
    nominal_ncc: np.ndarray  # (K, O) the same over the nominal-length windows
    lags: np.ndarray  # (K,) argmax lag in bins (rule baseline)
    stamps: np.ndarray  # (K,) frame stamps of the steps
    intervals: np.ndarray  # (K,) frame intervals of the steps
    activity: np.ndarray  # (J, A) events-only distributions on the fixed step clock
    activity_stamps: np.ndarray  # (J,) end of each events-only step
    activity_counts: np.ndarray  # (J,) events in each events-only step

    def select(self, frame_steps: slice, event_steps: slice) -> "SequenceFeatures":
        """A part of the sequence (frame steps and events-only steps cut separately)."""
        from dataclasses import fields

        return SequenceFeatures(**{f.name: getattr(self, f.name)[event_steps if f.name.startswith("activity")
                                                                  else frame_steps] for f in fields(self)})


def activity_sequence(events: np.ndarray, start_ns: int, end_ns: int, width: int, height: int,
                      activity_cfg: FeatureConfig, step_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events-only steps [e - step, e) on a fixed clock from ``start_ns``: (distributions, ends, counts)."""
    from fovea_core.events.anomaly.features import activity_distribution

    ends = np.arange(start_ns + step_ns, end_ns + 1, step_ns, dtype=np.int64)
    times = np.ascontiguousarray(events["t"])
    counts = EventCounts(width, height, activity_cfg.grid)
    dists, totals, pushed = [], [], 0
    for e in ends:
        upto = int(np.searchsorted(times, int(e) + SUB_BIN_NS))  # every bin before the end edge complete
        counts.push(events[pushed:upto])
        pushed = upto
        dists.append(activity_distribution(counts, int(e - step_ns), int(e)))
        totals.append(counts.total(int(e - step_ns), int(e)))
    a = activity_cfg.num_patches
    return (np.stack(dists) if dists else np.zeros((0, a), np.float32)), ends, np.array(totals, np.int64)


def sequence_features(streams: EventFrameStreams, cfg: FeatureConfig, pool: int, activity_cfg: FeatureConfig,
                      events_step_ns: int) -> SequenceFeatures:
    import torch

    from fovea_core.events.anomaly.features import StepInputs, ncc_per_offset
    from fovea_core.events.anomaly.sync_net import pool_patches

    inputs = sequence_inputs(streams, cfg)

    def ncc_of(counts):
        if not len(counts):
            return np.zeros((0, cfg.num_offsets), np.float32)
        return np.stack([ncc_per_offset(StepInputs(c, ch, 0, 0, 0)) for c, ch in zip(counts, inputs.change)])

    ncc, nominal_ncc = ncc_of(inputs.counts), ncc_of(inputs.nominal_counts)
    pooled = [pool_patches(torch.from_numpy(c), cfg.grid, pool).numpy().astype(np.float32)
              for c in (inputs.counts, inputs.nominal_counts)]
    change = pool_patches(torch.from_numpy(inputs.change), cfg.grid, pool).numpy() / (pool * pool)
    activity, activity_stamps, activity_counts = activity_sequence(streams.events, streams.start_ns, streams.end_ns,
                                                                   streams.width, streams.height, activity_cfg,
                                                                   events_step_ns)
    lags = (np.argmax(ncc, axis=1) - cfg.max_offset_bins).astype(np.int64) if len(ncc) else np.zeros(0, np.int64)
    return SequenceFeatures(pooled[0], pooled[1], change.astype(np.float32), ncc, nominal_ncc, lags, inputs.stamps,
                            inputs.intervals, activity, activity_stamps, activity_counts)


def frame_distributions(models, feats: SequenceFeatures, extractor: str) -> tuple[np.ndarray, np.ndarray]:
    """(distributions, nominal-window distributions), (K, O) each, of one extractor at the model's
    temperatures."""
    from fovea_core.events.anomaly.features import softmax
    from fovea_core.events.anomaly.sync_net import learned_distributions

    temperature = float(models.meta.temperatures.get(extractor, 1.0))
    if extractor == "classical":
        return softmax(feats.ncc, temperature), softmax(feats.nominal_ncc, temperature)
    return tuple(learned_distributions(models.sync_net, c, feats.pooled_change, pooled=True, temperature=temperature)
                 for c in (feats.pooled_counts, feats.nominal_pooled_counts))


def cached_features(key: str, streams_fn, cfg: FeatureConfig, pool: int, activity_cfg: FeatureConfig,
                    events_step_ns: int, cache_dir: Path | None = DEFAULT_CACHE.parent / "features") -> SequenceFeatures:
    """:func:`sequence_features` of ``streams_fn()``, cached under ``key`` and the settings."""
    import hashlib
    import json
    from dataclasses import asdict, fields

    settings = {k: v for k, v in asdict(cfg).items() if k != "temperature"}  # features hold no distributions
    digest = hashlib.sha1(json.dumps([FEATURES_VERSION, settings, pool, asdict(activity_cfg),
                                      events_step_ns]).encode()).hexdigest()[:10]
    path = Path(cache_dir) / f"{key}_{digest}.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            return SequenceFeatures(**{f.name: z[f.name] for f in fields(SequenceFeatures)})
    feats = sequence_features(streams_fn(), cfg, pool, activity_cfg, events_step_ns)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path.with_suffix(".tmp.npz"), **{f.name: getattr(feats, f.name) for f in fields(SequenceFeatures)})
        path.with_suffix(".tmp.npz").replace(path)
    return feats

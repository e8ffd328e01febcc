"""Simulated HMNet datasets: sequences from the event simulator, cached as .npz, turned into ESCA tokens."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fovea_core.events.hmnet.config import HMNetConfig
from fovea_core.events.hmnet.tokens import sequence_tokens
from fovea_core.events.simulator import SceneConfig, SimulatedSequence, simulate_sequence

# disjoint seed ranges, so held-out sequences are never seen in training
SPLIT_SEEDS = {"train": 10_000, "val": 500_000, "test": 900_000}
DEFAULT_CACHE = Path.home() / ".cache" / "fovea" / "hmnet_sim"


@dataclass
class TokenSequence:
    tokens: np.ndarray  # (T, cells, K) int64
    labels: np.ndarray  # (T, H, W) uint8
    depth: np.ndarray  # (T, H, W) float32
    sequence: SimulatedSequence


def load_or_simulate(split: str, index: int, num_windows: int, cfg: HMNetConfig, cache_dir: Path | None) -> SimulatedSequence:
    seed = SPLIT_SEEDS[split] + index
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{split}_{cfg.width}x{cfg.height}_{num_windows}_{seed}.npz"
        if path.exists():
            return SimulatedSequence.load(path)
    seq = simulate_sequence(seed, num_windows, SceneConfig(width=cfg.width, height=cfg.height),
                            window_ns=cfg.window_ns)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        seq.save(path)
    return seq


def to_tokens(seq: SimulatedSequence, cfg: HMNetConfig) -> TokenSequence:
    tokens = sequence_tokens(seq.events, seq.window_end_ns, cfg.window_ns, cfg.width, cfg.height, cfg.strides[0],
                             cfg.time_bins, cfg.max_events_per_cell)
    return TokenSequence(tokens, seq.labels, seq.depth, seq)


def build_split(split: str, count: int, num_windows: int, cfg: HMNetConfig,
                cache_dir: Path | None = DEFAULT_CACHE) -> list[TokenSequence]:
    return [to_tokens(load_or_simulate(split, i, num_windows, cfg, cache_dir), cfg) for i in range(count)]

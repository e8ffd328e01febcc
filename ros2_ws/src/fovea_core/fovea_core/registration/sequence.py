"""A real lidar sequence for odometry: PandaSet sequence 002 (Pandar64 sweeps with ground-truth poses).

PandaSet stores each sweep's points in world coordinates with one pose per sweep; an odometry system sees
points in its body frame, so each sweep is mapped into base_link (REP-103) with the sweep's pose. Reading
and the base_link definition are the project's PandaSet reader (``fovea_core.tpv.pandaset``); this only
shapes sweeps for odometry. Per-point times stay absolute (seconds); the stamp is PandaSet's frame time
(the end of the sweep). PandaSet's points are already motion-compensated (deskewing them again made
KISS-ICP's rotation error 1.6x worse here).

Data: PandaSet by Hesai and Scale AI, CC BY 4.0 plus the PandaSet Dataset Terms of Use
(``shared/data/tpv/pandaset_002/PROVENANCE.md``); keep that notice with anything derived from it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fovea_core.geometry.transforms import invert_rigid, transform_points
from fovea_core.tpv.pandaset import PandaSetSequence


@dataclass
class Sweep:
    """One lidar sweep in the body frame with its ground truth."""

    frame: int
    stamp_ns: int  # the sweep's timestamp (PandaSet: end of the sweep), int64 ns
    points: np.ndarray  # (N, 3) float64, body frame
    times: np.ndarray  # (N,) float64, absolute seconds per point
    intensity: np.ndarray  # (N,) uint8
    pose: np.ndarray  # 4x4 world ← body at stamp_ns

    @property
    def relative_times(self) -> np.ndarray:
        """Per-point time normalised to [0, 1] over the sweep (what deskewing needs)."""
        span = float(self.times.max() - self.times.min()) if len(self.times) else 0.0
        return (self.times - self.times.min()) / span if span > 0 else np.zeros_like(self.times)


def load_sweeps(frames: list[int] | None = None, data_root: str | Path | None = None) -> list[Sweep]:
    """Sweeps of PandaSet 002 (all shipped frames by default) in base_link."""
    sequence = PandaSetSequence(data_root)
    sweeps = []
    for frame in frames if frames is not None else sequence.frames:
        raw = sequence.sweep(frame)
        pose = sequence.ego2world(frame)
        sweeps.append(Sweep(frame, int(round(sequence.lidar_times[frame] * 1e9)),
                            transform_points(invert_rigid(pose), raw.points_world), raw.time, raw.intensity, pose))
    return sweeps


WGS84_A, WGS84_E2 = 6378137.0, 6.69437999014e-3


def gps_positions(frames: list[int] | None = None, data_root: str | Path | None = None) -> np.ndarray:
    """(N, 2) east / north metres of PandaSet's GPS/INS fixes (``meta/gps.json``, one per frame time) from the
    first requested frame, on the local tangent plane (WGS-84 radii of curvature: exact to well under a
    millimetre over the sequence's 10 m). An independent reference for the lidar poses' travelled distance;
    heights are left out (their frame-to-frame noise is centimetres)."""
    sequence = PandaSetSequence(data_root)
    fixes = json.loads((sequence.root / "meta" / "gps.json").read_text())
    frames = frames if frames is not None else sequence.frames
    lat = np.radians([fixes[f]["lat"] for f in frames])
    lon = np.radians([fixes[f]["long"] for f in frames])
    sin2 = np.sin(lat[0]) ** 2
    prime_vertical = WGS84_A / np.sqrt(1.0 - WGS84_E2 * sin2)
    meridian = WGS84_A * (1.0 - WGS84_E2) / (1.0 - WGS84_E2 * sin2) ** 1.5
    return np.stack([(lon - lon[0]) * prime_vertical * np.cos(lat[0]), (lat - lat[0]) * meridian], axis=1)

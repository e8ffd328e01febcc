"""Helpers of the anomaly tests: hand-made streams where the exact answer is known, a short simulated
sequence."""

import numpy as np

from fovea_core.events.anomaly.streams import EventFrameStreams, FrameStream
from fovea_core.events.arrays import make_events
from fovea_core.events.simulator.frames import FrameCameraConfig, simulate_event_frames

MS = 1_000_000


def simulated(seed: int = 11, duration_s: float = 1.5, width: int = 64, height: int = 48) -> EventFrameStreams:
    seq = simulate_event_frames(seed, duration_s, width, height,
                                camera=FrameCameraConfig(rate_hz=25.0, exposure_fraction=0.5))
    return EventFrameStreams(seq.events, FrameStream(seq.frame_stamps, seq.frames), width, height)


def toy_streams(n_frames: int = 20, period_ms: int = 40, width: int = 32, height: int = 24) -> EventFrameStreams:
    """Frames with a value per frame and one event per pixel per ms: every change is visible in both."""
    stamps = (np.arange(n_frames) * period_ms + 20) * MS
    images = np.stack([np.full((height, width), 10 * k % 250, np.uint8) for k in range(n_frames)])
    t = np.arange(0, (n_frames * period_ms + 40) * MS, MS)
    x, y = t // MS % width, t // MS % height
    return EventFrameStreams(make_events(x, y, t, t // MS % 2), FrameStream(stamps, images), width, height)

"""Simulated training / test sequences: events plus labels, depth and frames at the end of every window."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fovea_core.events.arrays import concat_events
from fovea_core.events.simulator.esim import EsimConfig, EventSimulator
from fovea_core.events.simulator.scene import MovingScene, SceneConfig

WINDOW_NS = 5_000_000  # HMNet's step, 5 ms


@dataclass
class SimulatedSequence:
    events: np.ndarray  # structured (x, y, t, p), t in ns from 0
    window_end_ns: np.ndarray  # (T,) end of each window; window i is [end - window, end)
    labels: np.ndarray  # (T, H, W) uint8 at each window end
    depth: np.ndarray  # (T, H, W) float32 metres
    frames: np.ndarray  # (T, H, W) uint8 intensity
    width: int
    height: int
    window_ns: int = WINDOW_NS

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, events=self.events, window_end_ns=self.window_end_ns, labels=self.labels,
                            depth=self.depth, frames=self.frames, size=np.array([self.width, self.height, self.window_ns]))

    @classmethod
    def load(cls, path: str | Path) -> "SimulatedSequence":
        with np.load(path) as z:
            w, h, win = (int(v) for v in z["size"])
            return cls(z["events"], z["window_end_ns"], z["labels"], z["depth"], z["frames"], w, h, win)


def simulate_sequence(seed: int, num_windows: int, scene: SceneConfig | None = None, esim: EsimConfig | None = None,
                      window_ns: int = WINDOW_NS, renders_per_window: int = 5) -> SimulatedSequence:
    """Render the scene ``renders_per_window`` times per window (1 kHz for 5 ms windows) and simulate events."""
    scene = scene or SceneConfig()
    world = MovingScene(scene, seed)
    sim = EventSimulator(scene.width, scene.height, esim or EsimConfig(), seed=seed + 1_000_003)
    sub = window_ns // renders_per_window
    chunks, labels, depth, frames = [], [], [], []
    for i in range(num_windows * renders_per_window + 1):
        t_ns = i * sub
        img, lab, dep = world.render(t_ns * 1e-9)
        chunks.append(sim.step(img, t_ns))
        if i > 0 and i % renders_per_window == 0:
            labels.append(lab)
            depth.append(dep)
            frames.append(np.round(img * 255).astype(np.uint8))
    ends = np.arange(1, num_windows + 1, dtype=np.int64) * window_ns
    return SimulatedSequence(concat_events(chunks), ends, np.stack(labels), np.stack(depth), np.stack(frames),
                             scene.width, scene.height, window_ns)


def write_sequence_bag(seq: SimulatedSequence, path: str | Path, encoding: str = "evt3",
                       event_topic: str = "/event_camera/events", image_topic: str = "/camera/image_raw",
                       frame_every: int = 2, stamp_offset_ns: int = 1_700_000_000_000_000_000,
                       frame_id: str = "event_camera_optical") -> int:
    """One EventPacket per window plus an intensity frame every ``frame_every`` windows; returns packets written.

    Event times in the packets stay sensor time (from 0). As ROS drivers do, a packet's header stamp is the ROS
    time of its first event (``stamp_offset_ns`` + sensor time); the bag records it at the window end (when a
    driver would have sent it). Frames are stamped at their window end.
    """
    from fovea_core.events.bagio import BagWriter
    from fovea_core.events.packets import PacketStreamEncoder

    encoder = PacketStreamEncoder(encoding, seq.width, seq.height, frame_id)
    bounds = np.searchsorted(seq.events["t"], np.concatenate(([0], seq.window_end_ns)))
    written = 0
    with BagWriter(path) as bag:
        for i, end in enumerate(seq.window_end_ns):
            chunk = seq.events[bounds[i]:bounds[i + 1]]
            stamp = stamp_offset_ns + int(end)
            if len(chunk):
                packet = encoder.encode(chunk, stamp_offset_ns + int(chunk["t"][0]))
                bag.write_packet(event_topic, packet, bag_time_ns=stamp)
                written += 1
            if frame_every and i % frame_every == 0:
                bag.write_image(image_topic, seq.frames[i], stamp, frame_id, "mono8")
    return written

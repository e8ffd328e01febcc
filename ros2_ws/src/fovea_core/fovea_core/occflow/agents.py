"""Agents as oriented boxes over time, and the ground truth they define at any (x, y, t).

``AgentTracks`` holds A agents over F frames at a fixed period (10 Hz), in base_link of the sample's
current sweep (frame ``current``, t = 0). Occupancy at (x, y, t): inside some agent's footprint (length x
width rectangle around its centre, rotated by yaw) at the frame of t, per class. **Reverse flow** at an
occupied (x, y, t): the displacement from (x, y) to where the same material point of the agent was
``flow_dt`` earlier, from the agent's rigid motion: p' = c(t - dt) + R(yaw(t - dt)) R(yaw(t))^T (p - c(t)).
A translating box gives a constant field, a turning box a rotational one. Where the agent did not exist
``flow_dt`` earlier the flow is undefined (``flow_valid`` False) and is neither trained nor scored. This
is how the Waymo Occupancy Flow challenge derives its grids from tracks (their flow is in grid cells over
1 s; ours is in metres over ``flow_dt``). Overlapping agents of one class: the first in index order wins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import CLASS_NAMES


@dataclass
class AgentTracks:
    xy: np.ndarray        # (F, A, 2) centre, metres
    yaw: np.ndarray       # (F, A) radians
    valid: np.ndarray     # (F, A) bool
    size: np.ndarray      # (A, 2) length, width, metres
    cls: np.ndarray       # (A,) int index into CLASS_NAMES
    current: int          # frame index of t = 0
    period: float = 0.1   # seconds between frames

    @property
    def num_frames(self) -> int:
        return self.xy.shape[0]

    @property
    def num_agents(self) -> int:
        return self.xy.shape[1]

    def frame_of(self, t) -> np.ndarray:
        """Frame index of time(s) t (seconds after the current sweep), rounded to the nearest frame."""
        return np.rint(np.asarray(t, dtype=np.float64) / self.period).astype(np.int64) + self.current

    def time_of(self, frame) -> np.ndarray:
        return (np.asarray(frame) - self.current) * self.period

    def observed(self) -> "AgentTracks":
        """Only the agents present at t = 0 (Waymo's "observed" occupancy: what a planner can know of)."""
        keep = self.valid[self.current]
        return self.select(keep)

    def select(self, keep: np.ndarray) -> "AgentTracks":
        return AgentTracks(self.xy[:, keep], self.yaw[:, keep], self.valid[:, keep], self.size[keep],
                           self.cls[keep], self.current, self.period)

    def to_arrays(self, prefix: str = "agents_") -> dict[str, np.ndarray]:
        return {prefix + "xy": self.xy.astype(np.float32), prefix + "yaw": self.yaw.astype(np.float32),
                prefix + "valid": self.valid, prefix + "size": self.size.astype(np.float32),
                prefix + "cls": self.cls.astype(np.int8), prefix + "current": np.int64(self.current),
                prefix + "period": np.float64(self.period)}

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "agents_") -> "AgentTracks":
        return cls(np.asarray(arrays[prefix + "xy"], np.float64), np.asarray(arrays[prefix + "yaw"], np.float64),
                   np.asarray(arrays[prefix + "valid"], bool), np.asarray(arrays[prefix + "size"], np.float64),
                   np.asarray(arrays[prefix + "cls"], np.int64), int(arrays[prefix + "current"]),
                   float(arrays[prefix + "period"]))


def occupancy_and_flow(tracks: AgentTracks, points: np.ndarray, frames: np.ndarray, flow_dt: float,
                       num_classes: int = len(CLASS_NAMES)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth at query points ``points`` (Q, 2) at frame indices ``frames`` (Q,).

    Returns occupancy (Q, C) bool, reverse flow (Q, C, 2) metres, flow_valid (Q, C) bool. Frames outside
    the tracks' span give no occupancy."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    frames = np.broadcast_to(np.asarray(frames, np.int64), (len(points),))
    Q, A = len(points), tracks.num_agents
    occ = np.zeros((Q, num_classes), bool)
    flow = np.zeros((Q, num_classes, 2), np.float64)
    flow_ok = np.zeros((Q, num_classes), bool)
    if A == 0 or Q == 0:
        return occ, flow.astype(np.float32), flow_ok
    lag = int(round(flow_dt / tracks.period))
    in_span = (frames >= 0) & (frames < tracks.num_frames)
    f = np.clip(frames, 0, tracks.num_frames - 1)
    fp = np.clip(f - lag, 0, tracks.num_frames - 1)
    # (Q, A) arrays throughout: local box coordinates l = R(yaw)^T (p - c).
    dx, dy = points[:, :1] - tracks.xy[f, :, 0], points[:, 1:] - tracks.xy[f, :, 1]
    cs, sn = np.cos(tracks.yaw[f]), np.sin(tracks.yaw[f])
    lx, ly = cs * dx + sn * dy, -sn * dx + cs * dy
    inside = tracks.valid[f] & in_span[:, None] & (np.abs(lx) <= tracks.size[:, 0] / 2) \
        & (np.abs(ly) <= tracks.size[:, 1] / 2)
    prev_ok = tracks.valid[fp] & (f - lag >= 0)[:, None]
    pc, ps = np.cos(tracks.yaw[fp]), np.sin(tracks.yaw[fp])
    prev = np.stack([tracks.xy[fp, :, 0] + pc * lx - ps * ly, tracks.xy[fp, :, 1] + ps * lx + pc * ly], -1)
    for c in range(num_classes):
        hit = inside & (tracks.cls == c)[None]
        any_hit = hit.any(1)
        first = np.argmax(hit, 1)
        rows = np.nonzero(any_hit)[0]
        occ[rows, c] = True
        flow_ok[rows, c] = prev_ok[rows, first[rows]]
        flow[rows, c] = (prev[rows, first[rows]] - points[rows]) * flow_ok[rows, c][:, None]
    return occ, flow.astype(np.float32), flow_ok


def rasterise(tracks: AgentTracks, grid, t: float, flow_dt: float, num_classes: int = len(CLASS_NAMES)):
    """Occupancy (C, ny, nx) float32 in {0, 1}, reverse flow (C, 2, ny, nx), flow_valid (C, ny, nx) at
    time ``t`` on the cell centres of ``grid`` (a BevGrid). The same rule as ``occupancy_and_flow``,
    evaluated per agent over the cells of its bounding square only (a grid has ~10^5 cells)."""
    ny, nx = grid.shape
    occ = np.zeros((num_classes, ny, nx), np.float32)
    flow = np.zeros((num_classes, 2, ny, nx), np.float32)
    ok = np.zeros((num_classes, ny, nx), bool)
    frame = int(tracks.frame_of(t))
    if not 0 <= frame < tracks.num_frames:
        return occ, flow, ok
    lag = int(round(flow_dt / tracks.period))
    for a in np.nonzero(tracks.valid[frame])[0]:
        c = int(tracks.cls[a])
        if not 0 <= c < num_classes:
            continue
        box = box_cells(grid, tracks.xy[frame, a], tracks.yaw[frame, a], tracks.size[a])
        if box is None:
            continue
        rows, cols, inside, lx, ly, gx, gy = box
        inside &= occ[c, rows, cols] == 0                        # first agent in index order wins
        if not inside.any():
            continue
        occ[c, rows, cols][inside] = 1.0
        fp = frame - lag
        if fp >= 0 and tracks.valid[fp, a]:
            pc, ps = np.cos(tracks.yaw[fp, a]), np.sin(tracks.yaw[fp, a])
            px = tracks.xy[fp, a, 0] + pc * lx - ps * ly
            py = tracks.xy[fp, a, 1] + ps * lx + pc * ly
            flow[c, 0, rows, cols][inside] = (px - gx)[inside]
            flow[c, 1, rows, cols][inside] = (py - gy)[inside]
            ok[c, rows, cols][inside] = True
    return occ, flow, ok


def box_cells(grid, centre, yaw: float, size, margin: float = 0.0):
    """The cells of ``grid`` whose centres lie in a length x width box (grown by ``margin`` on every side):
    (row slice, column slice, inside mask, box-local x and y, metric x and y of those cells), or None when
    the box's bounding square misses the grid."""
    ny, nx = grid.shape
    res, x0, y0 = grid.resolution, grid.x_range[0], grid.y_range[0]
    half = np.asarray(size, np.float64) / 2 + margin
    reach = float(np.hypot(*half))
    i0, i1 = max(int((centre[0] - reach - x0) / res), 0), min(int((centre[0] + reach - x0) / res) + 1, nx)
    j0, j1 = max(int((centre[1] - reach - y0) / res), 0), min(int((centre[1] + reach - y0) / res) + 1, ny)
    if i0 >= i1 or j0 >= j1:
        return None
    gx, gy = np.meshgrid(x0 + (np.arange(i0, i1) + 0.5) * res, y0 + (np.arange(j0, j1) + 0.5) * res)
    cs, sn = np.cos(yaw), np.sin(yaw)
    dx, dy = gx - centre[0], gy - centre[1]
    lx, ly = cs * dx + sn * dy, -sn * dx + cs * dy
    inside = (np.abs(lx) <= half[0]) & (np.abs(ly) <= half[1])
    return slice(j0, j1), slice(i0, i1), inside, lx, ly, gx, gy


def footprint_history(tracks: AgentTracks, grid, frames: list[int]) -> np.ndarray:
    """(len(frames), ny, nx) footprints of all agents (any class) at the given frames: the "tracked-object
    history" input a robot with a tracker has."""
    planes = []
    for frame in frames:
        occ, _, _ = rasterise(tracks, grid, float(tracks.time_of(frame)), flow_dt=0.0)
        planes.append(occ.max(0))
    return np.stack(planes) if planes else np.zeros((0, *grid.shape), np.float32)


def constant_velocity(tracks: AgentTracks, velocity_window: float = 0.5) -> AgentTracks:
    """The object-based baseline with perfect perception: every agent present at t = 0 keeps the velocity
    it had over the last ``velocity_window`` seconds of its history (shorter if its history is shorter,
    zero with no history) and its heading; the past is kept as observed, the future is replaced."""
    obs = tracks.observed()
    k0 = obs.current
    xy, yaw, valid = obs.xy.copy(), obs.yaw.copy(), obs.valid.copy()
    lag_max = int(round(velocity_window / obs.period))
    velocity = np.zeros((obs.num_agents, 2))
    for a in range(obs.num_agents):
        for lag in range(min(lag_max, k0), 0, -1):
            if valid[k0 - lag, a]:
                velocity[a] = (xy[k0, a] - xy[k0 - lag, a]) / (lag * obs.period)
                break
    future = np.arange(k0 + 1, obs.num_frames)
    dt = (future - k0)[:, None, None] * obs.period
    xy[future] = xy[k0][None] + velocity[None] * dt
    yaw[future] = yaw[k0][None]
    valid[future] = True
    return AgentTracks(xy, yaw, valid, obs.size, obs.cls, k0, obs.period)

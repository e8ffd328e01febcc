"""Traffic on a lane graph (a real AV2 map or a procedural one), for training data.

Agents (all motion at 10 Hz over the scene's frames, in the map's frame):
- vehicles: follow a route through the lane graph's successors (random at forks: straight, turns);
  speed 0-16 m/s with a behaviour each: cruise, speed change, stop-and-go, or a lane change to a
  neighbour lane over 3-5 s; realistic sizes (cars, vans, trucks, buses);
- parked vehicles beside the rightmost lanes (static);
- pedestrians: across crossings or along the roadside (0.8-1.8 m/s), some standing;
- cyclists: on bike lanes where the map has them, else at the right edge of a vehicle lane (3-7 m/s).
Static non-agents that occlude and return lidar: buildings off the drivable area, poles and trees.
The ego vehicle follows its own route; it is not an agent (AV2 does not annotate the ego either).
Simplifications (ours): no interaction between agents (no car following or yielding), so agents may
overlap in rare cases; lane changes are a lateral blend, not a planned manoeuvre.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.path import Path as PolygonPath

from .agents import AgentTracks
from .vector_map import VectorMap, resample

VEHICLE_SIZES = [((4.2, 4.9), (1.75, 2.0), (1.4, 1.7), 0.7), ((5.0, 6.0), (1.9, 2.2), (1.8, 2.4), 0.15),
                 ((7.0, 12.0), (2.3, 2.6), (2.8, 3.6), 0.15)]   # (length, width, height ranges, share)


@dataclass
class Scene:
    """A simulated scene: agents' tracks in the map frame, the ego's pose per frame, static boxes."""
    tracks: AgentTracks          # current = 0; frames 0..F-1
    heights: np.ndarray          # (A,) box heights for the lidar
    ego: np.ndarray              # (F, 3) x, y, yaw
    static: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # centres, yaws, sizes, heights
    vmap: VectorMap
    ground_z: float


def _route(vmap: VectorMap, rng, lane_id: int, length: float, kinds=("VEHICLE", "BUS")) -> np.ndarray:
    """A dense polyline (0.25 m spacing) from the start of ``lane_id`` following random successors."""
    pts, total, lane = [], 0.0, vmap.lanes[lane_id]
    for _ in range(30):
        c = lane.centreline
        pts.append(c if not pts else c[1:])
        total += float(np.linalg.norm(np.diff(c, axis=0), axis=1).sum())
        succ = [s for s in lane.successors if s in vmap.lanes and vmap.lanes[s].kind in kinds]
        if total >= length or not succ:
            break
        lane = vmap.lanes[succ[int(rng.integers(len(succ)))]]
    line = np.concatenate(pts)
    seg = np.linalg.norm(np.diff(line, axis=0), axis=1)
    line = line[np.concatenate([[True], seg > 1e-6])]
    n = max(int(np.linalg.norm(np.diff(line, axis=0), axis=1).sum() / 0.25), 2)
    return resample(line, n)


def _along(route: np.ndarray, s: np.ndarray, lateral: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions and headings at arc lengths ``s`` (clamped to the route), shifted ``lateral`` to the left."""
    seg = np.linalg.norm(np.diff(route, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.clip(s, 0, cum[-1])
    x, y = np.interp(s, cum, route[:, 0]), np.interp(s, cum, route[:, 1])
    tangent_idx = np.clip(np.searchsorted(cum, s) - 1, 0, len(seg) - 1)
    d = route[tangent_idx + 1] - route[tangent_idx]
    heading = np.arctan2(d[:, 1], d[:, 0])
    xy = np.stack([x, y], 1)
    if lateral is not None:
        xy = xy + lateral[:, None] * np.stack([-np.sin(heading), np.cos(heading)], 1)
        if len(s) > 2:  # the heading turns with the lateral motion of a lane change
            ds = np.gradient(s)
            heading = heading + np.arctan2(np.gradient(lateral), np.maximum(ds, 1e-3)) * (ds > 0.02)
    return xy, heading


def _speed_profile(rng, frames: int, dt: float, v_max: float) -> np.ndarray:
    """Arc length per frame from a behaviour: cruise, speed change or stop-and-go (accel-limited)."""
    behaviour = rng.choice(["cruise", "change", "stop_and_go", "stopped"], p=[0.4, 0.3, 0.2, 0.1])
    v = rng.uniform(0.3, 1.0) * v_max if behaviour != "stopped" else 0.0
    target = np.full(frames, v)
    if behaviour == "change":
        k = int(rng.integers(0, frames))
        target[k:] = rng.uniform(0, v_max)
    elif behaviour == "stop_and_go":
        k0, k1 = sorted(rng.integers(0, frames, 2))
        target[k0:k1] = 0.0
    speed, out = np.zeros(frames), np.zeros(frames)
    speed[0] = target[0]
    for k in range(1, frames):
        a = np.clip((target[k] - speed[k - 1]) / dt, -4.0, 2.5)
        speed[k] = max(speed[k - 1] + a * dt, 0.0)
        out[k] = out[k - 1] + 0.5 * (speed[k] + speed[k - 1]) * dt
    return out


def _inside_any(polygons: list[np.ndarray], pts: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(pts), bool)
    for poly in polygons:
        inside |= PolygonPath(poly).contains_points(pts)
    return inside


def simulate(vmap: VectorMap, rng: np.random.Generator, frames: int = 60, dt: float = 0.1,
             radius: float = 70.0, density: float = 1.0) -> Scene:
    lanes = [l for l in vmap.lanes.values() if l.kind in ("VEHICLE", "BUS")]
    bike_lanes = [l for l in vmap.lanes.values() if l.kind == "BIKE"]
    # The ego drives a route from a random lane; agents are placed around its start.
    ego_lane = lanes[int(rng.integers(len(lanes)))]
    ego_route = _route(vmap, rng, ego_lane.id, 150.0)
    ego_s = _speed_profile(rng, frames, dt, 14.0) + rng.uniform(0, 0.3) * _arc(ego_route)
    ego_xy, ego_yaw = _along(ego_route, ego_s)
    centre = ego_xy[0]
    near = [l for l in lanes if np.min(np.linalg.norm(l.centreline - centre, axis=1)) < radius]
    xy, yaw, valid, size, heights, cls = [], [], [], [], [], []

    def add(track_xy, track_yaw, length, width, height, c, present=None):
        xy.append(track_xy)
        yaw.append(track_yaw)
        valid.append(np.ones(frames, bool) if present is None else present)
        size.append((length, width))
        heights.append(height)
        cls.append(c)

    def vehicle_size():
        k = rng.choice(len(VEHICLE_SIZES), p=[v[3] for v in VEHICLE_SIZES])
        (l0, l1), (w0, w1), (h0, h1), _ = VEHICLE_SIZES[k]
        return rng.uniform(l0, l1), rng.uniform(w0, w1), rng.uniform(h0, h1)

    # Moving vehicles.
    for _ in range(int(rng.poisson(14 * density))):
        if not near:
            break
        lane = near[int(rng.integers(len(near)))]
        route = _route(vmap, rng, lane.id, 120.0)
        s = _speed_profile(rng, frames, dt, 16.0) + rng.uniform(0, 0.6) * _arc(route)
        lateral = None
        neighbour = lane.left_neighbour if rng.random() < 0.5 else lane.right_neighbour
        if neighbour is not None and neighbour in vmap.lanes and rng.random() < 0.2:
            side = 1.0 if neighbour == lane.left_neighbour else -1.0
            k0, span = int(rng.integers(0, frames)), int(rng.uniform(30, 50))
            ramp = np.clip((np.arange(frames) - k0) / span, 0, 1)
            lateral = side * 3.5 * (3 * ramp ** 2 - 2 * ramp ** 3)
        txy, tyaw = _along(route, s, lateral)
        if np.min(np.linalg.norm(txy - ego_xy, axis=1)) < 5.0:
            continue  # keep clear of the ego's own path
        length, width, height = vehicle_size()
        present = np.ones(frames, bool)
        if rng.random() < 0.1:  # a track that starts or ends inside the window (appears / disappears)
            cut = int(rng.integers(1, frames - 1))
            if rng.random() < 0.5:
                present[:cut] = False
            else:
                present[cut:] = False
        add(txy, tyaw, length, width, height, 0, present)
    # Parked vehicles on the right of rightmost lanes.
    for _ in range(int(rng.poisson(6 * density))):
        edge = [l for l in near if l.right_neighbour is None]
        if not edge:
            break
        lane = edge[int(rng.integers(len(edge)))]
        route = resample(lane.centreline, 50)
        p, h = _along(route, np.array([rng.uniform(0, _arc(route))]), np.array([-(1.75 + 1.3)]))
        length, width, height = vehicle_size()
        add(np.repeat(p, frames, 0), np.repeat(h, frames), length, width, height, 0)
    # Pedestrians.
    for _ in range(int(rng.poisson(8 * density))):
        speed = rng.uniform(0.8, 1.8) if rng.random() < 0.8 else 0.0
        if vmap.crossings and rng.random() < 0.5:
            poly = vmap.crossings[int(rng.integers(len(vmap.crossings)))]
            a, b = poly[0] + (poly[1] - poly[0]) * 0.5, poly[-1] + (poly[-2] - poly[-1]) * 0.5
            if rng.random() < 0.5:
                a, b = b, a
        else:
            if not near:
                break
            lane = near[int(rng.integers(len(near)))]
            side = resample(lane.right, 40)
            i = int(rng.integers(len(side) - 1))
            out = side[i] - lane.centreline[min(i, len(lane.centreline) - 1)]
            out = out / max(np.linalg.norm(out), 1e-6) * rng.uniform(1.5, 3.5)
            a, b = side[i] + out, side[i + 1] + out
        d = b - a
        heading = float(np.arctan2(d[1], d[0]))
        t = np.arange(frames) * dt * speed + rng.uniform(-3, 3)
        pxy = a + np.outer(t, d / max(np.linalg.norm(d), 1e-6))
        add(pxy, np.full(frames, heading), rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.8), rng.uniform(1.5, 1.9), 1)
    # Cyclists.
    for _ in range(int(rng.poisson(2 * density))):
        pool = [l for l in bike_lanes if np.min(np.linalg.norm(l.centreline - centre, axis=1)) < radius] or near
        if not pool:
            break
        lane = pool[int(rng.integers(len(pool)))]
        kinds = ("BIKE",) if lane.kind == "BIKE" else ("VEHICLE", "BUS")
        route = _route(vmap, rng, lane.id, 60.0, kinds)
        s = _speed_profile(rng, frames, dt, 7.0) + rng.uniform(0, 0.6) * _arc(route)
        offset = None if lane.kind == "BIKE" else np.full(frames, -1.1)
        cxy, cyaw = _along(route, s, offset)
        add(cxy, cyaw, rng.uniform(1.6, 2.0), rng.uniform(0.6, 0.8), rng.uniform(1.5, 1.9), 2)
    # Static occluders: buildings, poles and trees off the drivable area.
    count = int(rng.poisson(25))
    cand = centre + rng.uniform(-radius, radius, (count * 3, 2))
    cand = cand[~_inside_any(vmap.drivable, cand)][:count]
    kind = rng.random(len(cand)) < 0.4
    s_size = np.where(kind[:, None], rng.uniform(6, 20, (len(cand), 2)), rng.uniform(0.3, 1.2, (len(cand), 2)))
    s_height = np.where(kind, rng.uniform(4, 12, len(cand)), rng.uniform(2, 7, len(cand)))
    static = (cand, rng.uniform(-np.pi, np.pi, len(cand)), s_size, s_height)
    A = len(xy)
    tracks = AgentTracks(np.stack(xy, 1) if A else np.zeros((frames, 0, 2)),
                         np.stack(yaw, 1) if A else np.zeros((frames, 0)),
                         np.stack(valid, 1) if A else np.zeros((frames, 0), bool),
                         np.array(size).reshape(A, 2), np.array(cls, np.int64), current=0, period=dt)
    return Scene(tracks, np.array(heights), np.concatenate([ego_xy, ego_yaw[:, None]], 1), static, vmap,
                 ground_z=float(rng.normal(0, 0.05)))


def _arc(route: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(route, axis=0), axis=1).sum())

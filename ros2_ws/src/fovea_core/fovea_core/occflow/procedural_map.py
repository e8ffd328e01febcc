"""Procedural lane graphs for training: straight multi-lane roads, T-junctions and four-way intersections
(right-hand traffic, 3.5 m lanes, connector lanes for straight, left and right turns as quadratic Bezier
curves, crossings on every arm), rotated at random. The result is a ``VectorMap`` like the AV2 reader's.
"""
from __future__ import annotations

import numpy as np

from .vector_map import Lane, VectorMap

LANE_WIDTH = 3.5


def _bezier(p0, c, p1, n: int = 16) -> np.ndarray:
    s = np.linspace(0, 1, n)[:, None]
    return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * c + s ** 2 * p1


def _offset(polyline: np.ndarray, distance: float) -> np.ndarray:
    """The polyline shifted ``distance`` to its left (negative: right)."""
    d = np.gradient(polyline, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], 1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    return polyline + distance * n


class _Builder:
    def __init__(self) -> None:
        self.lanes: dict[int, Lane] = {}
        self.drivable: list[np.ndarray] = []
        self.crossings: list[np.ndarray] = []

    def lane(self, centre: np.ndarray, **kw) -> int:
        i = len(self.lanes) + 1
        self.lanes[i] = Lane(i, centre, _offset(centre, LANE_WIDTH / 2), _offset(centre, -LANE_WIDTH / 2), **kw)
        return i

    def link_neighbours(self, ids: list[int]) -> None:
        """``ids`` ordered right to left, all in one direction."""
        for right, left in zip(ids[:-1], ids[1:]):
            self.lanes[right].left_neighbour = left
            self.lanes[left].right_neighbour = right

    def build(self, rotation: float, shift: np.ndarray) -> VectorMap:
        c, s = np.cos(rotation), np.sin(rotation)
        T = np.array([[c, -s, shift[0]], [s, c, shift[1]], [0, 0, 1]])
        return VectorMap(self.lanes, self.drivable, self.crossings).transformed(T)


def _rect(x0, x1, y0, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def straight_road(rng: np.random.Generator, length: float = 240.0) -> VectorMap:
    b = _Builder()
    per_dir = int(rng.integers(1, 4))
    xs = np.linspace(-length / 2, length / 2, 25)
    forward, backward = [], []
    for i in range(per_dir):
        y = -(i + 0.5) * LANE_WIDTH
        forward.append(b.lane(np.stack([xs, np.full_like(xs, y)], 1)))
        backward.append(b.lane(np.stack([xs[::-1], np.full_like(xs, -y)], 1)))
    b.link_neighbours(forward)
    b.link_neighbours(backward)
    half = per_dir * LANE_WIDTH
    b.drivable.append(_rect(-length / 2, length / 2, -half, half))
    for x in rng.uniform(-60, 60, int(rng.integers(0, 3))):
        b.crossings.append(_rect(x - 2, x + 2, -half, half))
    return b.build(rng.uniform(-np.pi, np.pi), rng.uniform(-10, 10, 2))


def intersection(rng: np.random.Generator, arms: int = 4, arm_length: float = 110.0) -> VectorMap:
    """Arms at 0, 90, 180 (and 270) degrees; ``per_dir`` lanes each way on every arm."""
    b = _Builder()
    per_dir = int(rng.integers(1, 3))
    half = per_dir * LANE_WIDTH
    r0 = half + 3.0
    angles = [0.0, np.pi / 2, np.pi, 3 * np.pi / 2][:arms]
    incoming, outgoing = {}, {}
    for k, a in enumerate(angles):
        u = np.array([np.cos(a), np.sin(a)])        # outward along the arm
        n = np.array([-u[1], u[0]])                  # left of outward
        s = np.linspace(r0, arm_length, 20)
        outgoing[k] = [b.lane(s[:, None] * u + (-(i + 0.5) * LANE_WIDTH) * n) for i in range(per_dir)]
        incoming[k] = [b.lane((s[::-1, None] * u) + ((i + 0.5) * LANE_WIDTH) * n) for i in range(per_dir)]
        b.link_neighbours(outgoing[k])
        b.link_neighbours(incoming[k])
        ends = [r0 * u + half * n, arm_length * u + half * n, arm_length * u - half * n, r0 * u - half * n]
        b.drivable.append(np.array(ends))
        b.crossings.append(np.array([(r0 + 0.5) * u + half * n, (r0 + 4.5) * u + half * n,
                                     (r0 + 4.5) * u - half * n, (r0 + 0.5) * u - half * n]))
    b.drivable.append(_rect(-r0, r0, -r0, r0))
    for k in range(arms):
        for j in range(arms):
            if j == k:
                continue
            turn = (j - k) % 4   # 2: straight, 1: left (counter-clockwise), 3: right
            for i, lane_in in enumerate(incoming[k]):
                if turn == 2:
                    targets = [outgoing[j][i]]
                elif turn == 1:
                    targets = [outgoing[j][-1]] if i == per_dir - 1 else []
                else:
                    targets = [outgoing[j][0]] if i == 0 else []
                for lane_out in targets:
                    p0 = b.lanes[lane_in].centreline[-1]
                    p1 = b.lanes[lane_out].centreline[0]
                    control = np.zeros(2) if turn == 2 else _corner(b.lanes[lane_in].centreline, b.lanes[lane_out].centreline)
                    if turn == 2:
                        control = (p0 + p1) / 2
                    link = b.lane(_bezier(p0, control, p1), successors=[lane_out], is_intersection=True)
                    b.lanes[lane_in].successors.append(link)
    return b.build(rng.uniform(-np.pi, np.pi), rng.uniform(-10, 10, 2))


def _corner(into: np.ndarray, out_of: np.ndarray) -> np.ndarray:
    """Where the incoming lane's line meets the outgoing lane's line (the turn's Bezier control point)."""
    p, d = into[-1], into[-1] - into[-2]
    q, e = out_of[0], out_of[1] - out_of[0]
    A = np.array([d, -e]).T
    try:
        s = np.linalg.solve(A, q - p)
    except np.linalg.LinAlgError:
        return (p + q) / 2
    return p + s[0] * d


def random_map(rng: np.random.Generator) -> VectorMap:
    kind = rng.choice(["straight", "t_junction", "intersection"], p=[0.3, 0.3, 0.4])
    if kind == "straight":
        return straight_road(rng)
    return intersection(rng, arms=3 if kind == "t_junction" else 4)

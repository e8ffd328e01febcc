"""Procedural moving scenes: a textured background panning at constant velocity and textured objects of a few
classes moving on straight lines (bouncing off the borders), drawn far to near.

For any time t the scene renders an intensity image in (0, 1], per-pixel class labels and depth in metres, all
exact (no learned component), so they serve as ground truth for the event methods.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ("background", "disc", "box", "bar")


@dataclass
class SceneConfig:
    width: int = 64
    height: int = 48
    num_objects: tuple[int, int] = (2, 4)  # inclusive range
    object_speed: tuple[float, float] = (30.0, 120.0)  # px/s
    background_speed: tuple[float, float] = (0.0, 40.0)  # px/s
    object_depth: tuple[float, float] = (1.5, 6.0)  # m
    background_depth: tuple[float, float] = (8.0, 12.0)  # m, top row to bottom row gradient
    object_size: tuple[float, float] = (7.0, 15.0)  # px, radius / half-size


@dataclass
class _Object:
    cls: int
    x0: float
    y0: float
    vx: float
    vy: float
    size: float
    aspect: float
    depth: float
    base: float
    contrast: float
    freq: float
    phase: float


def _bounce(p0: float, v: float, t: float, lo: float, hi: float) -> float:
    """Position on [lo, hi] of a point moving at v that reflects off both ends (triangle wave)."""
    span = hi - lo
    s = (p0 - lo + v * t) % (2 * span)
    return lo + (s if s <= span else 2 * span - s)


class MovingScene:
    def __init__(self, config: SceneConfig, seed: int) -> None:
        self.cfg = config
        rng = np.random.default_rng(seed)
        w, h = config.width, config.height
        speed = rng.uniform(*config.background_speed)
        ang = rng.uniform(0, 2 * np.pi)
        self.bg_velocity = (speed * np.cos(ang), speed * np.sin(ang))
        # background texture: a few random plane waves (smooth, so it produces moderate event rates)
        self.bg_waves = [(rng.uniform(0.05, 0.35), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi),
                          rng.uniform(0.04, 0.1)) for _ in range(4)]
        self.bg_level = rng.uniform(0.3, 0.5)
        self.objects = []
        for _ in range(rng.integers(config.num_objects[0], config.num_objects[1] + 1)):
            cls = int(rng.integers(1, len(CLASS_NAMES)))
            speed = rng.uniform(*config.object_speed)
            ang = rng.uniform(0, 2 * np.pi)
            self.objects.append(_Object(
                cls=cls, x0=rng.uniform(0, w), y0=rng.uniform(0, h), vx=speed * np.cos(ang), vy=speed * np.sin(ang),
                size=rng.uniform(*config.object_size), aspect=rng.uniform(0.25, 0.45), depth=rng.uniform(*config.object_depth),
                base=rng.uniform(0.15, 0.9), contrast=rng.uniform(0.15, 0.35), freq=rng.uniform(0.6, 1.2),
                phase=rng.uniform(0, 2 * np.pi)))
        self.objects.sort(key=lambda o: -o.depth)  # far first, near objects drawn on top
        self._yy, self._xx = np.mgrid[0:h, 0:w].astype(np.float64)

    def _texture(self, o: _Object, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        # class-typical textures (discs: rings, boxes: checker, bars: stripes along the bar), random parameters
        if o.cls == 1:
            pattern = np.sin(o.freq * np.hypot(u, v) + o.phase)
        elif o.cls == 2:
            pattern = np.sign(np.sin(0.5 * o.freq * u + o.phase) * np.sin(0.5 * o.freq * v))
        else:
            pattern = np.sin(1.5 * o.freq * u + o.phase)
        return o.base + o.contrast * pattern

    def _mask(self, o: _Object, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        if o.cls == 1:
            return u * u + v * v <= o.size * o.size
        if o.cls == 2:
            return (np.abs(u) <= o.size * 0.8) & (np.abs(v) <= o.size * 0.8)
        return (np.abs(u) <= o.size * 1.4) & (np.abs(v) <= o.size * o.aspect)

    def render(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(intensity float32 (H, W) in (0, 1], labels uint8 (H, W), depth float32 (H, W) [m]) at t seconds."""
        cfg = self.cfg
        bx = self._xx - self.bg_velocity[0] * t
        by = self._yy - self.bg_velocity[1] * t
        img = np.full_like(bx, self.bg_level)
        for k, dirn, phase, amp in self.bg_waves:
            img += amp * np.sin(k * (np.cos(dirn) * bx + np.sin(dirn) * by) + phase)
        labels = np.zeros(img.shape, dtype=np.uint8)
        near, far = cfg.background_depth
        depth = near + (far - near) * (1.0 - self._yy / max(cfg.height - 1, 1))
        margin = 4.0
        for o in self.objects:
            cx = _bounce(o.x0, o.vx, t, -margin, cfg.width + margin)
            cy = _bounce(o.y0, o.vy, t, -margin, cfg.height + margin)
            u, v = self._xx - cx, self._yy - cy
            inside = self._mask(o, u, v)
            img = np.where(inside, self._texture(o, u, v), img)
            labels[inside] = o.cls
            depth = np.where(inside, o.depth, depth)
        return np.clip(img, 0.02, 1.0).astype(np.float32), labels, depth.astype(np.float32)

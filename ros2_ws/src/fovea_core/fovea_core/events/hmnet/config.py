"""HMNet configurations. Sizes are configurable; the schedule (strides 4/8/16, rates 1/3/9 at 5 ms) follows
the paper."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class HMNetConfig:
    width: int = 64
    height: int = 48
    num_classes: int = 4
    window_ns: int = 5_000_000  # one step = 5 ms of events
    strides: tuple[int, ...] = (4, 8, 16)  # memory cell size in pixels, fastest level first
    rates: tuple[int, ...] = (1, 3, 9)  # a level is updated every `rate` steps
    channels: tuple[int, ...] = (24, 48, 96)
    blocks: tuple[int, ...] = (1, 2, 3)  # residual conv blocks per memory update
    time_bins: int = 8  # discretised time of an event within its window (ESCA embedding)
    max_events_per_cell: int = 16  # ESCA attends to at most the latest K events of a cell
    heads: int = 2
    topdown_window: int = 3  # each cell attends to a window x window patch of the slower level
    neck_channels: int = 32
    max_depth_m: float = 30.0
    min_depth_m: float = 0.5
    extra: dict = field(default_factory=dict)

    @property
    def levels(self) -> int:
        return len(self.strides)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "HMNetConfig":
        d = dict(d)
        for k in ("strides", "rates", "channels", "blocks"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def validate(self) -> None:
        n = self.levels
        if not (len(self.rates) == len(self.channels) == len(self.blocks) == n):
            raise ValueError("strides, rates, channels and blocks need one entry per level")
        if self.rates[0] != 1:
            raise ValueError("the fastest level must run every step")
        for a, b in zip(self.strides, self.strides[1:]):
            if b != 2 * a:
                raise ValueError("each level halves the resolution of the previous one")
        if self.width % self.strides[-1] or self.height % self.strides[-1]:
            raise ValueError(f"width and height must be multiples of {self.strides[-1]}")


def cpu_config(**overrides) -> HMNetConfig:
    """The tiny configuration trained on CPU in this repository (64 x 48 simulated sensor)."""
    return replace(HMNetConfig(), **overrides)


def gpu_config(**overrides) -> HMNetConfig:
    """Larger configuration for a GPU: DSEC-like 640 x 480 input, wide memories (in the spirit of the paper's
    HMNet-B3; the exact paper widths are not reproduced here)."""
    base = HMNetConfig(width=640, height=480, channels=(128, 256, 256), blocks=(1, 3, 3), heads=4,
                       neck_channels=128, max_events_per_cell=32)
    return replace(base, **overrides)


def single_memory(cfg: HMNetConfig) -> HMNetConfig:
    """HMNet-1: one memory at stride 4, updated every step."""
    return replace(cfg, strides=cfg.strides[:1], rates=(1,), channels=cfg.channels[:1], blocks=cfg.blocks[:1])


def single_rate_baseline(cfg: HMNetConfig) -> HMNetConfig:
    """The 'conventional' recurrent model of the paper's Figure 1: same network (so equal capacity, identical
    parameter count), but every level runs every step."""
    return replace(cfg, rates=(1,) * cfg.levels)

"""One typed configuration for ImplicitO: BEV grid, sweep history, map channels, classes, horizon, model
sizes, training recipe.

``cpu_config()`` is the model trained and committed here (80 m x 80 m at 0.4 m, the issue's extent, with
narrow channels so a useful run takes tens of minutes on one shared CPU thread). ``gpu_config()`` is closer
to the paper's scale (the paper does not publish layer widths; these are our choice). ``tiny_config()`` is
for tests.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

# Agent classes predicted per query (index = output channel). AV2 categories map onto them in av2_reader.
CLASS_NAMES = ("vehicle", "pedestrian", "cyclist")


@dataclass(frozen=True)
class OccFlowConfig:
    # BEV grid in base_link of the latest sweep (x forward, y left), metres. Rasters are (C, ny, nx):
    # row = y index, column = x index, the layout grid_sample expects (grid[..., 0] = x, grid[..., 1] = y).
    x_range: tuple[float, float] = (-40.0, 40.0)
    y_range: tuple[float, float] = (-40.0, 40.0)
    resolution: float = 0.4
    # Height bins of the lidar voxelisation (base_link z; AV2's ego origin is ~0.4 m above the road).
    z_range: tuple[float, float] = (-1.0, 3.0)
    height_bins: int = 8
    sweeps: int = 5                  # lidar history N (10 Hz); missing sweeps are masked
    sweep_period: float = 0.1        # seconds between sweeps
    track_history: bool = True       # extra input: footprints of tracked objects over the same N frames
    # Prediction.
    horizon: float = 3.0             # seconds after the latest sweep
    flow_dt: float = 0.5             # reverse flow = displacement to where the occupant was flow_dt earlier
    waypoint_dt: float = 0.5         # evaluation waypoints every waypoint_dt up to horizon
    num_classes: int = len(CLASS_NAMES)
    # Model sizes.
    lidar_width: int = 32
    map_width: int = 16
    feature_dim: int = 64            # channels of Z (at 1/4 of the grid resolution)
    decoder_dim: int = 16            # query map channels = width of the query's hidden state h
    sample_dim: int = 8              # sample map channels: key = value at each sampled point
    offsets: int = 4                 # K offset points per query (sampled with the query point itself)
    max_offset: float = 40.0         # metres; offsets are tanh-bounded to this reach
    heads: int = 2                   # attention heads (split sample_dim)
    head_hidden: int = 32            # hidden width of the output MLP
    time_octaves: int = 3            # sin/cos of t at 3 octaves in the query embedding
    position_octaves: int = 0        # ... and of x, y (0: x, y enter linearly; the query map gives position)
    # Training recipe.
    lr: float = 2e-3
    weight_decay: float = 1e-4
    queries_per_sample: int = 8192
    near_actor_fraction: float = 0.5  # share of training queries drawn near agents (rest uniform)
    current_query_fraction: float = 0.25  # share of training queries at t = 0 (the rest uniform over 0-horizon)
    flow_weight: float = 0.5          # weight of the L1 flow loss (metres) against the BCE
    track_history_probability: float = 0.5  # training samples that get the tracked-object history input
    map_dropout: float = 0.1          # training samples whose map channels are masked (map-less operation)
    seed: int = 0

    # ---- derived ---------------------------------------------------------------------------------
    @property
    def nx(self) -> int:
        return self.grid.nx

    @property
    def ny(self) -> int:
        return self.grid.ny

    @property
    def grid(self):
        """The BEV grid these ranges and this resolution make (``fovea_core.occflow.grid.BevGrid``)."""
        from fovea_core.occflow.grid import BevGrid  # grid.py imports this module

        return BevGrid.of(self)

    @property
    def lidar_channels(self) -> int:
        """Per sweep: height bins + one validity plane; plus per frame one track footprint + one validity."""
        return self.sweeps * (self.height_bins + 1) + (2 * self.sweeps if self.track_history else 0)

    @property
    def waypoints(self) -> tuple[float, ...]:
        n = int(round(self.horizon / self.waypoint_dt))
        return tuple(round((i + 1) * self.waypoint_dt, 6) for i in range(n))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "OccFlowConfig":
        known = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()
                 if k in cls.__dataclass_fields__}
        return cls(**known)

    def replace(self, **changes) -> "OccFlowConfig":
        return replace(self, **changes)


def cpu_config() -> OccFlowConfig:
    return OccFlowConfig()


def gpu_config() -> OccFlowConfig:
    """80 m x 80 m at 0.2 m, wider streams and Z, more offsets (for a GPU; not trained here)."""
    return OccFlowConfig(resolution=0.2, height_bins=16, lidar_width=64, map_width=32, feature_dim=128,
                         decoder_dim=64, sample_dim=64, offsets=8, heads=4, head_hidden=128, position_octaves=4,
                         queries_per_sample=16384, lr=1e-3)


def tiny_config() -> OccFlowConfig:
    """A seconds-fast model for tests: 16 m x 16 m at 0.5 m."""
    return OccFlowConfig(x_range=(-8.0, 8.0), y_range=(-8.0, 8.0), resolution=0.5, height_bins=4, sweeps=3,
                         lidar_width=8, map_width=4, feature_dim=16, decoder_dim=8, sample_dim=8, offsets=4, heads=2,
                         head_hidden=16, max_offset=8.0, queries_per_sample=256)


CONFIGS = {"cpu": cpu_config, "gpu": gpu_config, "tiny": tiny_config}

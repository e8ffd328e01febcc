"""Feature maps of the 3D scene: the three TPV planes (or one BEV plane, or a dense voxel grid).

A *map* spans some of the volume's axes (0 = x, 1 = y, 2 = z). TPV uses the planes xy (top), yz (side) and
xz (front). A 3D point's feature is the sum of bilinear samples of its projection onto every map; a voxel's
feature is the maps broadcast along their missing axis and summed, so the representation costs
O(XY + YZ + XZ) features instead of O(XYZ).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

TPV_AXES = ((0, 1), (1, 2), (0, 2))


@dataclass(frozen=True)
class MapSpec:
    axes: tuple[int, ...]   # volume axes the map spans, in tensor dimension order
    shape: tuple[int, ...]  # cells along those axes
    pillar_points: int = 1  # image cross-attention reference points along the missing axis (2D maps)

    @property
    def num_cells(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def sample_map(feature_map: torch.Tensor, axes: tuple[int, ...], unit_points: torch.Tensor) -> torch.Tensor:
    """Bilinearly (trilinearly) sample a map at points given in unit volume coordinates.

    feature_map: (B, C, *shape) spanning ``axes``; unit_points: (B, P, S, 3) in [-1, 1] per volume axis
    (grid_sample convention, align_corners=False; outside -> zeros). Returns (B, C, P, S).
    """
    if len(axes) == 1:  # a 1D map is sampled as an image one pixel high
        grid = torch.stack([unit_points[..., axes[0]], torch.zeros_like(unit_points[..., 0])], dim=-1)
        return F.grid_sample(feature_map.unsqueeze(2), grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)
    if len(axes) == 2:  # grid_sample's last grid coordinate indexes the last tensor dimension
        grid = torch.stack([unit_points[..., axes[1]], unit_points[..., axes[0]]], dim=-1)
        return F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    grid = torch.stack([unit_points[..., axes[2]], unit_points[..., axes[1]], unit_points[..., axes[0]]], dim=-1)
    out = F.grid_sample(feature_map, grid.unsqueeze(3), mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.squeeze(-1)


def point_features(maps: list[torch.Tensor], specs: list[MapSpec], unit_points: torch.Tensor) -> torch.Tensor:
    """Sum of the samples of every map at each point. unit_points (B, P, 3) -> (B, P, C)."""
    total = None
    for fmap, spec in zip(maps, specs):
        sample = sample_map(fmap, spec.axes, unit_points.unsqueeze(2))[..., 0]  # (B, C, P)
        total = sample if total is None else total + sample
    return total.transpose(1, 2)


def voxel_features(maps: list[torch.Tensor], specs: list[MapSpec], voxel_shape: tuple[int, int, int]) -> torch.Tensor:
    """(B, C, X, Y, Z): every map resized to the voxel grid along its axes, broadcast over the others, summed."""
    total = None
    for fmap, spec in zip(maps, specs):
        target = tuple(voxel_shape[a] for a in spec.axes)
        if tuple(fmap.shape[2:]) != target:
            if len(spec.axes) == 1:
                fmap = F.interpolate(fmap, size=target, mode="linear", align_corners=False)
            elif len(spec.axes) == 2:
                fmap = F.interpolate(fmap, size=target, mode="bilinear", align_corners=False)
            else:
                fmap = F.interpolate(fmap, size=target, mode="trilinear", align_corners=False)
        view = [fmap.shape[0], fmap.shape[1], 1, 1, 1]
        for a in spec.axes:
            view[2 + a] = voxel_shape[a]
        fmap = fmap.reshape(view)
        total = fmap if total is None else total + fmap
    return total


def upsample_maps(maps: list[torch.Tensor], specs: list[MapSpec], factor: int) -> list[torch.Tensor]:
    if factor == 1:
        return maps
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}
    return [F.interpolate(m, scale_factor=factor, mode=mode[len(s.axes)], align_corners=False)
            for m, s in zip(maps, specs)]


class MapQueries(nn.Module):
    """Learnable queries and learnable positional embeddings, one row per map cell (the paper's TPV queries)."""

    def __init__(self, specs: list[MapSpec], dim: int):
        super().__init__()
        self.specs = list(specs)
        self.queries = nn.ParameterList([nn.Parameter(torch.randn(s.num_cells, dim) * 0.02) for s in specs])
        self.positions = nn.ParameterList([nn.Parameter(torch.randn(s.num_cells, dim) * 0.02) for s in specs])

    def forward(self, batch: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return ([q.unsqueeze(0).expand(batch, -1, -1) for q in self.queries],
                [p.unsqueeze(0).expand(batch, -1, -1) for p in self.positions])


def queries_to_maps(queries: list[torch.Tensor], specs: list[MapSpec]) -> list[torch.Tensor]:
    """(B, cells, C) per map -> (B, C, *shape)."""
    return [q.transpose(1, 2).reshape(q.shape[0], q.shape[2], *s.shape) for q, s in zip(queries, specs)]

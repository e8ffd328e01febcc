"""TPVFormer attention, built only from ops ONNX has (Linear, softmax, GridSample): no custom kernels.

* ``ImageCrossAttention``: every query owns reference points along its pillar; they are projected into each
  camera; the query samples image features around them with learned offsets and weights (deformable
  attention as in BEVFormer/TPVFormer) and averages over the cameras that see its pillar.
* ``HybridAttention`` (cross-view hybrid attention): each query samples, with learned 3D offsets, its own map
  and the other maps at points along its pillar, so the three planes exchange information.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .planes import MapSpec, sample_map
from .projection import pixels_to_grid, project_points


class ImageCrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, levels: int, refs: int, offsets_per_ref: int):
        super().__init__()
        self.dim, self.heads, self.levels, self.refs, self.k = dim, heads, levels, refs, offsets_per_ref
        samples = heads * levels * refs * offsets_per_ref
        self.offsets = nn.Linear(dim, samples * 2)
        self.weights = nn.Linear(dim, samples)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.offsets.weight)
        with torch.no_grad():  # start from small, spread-out offsets like deformable DETR
            self.offsets.bias.copy_(torch.randn(samples * 2) * 0.5)

    def forward(self, query: torch.Tensor, ref_points: torch.Tensor, features: list[torch.Tensor],
                ego2img: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """query (B, Q, C); ref_points (Q, R, 3) metres; features: per level (B, N, C, h, w);
        ego2img (B, N, 4, 4) for ``image_size`` (w, h). Returns (B, Q, C)."""
        B, Q, C = query.shape
        H, L, R, K = self.heads, self.levels, self.refs, self.k
        N = features[0].shape[1]
        offsets = self.offsets(query).view(B, Q, H, L, R, K, 2)
        weights = self.weights(query).view(B, Q, H, L * R * K).softmax(-1).view(B, Q, H, L, R, K)
        outputs = []
        for b in range(B):
            pixels, _, visible = project_points(ref_points, ego2img[b], image_size)  # (N, Q, R, 2), (N, Q, R)
            base = pixels_to_grid(pixels, image_size)
            hit = visible.any(-1).to(query.dtype)                                   # (N, Q): camera sees pillar
            count = hit.sum(0).clamp(min=1.0)                                        # (Q,)
            acc = query.new_zeros(N, H, C // H, Q)
            for lvl in range(L):
                feat = features[lvl][b]                                              # (N, C, h, w)
                h, w = feat.shape[-2:]
                value = self.value(feat.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(N * H, C // H, h, w)
                scale = torch.tensor([2.0 / w, 2.0 / h], dtype=query.dtype)          # offsets in level pixels
                off = offsets[b, :, :, lvl] * scale                                  # (Q, H, R, K, 2)
                grid = base.unsqueeze(2).unsqueeze(4) + off.unsqueeze(0)             # (N, Q, H, R, K, 2)
                grid = grid.permute(0, 2, 1, 3, 4, 5).reshape(N * H, Q, R * K, 2)
                sampled = F.grid_sample(value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
                wl = weights[b, :, :, lvl].permute(1, 0, 2, 3).reshape(1, H, 1, Q, R * K)
                acc = acc + (sampled.view(N, H, C // H, Q, R * K) * wl).sum(-1)
            acc = acc * hit.view(N, 1, 1, Q)
            outputs.append(acc.sum(0).reshape(C, Q).transpose(0, 1) / count.unsqueeze(1))
        return self.out(torch.stack(outputs))


class HybridAttention(nn.Module):
    """Cross-view hybrid attention over all maps; ``ref_points`` per map give each query's pillar."""

    def __init__(self, dim: int, heads: int, specs: list[MapSpec], points: int, offsets_per_ref: int):
        super().__init__()
        self.dim, self.heads, self.specs, self.points, self.k = dim, heads, list(specs), points, offsets_per_ref
        self.samples = heads * len(specs) * points * offsets_per_ref
        self.offsets = nn.Linear(dim, self.samples * 3)
        self.weights = nn.Linear(dim, self.samples)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.offsets.weight)
        with torch.no_grad():
            self.offsets.bias.copy_(torch.randn(self.samples * 3) * 0.02)

    def forward(self, queries: list[torch.Tensor], positions: list[torch.Tensor],
                unit_refs: list[torch.Tensor]) -> list[torch.Tensor]:
        """queries/positions: per map (B, Q_m, C); unit_refs: per map (Q_m, P, 3) in unit volume coords."""
        B, _, C = queries[0].shape
        H, M, P, K = self.heads, len(self.specs), self.points, self.k
        values = []
        for q, spec in zip(queries, self.specs):
            v = self.value(q).transpose(1, 2).reshape(B * H, C // H, *spec.shape)
            values.append(v)
        outs = []
        for q, pos, refs in zip(queries, positions, unit_refs):
            Q = q.shape[1]
            qp = q + pos
            off = self.offsets(qp).view(B, Q, H, M, P, K, 3)
            wts = self.weights(qp).view(B, Q, H, M * P * K).softmax(-1).view(B, Q, H, M, P * K)
            pts = refs.view(1, Q, 1, 1, P, 1, 3) + off                                # (B, Q, H, M, P, K, 3)
            acc = q.new_zeros(B, H, C // H, Q)
            for m, spec in enumerate(self.specs):
                grid = pts[:, :, :, m].permute(0, 2, 1, 3, 4, 5).reshape(B * H, Q, P * K, 3)
                sampled = sample_map(values[m], spec.axes, grid).view(B, H, C // H, Q, P * K)
                acc = acc + (sampled * wts[:, :, :, m].permute(0, 2, 1, 3).unsqueeze(2)).sum(-1)
            outs.append(self.out(acc.reshape(B, C, Q).transpose(1, 2)))
        return outs

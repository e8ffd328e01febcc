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
        sparse = not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())
        outputs = []
        for b in range(B):
            pixels, _, visible = project_points(ref_points, ego2img[b], image_size)  # (N, Q, R, 2), (N, Q, R)
            base = pixels_to_grid(pixels, image_size)
            hit = visible.any(-1)                                                     # (N, Q): camera sees pillar
            count = hit.to(query.dtype).sum(0).clamp(min=1.0)                        # (Q,)
            values = [self.value(f[b].flatten(2).transpose(1, 2)).transpose(1, 2).reshape(
                N * H, C // H, *f.shape[-2:]) for f in features]                    # per level (N*H, C/H, h, w)
            if sparse:
                acc = self._sample_visible(values, base, hit, offsets[b], weights[b])
            else:
                acc = self._sample_all(values, base, hit, offsets[b], weights[b])
            outputs.append(acc.reshape(C, Q).transpose(0, 1) / count.unsqueeze(1))
        return self.out(torch.stack(outputs))

    def _level_grid(self, base, offsets, lvl: int, value):
        h, w = value.shape[-2:]
        scale = torch.tensor([2.0 / w, 2.0 / h], dtype=offsets.dtype)          # offsets in level pixels
        return base.unsqueeze(2).unsqueeze(4) + (offsets[:, :, lvl] * scale).unsqueeze(0)  # (N, Q, H, R, K, 2)

    def _sample_all(self, values, base, hit, offsets, weights):
        """Every camera samples for every query, then cameras that miss the pillar are masked out: one graph of
        fixed shape (what ONNX / TensorRT get)."""
        N, Q = hit.shape
        H, R, K = self.heads, self.refs, self.k
        acc = None
        for lvl, value in enumerate(values):
            grid = self._level_grid(base, offsets, lvl, value)
            grid = grid.permute(0, 2, 1, 3, 4, 5).reshape(N * H, Q, R * K, 2)
            sampled = F.grid_sample(value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            wl = weights[:, :, lvl].permute(1, 0, 2, 3).reshape(1, H, 1, Q, R * K)
            term = (sampled.view(N, H, -1, Q, R * K) * wl).sum(-1)
            acc = term if acc is None else acc + term
        return (acc * hit.to(acc.dtype).view(N, 1, 1, Q)).sum(0)                 # (H, C/H, Q)

    def _sample_visible(self, values, base, hit, offsets, weights):
        """The same sum, sampling each camera only for the queries whose pillar it sees (most see one or two
        of six): the same numbers as ``_sample_all`` (tested) at a fraction of the work, for eager PyTorch."""
        N, Q = hit.shape
        H, R, K = self.heads, self.refs, self.k
        acc = None
        for n in range(N):
            idx = torch.nonzero(hit[n]).squeeze(1)
            if idx.numel() == 0:
                continue
            part = None
            for lvl, value in enumerate(values):
                grid = self._level_grid(base[n:n + 1, idx], offsets[idx], lvl, value)[0]   # (q, H, R, K, 2)
                grid = grid.permute(1, 0, 2, 3, 4).reshape(H, -1, R * K, 2)
                v = value.view(N, H, -1, *value.shape[-2:])[n]                              # (H, C/H, h, w)
                sampled = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
                wl = weights[idx, :, lvl].permute(1, 0, 2, 3).reshape(H, 1, -1, R * K)
                term = (sampled * wl).sum(-1)                                               # (H, C/H, q)
                part = term if part is None else part + term
            full = part.new_zeros(H, part.shape[1], Q).index_add(2, idx, part)
            acc = full if acc is None else acc + full
        return acc if acc is not None else values[0].new_zeros(H, values[0].shape[1], Q)


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

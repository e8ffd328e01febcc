"""ImplicitO (Agro, Sykora, Casas, Urtasun, CVPR 2023): two-stream BEV encoder -> feature map Z; an
implicit decoder answers any continuous query (x, y, t) with per-class occupancy and reverse flow; the
explicit dense-grid baseline head on the same encoder.

Choices the paper leaves open (ours; also in models/occflow/MODEL_CARD.md):
- Streams: lidar (masked sweep history + optional tracked-object history) and map raster, each a strided
  conv stem to 1/4 resolution; fused by concatenation + 1x1 conv; multi-scale: residual blocks at 1/4,
  1/8 and 1/16 (dilated at 1/16), upsampled and summed into Z at 1/4. GroupNorm (batch 1-2 on a CPU).
- Query embedding: Fourier features of (x, y, t) normalised to [-1, 1] (6 octaves) -> 2-layer MLP.
- Decoder: Z is projected once per sweep into three maps (query, key, value; ``decoder_dim`` each). Per
  query: the query map bilinearly sampled at (x, y) + the embedding = h; an MLP on h -> K offsets
  (tanh-bounded to ``max_offset`` metres, so a query reaches ~40 m, e.g. up a lane); key and value maps
  sampled at (x, y) + offset_k (GridSample, so ONNX/TensorRT run it without plugins); multi-head
  cross-attention of h over the K samples, keys carrying an embedding of their offset; MLP on
  [h, attended] -> per class an occupancy logit and reverse flow (dx, dy) in metres over ``flow_dt``.
- Dense baseline (Occupancy-Flow-Fields style): Z upsampled x2 twice with convs to the full grid, a 1x1
  conv -> every time slice (t = 0 and each waypoint) x classes x (occupancy, dx, dy).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import OccFlowConfig
from .vector_map import MAP_CHANNELS


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(4, ch), ch)


def conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         _norm(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    def __init__(self, ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.a = conv(ch, ch, dilation=dilation)
        self.b = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation, bias=False), _norm(ch))

    def forward(self, x):
        return F.relu(x + self.b(self.a(x)))


class Encoder(nn.Module):
    """(lidar (B, Cl, ny, nx), map (B, Cm, ny, nx)) -> Z (B, feature_dim, ny/4, nx/4)."""

    def __init__(self, cfg: OccFlowConfig) -> None:
        super().__init__()
        w, m, d = cfg.lidar_width, cfg.map_width, cfg.feature_dim
        self.lidar = nn.Sequential(conv(cfg.lidar_channels, w, 2), conv(w, 2 * w, 2), ResBlock(2 * w))
        self.map = nn.Sequential(conv(len(MAP_CHANNELS), m, 2), conv(m, 2 * m, 2), ResBlock(2 * m))
        self.fuse = nn.Sequential(nn.Conv2d(2 * w + 2 * m, d, 1, bias=False), _norm(d), nn.ReLU(inplace=True))
        self.s4 = ResBlock(d)
        self.s8 = nn.Sequential(conv(d, d, 2), ResBlock(d))
        self.s16 = nn.Sequential(conv(d, d, 2), ResBlock(d, dilation=2))

    def forward(self, lidar, map_raster):
        x = self.fuse(torch.cat([self.lidar(lidar), self.map(map_raster)], 1))
        s4 = self.s4(x)
        s8 = self.s8(s4)
        s16 = self.s16(s8)
        s8 = s8 + F.interpolate(s16, size=s8.shape[-2:], mode="bilinear", align_corners=False)
        return s4 + F.interpolate(s8, size=s4.shape[-2:], mode="bilinear", align_corners=False)


class FourierEmbedding(nn.Module):
    def __init__(self, dim: int, octaves: int = 6) -> None:
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(octaves)) * math.pi, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(3 * 2 * octaves + 3, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))

    def forward(self, q):  # q (B, Q, 3) in [-1, 1]
        angles = (q[..., None] * self.freqs).flatten(-2)
        return self.mlp(torch.cat([q, torch.sin(angles), torch.cos(angles)], -1))


class ImplicitDecoder(nn.Module):
    """(decoder maps (B, 3*Dd, h, w), queries (B, Q, 3) metric x, y [m] and t [s]) ->
    (occupancy logits (B, Q, C), reverse flow (B, Q, C, 2) metres)."""

    def __init__(self, cfg: OccFlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, k = cfg.decoder_dim, cfg.offsets
        self.embed = FourierEmbedding(d)
        self.offset_mlp = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, 2 * k))
        self.offset_embed = nn.Linear(2, d)
        self.q_proj = nn.Linear(d, d)
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(inplace=True), nn.Linear(d, 3 * cfg.num_classes))
        lo = torch.tensor([cfg.x_range[0], cfg.y_range[0]])
        span = torch.tensor([cfg.x_range[1] - cfg.x_range[0], cfg.y_range[1] - cfg.y_range[0]])
        self.register_buffer("lo", lo, persistent=False)
        self.register_buffer("span", span, persistent=False)

    def forward(self, maps, queries):
        cfg, d = self.cfg, self.cfg.decoder_dim
        B, Q = queries.shape[:2]
        xy = (queries[..., :2] - self.lo) / self.span * 2 - 1                        # (B, Q, 2)
        t = queries[..., 2:3] / cfg.horizon * 2 - 1
        centre = F.grid_sample(maps[:, :d], xy[:, :, None], align_corners=False)[..., 0].transpose(1, 2)
        h = centre + self.embed(torch.cat([xy, t], -1))                               # (B, Q, d)
        offsets = torch.tanh(self.offset_mlp(h)).reshape(B, Q, cfg.offsets, 2)      # x max_offset metres
        where = xy[:, :, None] + offsets * (2 * cfg.max_offset / self.span)
        # Channel-first throughout: grid_sample returns (B, 2d, Q, K); permuting it would copy Q*K*2d values.
        kv = F.grid_sample(maps[:, d:], where, align_corners=False)
        heads, dh = cfg.heads, d // cfg.heads
        q = self.q_proj(h)                                                             # (B, Q, d)
        qh = q.transpose(1, 2).reshape(B, heads, dh, Q, 1)
        logits = (kv[:, :d].reshape(B, heads, dh, Q, cfg.offsets) * qh).sum(2)        # (B, heads, Q, K)
        # The keys carry an embedding W o_k of their offset: q . (k + W o_k) = q . k + (W^T q) . o_k,
        # computed per head without materialising the (Q, K, d) embeddings.
        wq = (q.reshape(B, Q, heads, 1, dh) * self.offset_embed.weight.t().reshape(1, 1, 2, heads, dh).transpose(2, 3)).sum(-1)
        logits = logits + torch.einsum("bqhc,bqkc->bhqk", wq, offsets) \
            + (q.reshape(B, Q, heads, dh) * self.offset_embed.bias.reshape(heads, dh)).sum(-1).transpose(1, 2)[..., None]
        weights = torch.softmax(logits / math.sqrt(dh), -1)                             # over the K samples
        attended = (kv[:, d:].reshape(B, heads, dh, Q, cfg.offsets) * weights[:, :, None]).sum(-1)
        attended = attended.reshape(B, d, Q).transpose(1, 2)
        out = self.head(torch.cat([h, attended], -1))
        C = cfg.num_classes
        return out[..., :C], out[..., C:].reshape(B, Q, C, 2)


class DenseHead(nn.Module):
    """Z -> (occupancy logits (B, T, C, ny, nx), reverse flow (B, T, C, 2, ny, nx)) for the time slices
    ``dense_times(cfg)``, at the full grid resolution."""

    def __init__(self, cfg: OccFlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.feature_dim
        self.up1 = conv(d, d // 2)
        self.up2 = conv(d // 2, d // 2)
        self.times = len(dense_times(cfg))
        self.out = nn.Conv2d(d // 2, self.times * 3 * cfg.num_classes, 1)

    def forward(self, z):
        cfg = self.cfg
        x = self.up1(F.interpolate(z, scale_factor=2.0, mode="bilinear", align_corners=False))
        x = self.up2(F.interpolate(x, size=(cfg.ny, cfg.nx), mode="bilinear", align_corners=False))
        y = self.out(x).reshape(z.shape[0], self.times, 3, cfg.num_classes, cfg.ny, cfg.nx)
        return y[:, :, 0], y[:, :, 1:].permute(0, 1, 3, 2, 4, 5)


def dense_times(cfg: OccFlowConfig) -> tuple[float, ...]:
    return (0.0, *cfg.waypoints)


class ImplicitO(nn.Module):
    """Encoder + decoder-map projection + implicit decoder (the method)."""

    def __init__(self, cfg: OccFlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.project = nn.Conv2d(cfg.feature_dim, 3 * cfg.decoder_dim, 1)
        self.decoder = ImplicitDecoder(cfg)

    def features(self, lidar, map_raster):
        """Once per sweep: the decoder's maps."""
        return self.project(self.encoder(lidar, map_raster))

    def forward(self, lidar, map_raster, queries):
        return self.decoder(self.features(lidar, map_raster), queries)


class DenseGrid(nn.Module):
    """Encoder + dense head (the explicit-grid baseline)."""

    def __init__(self, cfg: OccFlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.head = DenseHead(cfg)

    def forward(self, lidar, map_raster):
        return self.head(self.encoder(lidar, map_raster))


class FeatureEncoder(nn.Module):
    """What the node runs once per sweep (exported on its own): inputs -> decoder maps."""

    def __init__(self, model: ImplicitO) -> None:
        super().__init__()
        self.model = model

    def forward(self, lidar, map_raster):
        return self.model.features(lidar, map_raster)


MODELS = {"implicit": ImplicitO, "dense": DenseGrid}

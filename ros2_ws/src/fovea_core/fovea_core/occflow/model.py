"""ImplicitO (Agro, Sykora, Casas, Urtasun, CVPR 2023): two-stream BEV encoder -> feature map Z; an
implicit decoder answers any continuous query (x, y, t) with per-class occupancy and reverse flow; the
explicit dense-grid baseline head on the same encoder.

Choices the paper leaves open (ours; also in models/occflow/MODEL_CARD.md):
- Streams: lidar (masked sweep history + optional tracked-object history) and map raster, each a strided
  conv stem to 1/4 resolution; fused by concatenation + 1x1 conv; multi-scale: residual blocks at 1/4,
  1/8 and 1/16 (dilated at 1/16), upsampled and summed into Z at 1/4. GroupNorm (batch 1-2 on a CPU).
- Query embedding: one linear layer on (x, y, t) normalised to [-1, 1] and their sines / cosines at
  ``time_octaves`` (t) and ``position_octaves`` (x, y) octaves.
- Decoder (``ImplicitDecoder``, sized for a CPU: its cost per query is what the method is about): Z is
  projected once per sweep into a query map (``decoder_dim``) and a sample map (``sample_dim``). Per query:
  both maps bilinearly sampled at (x, y) in one GridSample; the query map's part + the embedding, ReLU = h;
  one linear layer on h -> K offsets (tanh-bounded to ``max_offset`` metres, so a query reaches ~40 m, e.g.
  up a lane), the attention query and the keys' offset weights; the sample map at the K offset points in
  a second GridSample (ONNX/TensorRT run it without plugins); multi-head cross-attention of the query over
  the K + 1 samples, the query point's and the offsets' (keys = values = the samples, keys also scored by
  their offset); MLP on [h, attended] -> per class an occupancy logit and reverse flow (dx, dy) in metres
  over ``flow_dt``.
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

EDGE_MARGIN = 5e-4   # cells; see ImplicitDecoder.inner


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


class ImplicitDecoder(nn.Module):
    """(decoder maps (B, decoder_dim + sample_dim, h, w), queries (B, Q, 3) metric x, y [m] and t [s]) ->
    (occupancy logits (B, Q, C), reverse flow (B, Q, C, 2) metres).

    Channel-first inside, (B, channels, Q), so every pointwise layer is one GEMM over all queries and every
    elementwise op runs over long contiguous rows. Per query:
      1. both maps bilinearly sampled at (x, y) in one ``grid_sample``; the query map's part (first
         ``decoder_dim`` channels) plus one linear layer on the query's features [x, y, t, sin/cos of t
         (and of x, y) at a few octaves] (the fused time and position embedding), ReLU: h;
      2. one linear layer on h gives, at once, the K offsets (tanh-bounded to ``max_offset`` metres), the
         attention query a and per head a 2-vector u (the key's offset embedding, below);
      3. the sample map (last ``sample_dim`` channels) at the K offset points in a second ``grid_sample``,
         after its value at the query point from step 1: (B, sample_dim, K + 1, Q). The sampled vectors are
         the keys and the values; heads split the channels;
      4. logits = a . s_k + u . o_k (o_k the k-th offset, 0 for the query point itself; the usual
         1/sqrt(dh) is learned into a, initialised with it); softmax over the K + 1 samples;
         attended = sum_k w_k s_k;
      5. MLP([h, attended]) -> per class an occupancy logit and reverse flow (dx, dy).
    The paper's "linear layer on [Z(q), embedding(q)]" is split into a projection of Z done once per sweep
    (bilinear sampling commutes with a 1x1 projection) and the embedding's linear layer done per query; the
    same holds for the keys' and values' projections, so per query only sampling and small GEMMs remain.
    Sample points are clamped to just inside the grid's outer cell centres: ONNX Runtime's GridSample is
    several times slower on points outside the input or on its last cell centre, and a clamped point reads
    the edge cell (= border padding, which ONNX Runtime runs ~7x slower than this clamp).
    The query normalisation is a 1x1 conv with a fixed diagonal weight, not a broadcast multiply-add:
    ONNX Runtime moved the multiply-add past the input's transpose onto the (B, Q, 3) layout, where
    broadcasting over a last axis of 3 cost ~1.3 ms per 10k queries (the conv: ~0.1 ms)."""

    def __init__(self, cfg: OccFlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, s, k, heads = cfg.decoder_dim, cfg.sample_dim, cfg.offsets, cfg.heads
        if s % heads:
            raise ValueError(f"sample_dim {s} is not divisible by heads {heads}")
        self.register_buffer("time_freqs", ((2.0 ** torch.arange(cfg.time_octaves)) * math.pi)[:, None],
                             persistent=False)
        self.register_buffer("position_freqs", ((2.0 ** torch.arange(cfg.position_octaves)) * math.pi)[:, None],
                             persistent=False)
        self.embed = nn.Conv1d(3 + 2 * cfg.time_octaves + 4 * cfg.position_octaves, d, 1)
        self.mix = nn.Conv1d(d, 2 * k + s + 2 * heads, 1)
        self.hidden = nn.Conv1d(d + s, cfg.head_hidden, 1)
        self.out = nn.Conv1d(cfg.head_hidden, 3 * cfg.num_classes, 1)
        # (x, y, t) -> [-1, 1]: x, y over the grid (grid_sample's convention), t over the horizon
        lo = torch.tensor([cfg.x_range[0], cfg.y_range[0], 0.0])[:, None]
        span = torch.tensor([cfg.x_range[1] - cfg.x_range[0], cfg.y_range[1] - cfg.y_range[0], cfg.horizon])[:, None]
        # as a 1x1 conv (weight (3, 3, 1) diagonal, bias (3,)); why a conv: see the class docstring
        self.register_buffer("q_scale", torch.diag(2.0 / span[:, 0])[:, :, None], persistent=False)
        self.register_buffer("q_shift", (-2.0 * lo / span - 1.0)[:, 0], persistent=False)
        self.register_buffer("reach", 2 * cfg.max_offset / span[:2], persistent=False)   # offset 1 -> [-1, 1] units
        # The outer cell centres of the decoder maps (1/4 of the grid), in grid_sample's [-1, 1], moved
        # EDGE_MARGIN cells inwards: a point exactly on the last centre has its far bilinear neighbour
        # outside the map, which sends ONNX Runtime's GridSample down its bounds-checked path (~3-4x slower
        # per point); the margin changes a sampled value by EDGE_MARGIN of the difference to the next cell.
        cells = torch.tensor([[cfg.nx], [cfg.ny]], dtype=torch.float32) / 4.0
        self.register_buffer("inner", 1.0 - (1.0 + 2.0 * EDGE_MARGIN) / cells, persistent=False)
        with torch.no_grad():   # start with the offsets on a circle of ~4 m around the query (then learned)
            self.mix.weight[:2 * k].mul_(0.1)
            self.mix.weight[2 * k:2 * k + s].mul_(1.0 / math.sqrt(s // heads))
            angle = torch.arange(k) * (2 * math.pi / k)
            ring = min(4.0 / cfg.max_offset, 0.5) * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
            self.mix.bias[:2 * k] = torch.atanh(ring).reshape(-1)

    def forward(self, maps, queries):
        cfg = self.cfg
        d, s, k, heads = cfg.decoder_dim, cfg.sample_dim, cfg.offsets, cfg.heads
        dh = s // heads
        B, Q = queries.shape[:2]
        q = F.conv1d(queries.transpose(1, 2), self.q_scale, self.q_shift)                # (B, 3, Q) in [-1, 1]
        xy, t = q[:, :2], q[:, 2:]
        features = [q, torch.sin(self.time_freqs * t), torch.cos(self.time_freqs * t)]
        if cfg.position_octaves:
            px, py = self.position_freqs * xy[:, :1], self.position_freqs * xy[:, 1:]
            features += [torch.sin(px), torch.cos(px), torch.sin(py), torch.cos(py)]
        inside = torch.minimum(torch.maximum(xy, -self.inner), self.inner)
        # both maps at the query point in one lookup: the query map's part makes h, the sample map's part is
        # the first of the K + 1 attended samples
        centre = F.grid_sample(maps, inside.transpose(1, 2)[:, None], align_corners=False)    # (B, d + s, 1, Q)
        h = torch.relu(centre[:, :d, 0] + self.embed(torch.cat(features, 1)))         # (B, d, Q)
        m = self.mix(h)                                                                # (B, 2K + s + 2H, Q)
        moved = torch.tanh(m[:, :2 * k]).reshape(B, k, 2, Q)                            # x max_offset metres
        points = torch.minimum(torch.maximum(xy[:, None] + moved * self.reach, -self.inner), self.inner)
        sampled = torch.cat([centre[:, d:], F.grid_sample(maps[:, d:], points.transpose(2, 3), align_corners=False)],
                            2)                                                         # (B, s, K + 1, Q)
        # offset 0 (the query point itself) first, then the K learned ones
        offsets = torch.cat([torch.zeros_like(moved[:, :1]), moved], 1)                # (B, K + 1, 2, Q)
        sampled = sampled.reshape(B, heads, dh, k + 1, Q)
        a = m[:, 2 * k:2 * k + s].reshape(B, heads, dh, 1, Q)        # the 1/sqrt(dh) scale is learned into mix
        u = m[:, 2 * k + s:].reshape(B, heads, 1, 2, Q)
        logits = (sampled * a).sum(2) + (u * offsets[:, None]).sum(3)                  # (B, heads, K + 1, Q)
        # softmax over the K + 1 samples (axis 2) written out: ONNX Runtime's Softmax on a non-last axis
        # transposes internally and cost more than the rest of the attention here
        weights = torch.exp(logits - logits.amax(2, keepdim=True))
        weights = weights / weights.sum(2, keepdim=True)
        attended = (sampled * weights[:, :, None]).sum(3).reshape(B, s, Q)
        out = self.out(torch.relu(self.hidden(torch.cat([h, attended], 1))))           # (B, 3C, Q)
        C = cfg.num_classes
        return out[:, :C].transpose(1, 2), out[:, C:].reshape(B, C, 2, Q).permute(0, 3, 1, 2)


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
        self.project = nn.Conv2d(cfg.feature_dim, cfg.decoder_dim + cfg.sample_dim, 1)
        self.decoder = ImplicitDecoder(cfg)

    def features(self, lidar, map_raster):
        """Once per sweep: the decoder's maps (query map + sample map, a 1x1 projection of Z)."""
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

"""TPVFormer: image backbone + FPN, TPV queries refined by HCAB x N and HAB x M blocks, MLP decoder.

``variant`` selects the scene representation for the ablation with everything else equal:
``"tpv"`` (three planes), ``"bev"`` (one xy plane with the same feature budget plus a learned per-height
embedding so it can decode z) and ``"voxel"`` (a dense X x Y x Z grid of queries).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import HybridAttention, ImageCrossAttention
from .config import TPVConfig
from .planes import (TPV_AXES, MapQueries, MapSpec, point_features, queries_to_maps, upsample_maps,
                     voxel_features)
from .projection import metric_to_unit, pillar_reference_points, pixels_to_grid, project_points


# ---------------------------------------------------------------- backbone (plain torch ResNet) + FPN
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        return F.relu(self.body(x) + identity)


BACKBONES = {  # block, blocks per stage, stage widths, stem width
    "tiny": (BasicBlock, (1, 1, 1, 1), (16, 32, 64, 96), 16),
    "small": (BasicBlock, (2, 2, 2, 2), (32, 64, 128, 192), 32),  # 2x the widths, 2 blocks per stage
    "resnet50": (Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), 64),
    "resnet101": (Bottleneck, (3, 4, 23, 3), (64, 128, 256, 512), 64),
}


class ResNet(nn.Module):
    """ResNet with stages at strides 4, 8, 16, 32 (the tiny one keeps stride 2 stem and no max-pool)."""

    def __init__(self, name: str):
        super().__init__()
        block, depths, widths, stem = BACKBONES[name]
        tiny = name in ("tiny", "small")  # the CPU backbones: stride-2 stem, no max-pool
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3 if tiny else 7, 2, 1 if tiny else 3, bias=False),
                                  nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
                                  nn.Identity() if tiny else nn.MaxPool2d(3, 2, 1))
        stages, cin = [], stem
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, width, 2 if (j == 0 and (i > 0 or tiny)) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.channels = [w * block.expansion for w in widths]

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class FPN(nn.Module):
    """Top-down feature pyramid over all stages; returns the finest ``levels`` outputs (finest first), so
    small CPU inputs keep usable resolution (strides 4 and 8) while still getting the deep stages' context."""

    def __init__(self, in_channels: list[int], dim: int, levels: int):
        super().__init__()
        self.levels = levels
        self.lateral = nn.ModuleList([nn.Conv2d(c, dim, 1) for c in in_channels])
        self.smooth = nn.ModuleList([nn.Conv2d(dim, dim, 3, 1, 1) for _ in range(levels)])

    def forward(self, feats):
        lat = [l(f) for l, f in zip(self.lateral, feats)]
        for i in range(len(lat) - 2, -1, -1):
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
        return [s(x) for s, x in zip(self.smooth, lat[:self.levels])]


# ---------------------------------------------------------------- encoder blocks
class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))

    def forward(self, x):
        return self.net(x)


class TPVBlock(nn.Module):
    """HCAB (with image cross-attention) or HAB (without): hybrid attention, [cross-attention], FFN."""

    def __init__(self, cfg: TPVConfig, specs: list[MapSpec], cross: bool, dim: int):
        super().__init__()
        self.hybrid = HybridAttention(dim, cfg.num_heads, specs, cfg.hybrid_points, cfg.offsets_per_ref)
        self.norm1 = nn.ModuleList([nn.LayerNorm(dim) for _ in specs])
        self.cross = nn.ModuleList([ImageCrossAttention(dim, cfg.num_heads, cfg.fpn_levels, s.pillar_points,
                                                        cfg.offsets_per_ref) for s in specs]) if cross else None
        self.norm2 = nn.ModuleList([nn.LayerNorm(dim) for _ in specs]) if cross else None
        self.ffn = nn.ModuleList([FFN(dim, cfg.ffn_dim * dim // cfg.embed_dim) for _ in specs])
        self.norm3 = nn.ModuleList([nn.LayerNorm(dim) for _ in specs])

    def forward(self, queries, positions, hybrid_refs, image_refs, features, ego2img, image_size):
        mixed = self.hybrid(queries, positions, hybrid_refs)
        queries = [n(q + m) for n, q, m in zip(self.norm1, queries, mixed)]
        if self.cross is not None:
            queries = [n(q + ca(q + p, r, features, ego2img, image_size))
                       for n, ca, q, p, r in zip(self.norm2, self.cross, queries, positions, image_refs)]
        return [n(q + f(q)) for n, f, q in zip(self.norm3, self.ffn, queries)]


# ---------------------------------------------------------------- the model
def map_specs(cfg: TPVConfig, variant: str) -> list[MapSpec]:
    sizes = (cfg.plane_x, cfg.plane_y, cfg.plane_z)
    if variant == "tpv":
        return [MapSpec(axes, tuple(sizes[a] for a in axes), cfg.pillar_points[i]) for i, axes in enumerate(TPV_AXES)]
    if variant == "bev":
        return [MapSpec((0, 1), (cfg.plane_x, cfg.plane_y), cfg.pillar_points[0] * 2)]
    if variant == "voxel":
        return [MapSpec((0, 1, 2), sizes, 1)]
    raise ValueError(f"unknown variant {variant!r} (tpv | bev | voxel)")


def variant_dim(cfg: TPVConfig, variant: str) -> int:
    """Channel width per variant: BEV gets the TPV feature budget (XY + YZ + XZ cells x C) on one plane."""
    if variant != "bev":
        return cfg.embed_dim
    tpv_cells = cfg.plane_x * cfg.plane_y + cfg.plane_y * cfg.plane_z + cfg.plane_x * cfg.plane_z
    dim = cfg.embed_dim * tpv_cells / (cfg.plane_x * cfg.plane_y)
    return int(round(dim / cfg.num_heads)) * cfg.num_heads


class TPVFormer(nn.Module):
    """forward(images (B,N,3,H,W), ego2img (B,N,4,4), points (B,P,3) metres in base_link)
    -> voxel_logits (B, classes, X, Y, Z), point_logits (B, P, classes). Class 0 is empty."""

    def __init__(self, cfg: TPVConfig, variant: str = "tpv"):
        super().__init__()
        self.cfg, self.variant = cfg, variant
        self.specs = map_specs(cfg, variant)
        dim = variant_dim(cfg, variant)
        self.dim = dim
        self.backbone = ResNet(cfg.backbone) if cfg.use_images else None
        self.fpn = FPN(self.backbone.channels, dim, cfg.fpn_levels) if cfg.use_images else None
        self.queries = MapQueries(self.specs, dim)
        ranges = (cfg.x_range, cfg.y_range, cfg.z_range)
        self.ranges = ranges
        for i, s in enumerate(self.specs):
            refs = self._pillar(s, s.pillar_points)
            self.register_buffer(f"image_refs_{i}", refs, persistent=False)
            self.register_buffer(f"hybrid_refs_{i}", metric_to_unit(self._pillar(s, cfg.hybrid_points), ranges),
                                 persistent=False)
        self.blocks = nn.ModuleList([TPVBlock(cfg, self.specs, cfg.use_images, dim) for _ in range(cfg.num_hcab)] +
                                    [TPVBlock(cfg, self.specs, False, dim) for _ in range(cfg.num_hab)])
        # BEV-only needs to tell heights apart when decoding: a learned embedding per z cell.
        self.height_embed = nn.Parameter(torch.zeros(1, dim, cfg.plane_z)) if variant == "bev" else None
        self.decoder = nn.Sequential(nn.Linear(dim, cfg.decoder_hidden), nn.Softplus(),
                                     nn.Linear(cfg.decoder_hidden, cfg.decoder_hidden))
        self.classifier = nn.Linear(cfg.decoder_hidden, cfg.num_classes)
        self.point_image_proj = nn.Linear(dim, dim) if cfg.use_images and cfg.point_image_features else None
        self.aux_head = nn.Linear(dim, cfg.num_classes) if cfg.use_images and cfg.aux_2d_weight > 0 else None

    def _pillar(self, spec: MapSpec, n: int) -> torch.Tensor:
        if len(spec.axes) == 2:
            return pillar_reference_points(self.ranges, spec.axes, spec.shape, n)
        # voxel queries: their own centre
        axes = [torch.linspace(r[0], r[1], s + 1)[:-1] + (r[1] - r[0]) / (2 * s) for r, s in zip(self.ranges, spec.shape)]
        g = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 1, 3)
        return g.expand(-1, n, -1).contiguous()

    def image_features(self, images: torch.Tensor) -> list[torch.Tensor] | None:
        """FPN levels, each (B, N, C, h, w); None for the image-blind model."""
        if self.backbone is None:
            return None
        B, N = images.shape[:2]
        feats = self.fpn(self.backbone(images.flatten(0, 1)))
        return [f.view(B, N, *f.shape[1:]) for f in feats]

    def encode(self, images: torch.Tensor, ego2img: torch.Tensor, feats: list[torch.Tensor] | None = None):
        """Image features -> refined maps (list of (B, C, *shape)) plus their specs (with a height map for BEV)."""
        B = images.shape[0]
        image_size = (images.shape[-1], images.shape[-2])
        if feats is None:
            feats = self.image_features(images)
        queries, positions = self.queries(B)
        image_refs = [getattr(self, f"image_refs_{i}") for i in range(len(self.specs))]
        hybrid_refs = [getattr(self, f"hybrid_refs_{i}") for i in range(len(self.specs))]
        for block in self.blocks:
            queries = block(queries, positions, hybrid_refs, image_refs, feats, ego2img, image_size)
        maps, specs = queries_to_maps(queries, self.specs), list(self.specs)
        if self.height_embed is not None:
            maps.append(self.height_embed.expand(B, -1, -1))
            specs.append(MapSpec((2,), (self.cfg.plane_z,)))
        return upsample_maps(maps, specs, self.cfg.upsample), specs

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.decoder(features))

    def sample_at_points(self, feature: torch.Tensor, ego2img: torch.Tensor, points: torch.Tensor,
                         image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Image features (B, N, C, h, w) bilinearly sampled at each point's projection: (B, N, P, C) and the
        visibility (B, N, P) (in front of the camera and inside its image)."""
        out, vis = [], []
        for b in range(feature.shape[0]):
            pixels, _, visible = project_points(points[b], ego2img[b], image_size)           # (N, P, 2), (N, P)
            grid = pixels_to_grid(pixels, image_size).unsqueeze(1)                            # (N, 1, P, 2)
            sampled = F.grid_sample(feature[b], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out.append(sampled[:, :, 0].transpose(1, 2))                                      # (N, P, C)
            vis.append(visible)
        return torch.stack(out), torch.stack(vis)

    def _point_logits(self, maps, specs, feats, ego2img, points, image_size):
        features = point_features(maps, specs, metric_to_unit(points, self.ranges))          # (B, P, C)
        if self.point_image_proj is not None:
            sampled, visible = self.sample_at_points(feats[0], ego2img, points, image_size)
            w = visible.to(sampled.dtype).unsqueeze(-1)
            mean = (sampled * w).sum(1) / w.sum(1).clamp(min=1.0)
            features = features + self.point_image_proj(mean)
        return self.decode(features)

    def forward(self, images: torch.Tensor, ego2img: torch.Tensor, points: torch.Tensor):
        logits = self.forward_train(images, ego2img, points)
        return logits[0], logits[1]

    def forward_train(self, images: torch.Tensor, ego2img: torch.Tensor, points: torch.Tensor,
                      aux_points: torch.Tensor | None = None):
        """forward() plus, with ``aux_points`` and an auxiliary head, the 2D logits (B, N, P', classes) of the
        image features at those points' projections and their visibility (B, N, P')."""
        image_size = (images.shape[-1], images.shape[-2])
        feats = self.image_features(images)
        maps, specs = self.encode(images, ego2img, feats)
        vox = voxel_features(maps, specs, self.cfg.voxel_shape)                        # (B, C, X, Y, Z)
        voxel_logits = self.decode(vox.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        point_logits = self._point_logits(maps, specs, feats, ego2img, points, image_size)
        if aux_points is None or self.aux_head is None:
            return voxel_logits, point_logits, None, None
        sampled, visible = self.sample_at_points(feats[0], ego2img, aux_points, image_size)
        return voxel_logits, point_logits, self.aux_head(sampled), visible


def build_model(cfg: TPVConfig, variant: str = "tpv") -> TPVFormer:
    torch.manual_seed(cfg.seed)
    return TPVFormer(cfg, variant)

"""One typed configuration for TPVFormer: grid, planes, attention sizes, image size, training recipe.

``cpu_config()`` is the small model trained and committed here (25 x 25 x 4 planes, 50 x 50 x 8 output voxels); ``gpu_config()`` is the paper's lidarseg size
(100x100x8 planes upsampled x2, 3 HCAB + 2 HAB, 4/32/32 pillar points, ResNet-101 + FPN, 1600x900 input)
for machines with a GPU.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from .scenes import CLASS_NAMES


@dataclass(frozen=True)
class TPVConfig:
    # Metric extent of the occupancy volume in base_link (x forward, y left, z up), metres.
    x_range: tuple[float, float] = (-25.0, 25.0)
    y_range: tuple[float, float] = (-25.0, 25.0)
    z_range: tuple[float, float] = (-0.4, 6.0)  # cell boundaries clear of the ground surface z = 0
    # TPV plane resolution: the planes are X x Y (top), Y x Z (side) and X x Z (front). The CPU model's planes
    # have 2 m x 2 m x 1.6 m cells, upsampled x2 for decoding (the paper's lidarseg model upsamples x2 too):
    # a quarter of the queries of 50 x 50 x 8 planes, 2.4x less time per training step on this CPU.
    plane_x: int = 25
    plane_y: int = 25
    plane_z: int = 4
    # Output voxels = plane resolution x upsample (the decoder interpolates the planes): 50 x 50 x 8 of 1 m x 1 m x 0.8 m.
    upsample: int = 2
    embed_dim: int = 32
    num_heads: int = 4
    # Reference points along each query's pillar for image cross-attention, per plane (xy, yz, xz):
    # the top plane's pillars run along z, the others along x or y (the paper's 4/32/32 at full size).
    pillar_points: tuple[int, int, int] = (4, 8, 8)
    # Sampling offsets per reference point and head (the paper's 8/64/64 points spread over the pillar).
    offsets_per_ref: int = 2
    hybrid_points: int = 4  # pillar points a query uses in cross-view hybrid attention
    num_hcab: int = 2
    num_hab: int = 1
    ffn_dim: int = 64
    decoder_hidden: int = 64
    # Backbone: "tiny" / "small" (plain-torch ResNet-style, CPU) or "resnet50" / "resnet101".
    backbone: str = "tiny"
    fpn_levels: int = 2
    image_width: int = 112
    image_height: int = 64
    num_classes: int = len(CLASS_NAMES)  # class 0 is "empty"
    # False: the image-blind baseline: the same planes, blocks and decoder without backbone and image
    # cross-attention (every block a HAB), so it can only learn where classes tend to be.
    use_images: bool = True
    # True: a lidar query point also gets the image features at its own projection (mean over the cameras that
    # see it) added to its TPV feature (not in the paper; an ablation switch, see the model card).
    point_image_features: bool = False
    # Weight of the auxiliary 2D loss: image features at the projections of labelled lidar points classify
    # those points (0 = off; the head is then not built).
    aux_2d_weight: float = 0.0
    # Training recipe.
    lr: float = 2e-3
    weight_decay: float = 0.01
    epochs: int = 6
    batch_size: int = 1
    lovasz_weight: float = 1.0
    seed: int = 0
    notes: dict = field(default_factory=dict)

    @property
    def voxel_shape(self) -> tuple[int, int, int]:
        return (self.plane_x * self.upsample, self.plane_y * self.upsample, self.plane_z * self.upsample)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        X, Y, Z = self.voxel_shape
        return ((self.x_range[1] - self.x_range[0]) / X, (self.y_range[1] - self.y_range[0]) / Y,
                (self.z_range[1] - self.z_range[0]) / Z)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TPVConfig":
        known = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()
                 if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def with_plane_resolution(self, x: int, y: int, z: int) -> "TPVConfig":
        return replace(self, plane_x=x, plane_y=y, plane_z=z)


def cpu_config() -> TPVConfig:
    return TPVConfig()


def gpu_config() -> TPVConfig:
    """The paper's lidarseg configuration (TPVFormer, CVPR 2023, Sec. 4 / supplementary)."""
    return TPVConfig(x_range=(-51.2, 51.2), y_range=(-51.2, 51.2), z_range=(-1.75, 6.25),
                     plane_x=100, plane_y=100, plane_z=8, upsample=2, embed_dim=128, num_heads=8,
                     pillar_points=(4, 32, 32), offsets_per_ref=2, hybrid_points=4, num_hcab=3, num_hab=2,
                     ffn_dim=256, decoder_hidden=256, backbone="resnet101", fpn_levels=4,
                     image_width=1600, image_height=896, lr=2e-4, epochs=24, batch_size=1)


def tiny_config() -> TPVConfig:
    """A seconds-fast model for tests and smoke runs (16 m x 16 m, 8x8x4 planes upsampled x2, 48x32 images)."""
    return TPVConfig(x_range=(-8.0, 8.0), y_range=(-8.0, 8.0), plane_x=8, plane_y=8, plane_z=4, upsample=2,
                     embed_dim=16, num_heads=2, pillar_points=(2, 4, 4), hybrid_points=2, num_hcab=1, num_hab=1,
                     ffn_dim=16, decoder_hidden=16, image_width=48, image_height=32)


CONFIGS = {"cpu": cpu_config, "gpu": gpu_config, "tiny": tiny_config}

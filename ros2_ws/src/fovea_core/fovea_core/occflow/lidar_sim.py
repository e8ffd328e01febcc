"""A ray-cast lidar for the simulator: Open3D's ``RaycastingScene`` (BVH ray casting in C++) over the
scene's boxes and a ground plane. Default rig: AV2's two stacked 32-beam sensors (roof, 1.64 m and
1.53 m above the ego origin, which sits ~0.4 m above the road), 32 beams each over -25..+15 degrees
(the second set offset by half a beam), 1800 azimuth steps, 100 m range, 2 cm range noise, 10 % of
returns dropped (the real sweeps are ~99k points; this gives ~60-90k)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_BOX_TRIANGLES = np.array([[0, 1, 2], [0, 2, 3], [4, 6, 5], [4, 7, 6], [0, 4, 5], [0, 5, 1],
                           [1, 5, 6], [1, 6, 2], [2, 6, 7], [2, 7, 3], [3, 7, 4], [3, 4, 0]], np.int32)


@dataclass(frozen=True)
class LidarRig:
    heights: tuple[float, ...] = (1.64, 1.53)
    beams: int = 32
    elevation_deg: tuple[float, float] = (-25.0, 15.0)
    azimuth_steps: int = 1800
    max_range: float = 100.0
    range_noise: float = 0.02
    dropout: float = 0.1

    def directions(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit ray directions (R, 3) in the sensor frame and the index of the sensor of each ray."""
        dirs, sensor = [], []
        step = (self.elevation_deg[1] - self.elevation_deg[0]) / (self.beams - 1)
        az = np.linspace(-np.pi, np.pi, self.azimuth_steps, endpoint=False)
        for s in range(len(self.heights)):
            el = np.deg2rad(self.elevation_deg[0] + step * (np.arange(self.beams) + 0.5 * s))
            e, a = np.meshgrid(el, az, indexing="ij")
            dirs.append(np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3))
            sensor.append(np.full(dirs[-1].shape[0], s))
        return np.concatenate(dirs), np.concatenate(sensor)


def box_meshes(centres: np.ndarray, yaws: np.ndarray, sizes: np.ndarray, z0: np.ndarray,
               heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (8n, 3) and triangles (12n, 3) of n upright boxes (footprint ``sizes`` = length, width,
    bottom ``z0``, height ``heights``)."""
    n = len(centres)
    if n == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)
    sx = np.array([1, 1, -1, -1]) * 0.5
    sy = np.array([1, -1, -1, 1]) * 0.5
    lx, ly = sizes[:, :1] * sx, sizes[:, 1:2] * sy
    c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
    x, y = centres[:, :1] + c * lx - s * ly, centres[:, 1:2] + s * lx + c * ly
    bottom = np.stack([x, y, np.repeat(z0[:, None], 4, 1)], -1)
    top = bottom.copy()
    top[..., 2] += heights[:, None]
    verts = np.concatenate([bottom, top], 1).reshape(-1, 3)
    tris = (_BOX_TRIANGLES[None] + 8 * np.arange(n)[:, None, None]).reshape(-1, 3)
    return verts.astype(np.float32), tris.astype(np.int32)


def cast_sweep(rig: LidarRig, pose_xy_yaw: tuple[float, float, float], base_height: float,
               boxes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], ground_z: float,
               rng: np.random.Generator) -> np.ndarray:
    """One sweep: returns (M, 3) world-frame points. ``boxes`` = (centres (n, 2), yaws, sizes (n, 2), z0,
    heights); the ground is the plane z = ``ground_z``; the ego origin is ``base_height`` above it."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    verts, tris = box_meshes(*boxes)
    px, py, yaw = pose_xy_yaw
    g = rig.max_range * 1.5
    ground_v = np.array([[px - g, py - g, ground_z], [px + g, py - g, ground_z], [px + g, py + g, ground_z],
                         [px - g, py + g, ground_z]], np.float32)
    ground_t = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    scene.add_triangles(o3d.core.Tensor(np.concatenate([verts, ground_v])),
                        o3d.core.Tensor(np.concatenate([tris, ground_t + len(verts)]).astype(np.uint32)))
    dirs, sensor = rig.directions()
    c, s = np.cos(yaw), np.sin(yaw)
    world_dirs = np.stack([c * dirs[:, 0] - s * dirs[:, 1], s * dirs[:, 0] + c * dirs[:, 1], dirs[:, 2]], 1)
    origins = np.stack([np.full(len(dirs), px), np.full(len(dirs), py),
                        ground_z + base_height + np.asarray(rig.heights)[sensor]], 1)
    rays = o3d.core.Tensor(np.concatenate([origins, world_dirs], 1).astype(np.float32))
    t_hit = scene.cast_rays(rays, nthreads=1)["t_hit"].numpy()
    keep = np.isfinite(t_hit) & (t_hit < rig.max_range) & (rng.random(len(t_hit)) >= rig.dropout)
    r = t_hit[keep] + rng.normal(0, rig.range_noise, int(keep.sum()))
    return origins[keep] + world_dirs[keep] * r[:, None]

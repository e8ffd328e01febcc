"""Ray casting of generated scenes (``scenes.py``) into a camera rig and a spinning lidar (vectorised numpy).

Images get per-class procedural textures (lane markings, paving tiles, facade windows, car glass, foliage
noise), Lambertian sun + ambient lighting, distance haze, sensor noise. The lidar is a 32-beam spinning
sensor at the real sample's lidar pose; its hits carry the class of the surface they hit. ``make_frame``
writes everything into the same ``Frame`` the real nuScenes reader returns.
"""
from __future__ import annotations

import numpy as np

from . import scenes
from .frame import Frame
from .scenes import (BUILDING, PEDESTRIAN, POLE, ROAD, SIDEWALK, TERRAIN, VEGETATION, VEHICLE, Scene)

FAR = 1e9
CHUNK = 8192
# HDL-32E-like beam layout: elevations -30.67 .. +10.67 degrees, about the real sweep's 34.7k points.
LIDAR_ELEVATIONS = np.deg2rad(np.linspace(-30.67, 10.67, 32))
LIDAR_AZIMUTHS = 1080
# Pose of the real sample's LIDAR_TOP in base_link (translation only matters for ray origins).
LIDAR_ORIGIN = np.array([0.9437, 0.0, 1.8402])


def _hash_noise(p: np.ndarray, scale: float) -> np.ndarray:
    """Cheap value noise in [0, 1) from integer lattice cells of 3D points (deterministic, no state)."""
    cell = np.floor(p * scale)
    h = np.sin(cell[..., 0] * 12.9898 + cell[..., 1] * 78.233 + cell[..., 2] * 37.719) * 43758.5453
    return h - np.floor(h)


def _closer_hits(t: np.ndarray, t_best: np.ndarray):
    """For distances ``t`` (rays x primitives): the rays whose nearest primitive is closer than their current
    hit, that primitive and its distance; ``t_best`` is updated in place."""
    j = t.argmin(1)
    tj = t[np.arange(len(t)), j]
    r = np.nonzero(tj < t_best)[0]
    t_best[r] = tj[r]
    return r, j[r], tj[r]


def _intersect(scene: Scene, origins: np.ndarray, dirs: np.ndarray):
    """Nearest hit of each ray: t, class, normal, base colour, style, local hit coords, primitive kind."""
    R = len(origins)
    t_best = np.full(R, FAR)
    cls = np.zeros(R, dtype=np.int64)
    normal = np.zeros((R, 3))
    color = np.zeros((R, 3))
    style = np.full(R, -1)
    local = np.zeros((R, 3))
    face_axis = np.zeros(R, dtype=np.int64)
    # Ground plane z = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        tg = np.where(dirs[:, 2] < -1e-9, -origins[:, 2] / dirs[:, 2], FAR)
    hit = (tg > 1e-6) & (tg < t_best)
    t_best[hit] = tg[hit]
    p = origins[hit] + tg[hit, None] * dirs[hit]
    cls[hit] = scene.ground_class(p[:, 0], p[:, 1])
    normal[hit] = [0, 0, 1]
    style[hit] = 100
    # Oriented boxes (slab test in each box frame).
    if len(scene.boxes):
        b = scene.boxes
        c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
        dx, dy = origins[:, None, 0] - b[:, 0], origins[:, None, 1] - b[:, 1]
        ol = np.stack([c * dx + s * dy, -s * dx + c * dy, origins[:, None, 2] - b[:, 2]], -1)
        dl = np.stack([c * dirs[:, None, 0] + s * dirs[:, None, 1], -s * dirs[:, None, 0] + c * dirs[:, None, 1],
                       np.broadcast_to(dirs[:, None, 2], c.shape[:0] + (R, len(b)))], -1)
        dl = np.where(np.abs(dl) < 1e-12, 1e-12, dl)
        half = b[:, 3:6]
        t1, t2 = (-half - ol) / dl, (half - ol) / dl
        tnear = np.minimum(t1, t2)
        tmin, axis = tnear.max(-1), tnear.argmax(-1)
        tmax = np.maximum(t1, t2).min(-1)
        valid = (tmax >= tmin) & (tmin > 1e-6)
        r, jj, tr = _closer_hits(np.where(valid, tmin, FAR), t_best)
        if len(r):
            ax = axis[r, jj]
            cls[r] = b[jj, 7].astype(np.int64)
            color[r] = scene.box_colors[jj]
            style[r] = b[jj, 8].astype(np.int64)
            loc = ol[r, jj] + tr[:, None] * dl[r, jj]
            local[r] = loc / half[jj]
            face_axis[r] = ax
            n_local = np.zeros((len(r), 3))
            n_local[np.arange(len(r)), ax] = -np.sign(dl[r, jj, ax])
            cc, ss = c[jj], s[jj]
            normal[r] = np.stack([cc * n_local[:, 0] - ss * n_local[:, 1], ss * n_local[:, 0] + cc * n_local[:, 1],
                                  n_local[:, 2]], -1)
    # Vertical capped cylinders.
    if len(scene.cylinders):
        cy = scene.cylinders
        ox, oy = origins[:, None, 0] - cy[:, 0], origins[:, None, 1] - cy[:, 1]
        a = dirs[:, None, 0] ** 2 + dirs[:, None, 1] ** 2 + 1e-12
        bq = 2 * (ox * dirs[:, None, 0] + oy * dirs[:, None, 1])
        cq = ox ** 2 + oy ** 2 - cy[:, 4] ** 2
        disc = bq ** 2 - 4 * a * cq
        ts = np.where(disc >= 0, (-bq - np.sqrt(np.maximum(disc, 0))) / (2 * a), FAR)
        zs = origins[:, None, 2] + ts * dirs[:, None, 2]
        side_ok = (ts > 1e-6) & (zs >= cy[:, 2]) & (zs <= cy[:, 3])
        with np.errstate(divide="ignore", invalid="ignore"):
            tc = (cy[:, 3] - origins[:, None, 2]) / dirs[:, None, 2]
        cap_ok = (tc > 1e-6) & ((ox + tc * dirs[:, None, 0]) ** 2 + (oy + tc * dirs[:, None, 1]) ** 2 <= cy[:, 4] ** 2)
        t_side = np.where(side_ok, ts, FAR)
        t_cap = np.where(cap_ok, tc, FAR)
        r, jj, tr = _closer_hits(np.minimum(t_side, t_cap), t_best)
        if len(r):
            cls[r] = cy[jj, 5].astype(np.int64)
            color[r] = scene.cyl_colors[jj]
            style[r] = 0
            p = origins[r] + tr[:, None] * dirs[r]
            on_cap = t_cap[r, jj] <= t_side[r, jj]
            radial = np.stack([p[:, 0] - cy[jj, 0], p[:, 1] - cy[jj, 1], np.zeros(len(r))], -1)
            radial /= np.linalg.norm(radial, axis=1, keepdims=True) + 1e-9
            normal[r] = np.where(on_cap[:, None], [0.0, 0.0, 1.0], radial)
            local[r] = np.stack([np.arctan2(radial[:, 1], radial[:, 0]), p[:, 2], np.zeros(len(r))], -1)
    # Spheres.
    if len(scene.spheres):
        sp = scene.spheres
        oc = origins[:, None, :] - sp[:, :3]
        bq = (oc * dirs[:, None, :]).sum(-1)
        cq = (oc ** 2).sum(-1) - sp[:, 3] ** 2
        disc = bq ** 2 - cq
        tsph = np.where(disc >= 0, -bq - np.sqrt(np.maximum(disc, 0)), FAR)
        r, jj, tr = _closer_hits(np.where(tsph > 1e-6, tsph, FAR), t_best)
        if len(r):
            cls[r] = sp[jj, 4].astype(np.int64)
            color[r] = scene.sphere_colors[jj]
            style[r] = 0
            p = origins[r] + tr[:, None] * dirs[r]
            normal[r] = (p - sp[jj, :3]) / sp[jj, 3:4]
            local[r] = p
    cls[t_best >= FAR] = 0
    return t_best, cls, normal, color, style, local, face_axis


def _texture(scene: Scene, hit_points, cls, color, style, local, face_axis, rng) -> np.ndarray:
    albedo = color.copy()
    ground = style == 100
    if ground.any():
        p = hit_points[ground]
        u, v = scene.road_coords(p[:, 0], p[:, 1])
        gc = cls[ground]
        n1 = _hash_noise(p, 2.0)
        n2 = _hash_noise(p, 9.0)
        alb = np.zeros((len(p), 3))
        road = gc == ROAD
        alb[road] = (0.28 + 0.06 * n1[road] + 0.04 * n2[road])[:, None]
        lane = road & (np.abs(v) < 0.08) & (np.mod(u, 6.0) < 3.0)
        edge = road & (np.abs(np.abs(v) - (scene.road_half_width - 0.25)) < 0.08)
        alb[lane | edge] = 0.85
        side = gc == SIDEWALK
        tiles = (np.mod(u, 1.0) < 0.05) | (np.mod(v, 1.0) < 0.05)
        alb[side] = (0.6 + 0.06 * n2[side])[:, None] * np.array([1.0, 0.97, 0.93])
        alb[side & tiles] *= 0.7
        terr = gc == TERRAIN
        alb[terr] = np.array([0.33, 0.42, 0.18]) * (0.75 + 0.4 * n1[terr])[:, None] + 0.08 * n2[terr][:, None]
        albedo[ground] = alb
    build = cls == BUILDING
    if build.any():
        loc = local[build]
        horiz = np.where(face_axis[build] == 0, loc[:, 1], loc[:, 0])
        # window grid in metres along the facade: the box half-sizes are not known here, so use scaled coords
        wx = np.mod(horiz * 6.0, 1.0)
        wz = np.mod((loc[:, 2] + 1.0) * 3.0, 1.0)
        window = (face_axis[build] != 2) & (wx > 0.25) & (wx < 0.75) & (wz > 0.3) & (wz < 0.8) & (loc[:, 2] > -0.7)
        albedo[build] = np.where(window[:, None], np.array([0.15, 0.18, 0.25]), albedo[build])
    car = cls == VEHICLE
    if car.any():
        glass = car & (style == 1) & (face_axis != 2)
        albedo[glass] = np.array([0.1, 0.12, 0.16])
        lights = car & (style == 0) & (face_axis == 0) & (np.abs(local[:, 1]) > 0.6) & (local[:, 2] > 0.2)
        albedo[lights] = np.array([0.95, 0.9, 0.7])
    veg = cls == VEGETATION
    if veg.any():
        albedo[veg] *= (0.7 + 0.6 * _hash_noise(local[veg], 4.0))[:, None]
    ped = (cls == PEDESTRIAN) | (cls == POLE)
    if ped.any():
        albedo[ped] *= (0.85 + 0.3 * _hash_noise(hit_points[ped], 3.0))[:, None]
    return albedo


def _sky(dirs: np.ndarray, scene: Scene) -> np.ndarray:
    up = np.clip(dirs[:, 2], 0, 1)[:, None]
    horizon = np.array([0.78, 0.82, 0.88])
    zenith = np.array([0.35, 0.55, 0.85])
    return horizon * (1 - up) + zenith * up


def cast_rays(scene: Scene, origins: np.ndarray, dirs: np.ndarray):
    """Chunked ``_intersect``; returns t (R,), class (R,) and the raw hit attributes."""
    outs = [_intersect(scene, origins[i:i + CHUNK], dirs[i:i + CHUNK]) for i in range(0, len(dirs), CHUNK)]
    return tuple(np.concatenate([o[k] for o in outs]) for k in range(7))


def camera_rays(K: np.ndarray, cam2ego: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions (H*W, 3) in base_link of the pixel centres of one camera."""
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 0)
    d_cam = np.linalg.solve(K, pix).T
    d = d_cam @ cam2ego[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.broadcast_to(cam2ego[:3, 3], d.shape).copy(), d


def render_camera(scene: Scene, K, cam2ego, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    origins, dirs = camera_rays(K, cam2ego, width, height)
    t, cls, normal, color, style, local, face_axis = cast_rays(scene, origins, dirs)
    hitmask = t < FAR
    pts = origins + np.where(hitmask, t, 0)[:, None] * dirs
    albedo = _texture(scene, pts, cls, color, style, local, face_axis, rng)
    light = scene.ambient + (1 - scene.ambient) * np.clip(normal @ scene.sun, 0, 1)
    rgb = albedo * light[:, None] * scene.exposure
    sky = _sky(dirs, scene) * scene.exposure
    haze = 1 - np.exp(-np.where(hitmask, t, 0) / 120.0)
    rgb = np.where(hitmask[:, None], rgb * (1 - haze[:, None]) + sky * haze[:, None], sky)
    rgb += rng.normal(0, 0.015, rgb.shape)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8).reshape(height, width, 3)


def render_lidar(scene: Scene, rng: np.random.Generator, max_range: float = 70.0):
    """Ray-cast lidar sweep: points (P, 3) float32 in base_link and their class ids."""
    az = np.linspace(-np.pi, np.pi, LIDAR_AZIMUTHS, endpoint=False)
    el, az = np.meshgrid(LIDAR_ELEVATIONS, az, indexing="ij")
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
    origins = np.broadcast_to(LIDAR_ORIGIN, dirs.shape).copy()
    t, cls, *_ = cast_rays(scene, origins, dirs)
    keep = (t < max_range) & (cls > 0)
    t = t[keep] + rng.normal(0, 0.02, keep.sum())
    pts = origins[keep] + t[:, None] * dirs[keep]
    return pts.astype(np.float32), cls[keep]


def make_frame(seed: int, camera_names, intrinsics, cam2ego, image_size: tuple[int, int], grid) -> Frame:
    """Generate, render and label scene ``seed``. ``grid``: (x_range, y_range, z_range, voxel_shape)."""
    scene = scenes.generate_scene(seed)
    rng = np.random.default_rng(seed + 1_000_003)
    width, height = image_size
    images = np.stack([render_camera(scene, K, T, width, height, rng) for K, T in zip(intrinsics, cam2ego)])
    points, labels = render_lidar(scene, rng)
    x_range, y_range, z_range, shape = grid
    vox = scenes.voxel_labels(scene, x_range, y_range, z_range, shape)
    return Frame(camera_names=list(camera_names), images=images, intrinsics=np.asarray(intrinsics),
                 cam2ego=np.asarray(cam2ego), points=points, point_labels=labels, voxel_labels=vox,
                 stamp_ns=int(seed) * 100_000_000)

"""Pictures of the real-data evaluation (matplotlib, Agg): per-class IoU bars, results along the drive, and one
real frame's cameras next to its predicted occupancy and labelled points."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import data
from .frame import Frame
from .projection import ego_to_image
from .scenes import CLASS_COLORS, CLASS_NAMES
from .scoring import predict, top_view

# Surround layout of the picture: front-left, front, front-right over left, back, right (PandaSet names).
PICTURE_LAYOUT = ("front_left_camera", "front_camera", "front_right_camera", "left_camera", "back_camera",
                  "right_camera")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _legend(ax) -> None:
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=CLASS_COLORS[c], label=CLASS_NAMES[c]) for c in range(1, len(CLASS_NAMES))],
              loc="upper left", fontsize=7, ncol=2, framealpha=0.8)


def per_class_bars(result: dict, path: Path) -> None:
    plt = _plt()
    methods = [m for m in result["methods"] if "ONNX" not in m]
    names = list(CLASS_NAMES[1:])
    fig, ax = plt.subplots(figsize=(15, 4.5))
    x = np.arange(len(names))
    width = 0.8 / len(methods)
    colours = _method_colours(plt, methods)
    for k, m in enumerate(methods):
        table = result["methods"][m]["points"]
        vals = [table["per_class_iou"][n] if table["per_class_iou"][n] is not None else 0.0 for n in names]
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, vals, width, label=f"{m} (mIoU {table['miou']:.3f})",
               color=colours[m])
    ax.set_xticks(x, names)
    ax.set_ylabel("point IoU")
    ax.set_title(f"PandaSet 002 validation frames {result['data']['validation_frames'][0]}-"
                 f"{result['data']['validation_frames'][-1]}: lidar-point IoU per class (no ground truth: bar absent)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, not over them
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _method_colours(plt, methods) -> dict:
    # Ablation runs add rows: the default 10-colour cycle would repeat colours past ten methods.
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    return {m: cmap(k % cmap.N) for k, m in enumerate(methods)}


def per_frame_lines(result: dict, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(16, 4))
    methods = [m for m in result["methods"] if "ONNX" not in m]
    colours = _method_colours(plt, methods)
    for m in methods:
        entry = result["methods"][m]
        frames = [r["frame"] for r in entry["per_frame"]]
        axes[0].plot(frames, [r["points_miou"] for r in entry["per_frame"]], marker="o", label=m, color=colours[m])
        axes[1].plot(frames, [r["vehicle_iou"] or 0.0 for r in entry["per_frame"]], marker="o", label=m,
                     color=colours[m])
    axes[0].set_title("point mIoU per frame along the drive")
    axes[1].set_title("vehicle point IoU per frame")
    for ax in axes:
        ax.set_xlabel("PandaSet frame (training frames end at 43)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _cameras_with_labels(fig, grid, frame: Frame, point_labels: np.ndarray, points: np.ndarray) -> None:
    ego2img = ego_to_image(frame.intrinsics, frame.cam2ego)
    width, height = frame.image_size
    for k, name in enumerate(PICTURE_LAYOUT if set(PICTURE_LAYOUT) <= set(frame.camera_names) else frame.camera_names[:6]):
        i = frame.camera_names.index(name)
        ax = fig.add_subplot(grid[k // 3, 4 * (k % 3):4 * (k % 3) + 4])
        ax.imshow(frame.images[i])
        p = np.c_[points, np.ones(len(points))] @ ego2img[i].T
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
        ok = (p[:, 2] > 0.5) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        ax.scatter(u[ok], v[ok], c=CLASS_COLORS[point_labels[ok]], s=1.5, alpha=0.6, linewidths=0)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_title(f"{name}: lidar returns coloured by the camera model's labels", fontsize=8)
        ax.axis("off")


def real_frame_picture(model, blind_model, frame: Frame, path: Path, title: str, voxel_labels=None) -> None:
    """Cameras (with the predicted point labels drawn in) above the top views of the predicted occupancy,
    the predicted lidar labels, the ground-truth labels and, when given, the image-blind model's labels."""
    plt = _plt()
    cfg = model.cfg
    inside = data.points_in_volume(frame.points, cfg)
    pts = frame.points[inside]
    vox, _, labels, _ = predict(model, frame, pts)
    fig = plt.figure(figsize=(20, 15))
    grid = fig.add_gridspec(3, 12, height_ratios=[1, 1, 1.5])
    _cameras_with_labels(fig, grid, frame, labels, pts)
    extent = [cfg.y_range[1], cfg.y_range[0], cfg.x_range[0], cfg.x_range[1]]  # x up, y to the left
    panels = [("camera model: occupancy (top-most voxel class)", None),
              ("camera model: lidar labels", labels)]
    if blind_model is not None:
        panels.append(("image-blind network: lidar labels", predict(blind_model, frame, pts)[2]))
    gt = frame.point_labels[inside]
    panels.append(("ground truth (PandaSet labels, mapped; grey: ignored)", gt))
    width = 12 // len(panels)
    for k, (name, lab) in enumerate(panels):
        ax = fig.add_subplot(grid[2, k * width:(k + 1) * width])
        if lab is None:
            ax.imshow(CLASS_COLORS[top_view(vox)][::-1, ::-1], extent=extent, interpolation="nearest")
        else:
            colours = np.where(lab[:, None] >= 0, CLASS_COLORS[np.maximum(lab, 0)], 0.6)
            order = np.argsort(pts[:, 2])
            ax.scatter(pts[order, 1], pts[order, 0], c=colours[order], s=0.5, linewidths=0)
            ax.set_xlim(cfg.y_range[1], cfg.y_range[0])
            ax.set_ylim(cfg.x_range[0], cfg.x_range[1])
            ax.set_facecolor("black")
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("y [m] (left +)")
        ax.set_ylabel("x [m] (forward)")
        if k == 0:
            _legend(ax)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)
    plt.close(fig)

"""The box-level check on the real nuScenes frame (no per-point labels exist there): the predicted labels of the
lidar points inside each annotated box, and a picture of the prediction."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import data
from .nuscenes_sample import load_sample, points_in_box
from .scenes import CLASS_COLORS, CLASS_NAMES, NUSCENES_BOX_TO_CLASS
from .scoring import predict, top_view


def box_check(model, sample_dir=None) -> dict:
    frame = load_sample(sample_dir)
    inside = data.points_in_volume(frame.points, model.cfg)
    pts = frame.points[inside]
    _, _, labels, prob = predict(model, frame, pts)
    rows, per_category = [], {}
    for box in frame.boxes:
        mask = points_in_box(pts, box)
        if not mask.any():
            continue
        expected = NUSCENES_BOX_TO_CLASS.get(box["category"])
        counts = np.bincount(labels[mask], minlength=len(CLASS_NAMES))
        entry = per_category.setdefault(box["category"], {"boxes": 0, "points": 0, "expected_class": None,
                                                          "label_counts": np.zeros(len(CLASS_NAMES), int)})
        entry["boxes"] += 1
        entry["points"] += int(mask.sum())
        entry["label_counts"] += counts
        entry["expected_class"] = CLASS_NAMES[expected] if expected is not None else None
        rows.append({"category": box["category"], "points": int(mask.sum()),
                     "correct": int(counts[expected]) if expected is not None else None})
    summary = {}
    for cat, e in per_category.items():
        dist = {CLASS_NAMES[c]: int(n) for c, n in enumerate(e["label_counts"]) if n}
        exp = e["expected_class"]
        summary[cat] = {"boxes": e["boxes"], "points": e["points"], "expected_class": exp,
                        "fraction_expected": (round(dist.get(exp, 0) / e["points"], 4) if exp else None),
                        "predicted_labels": dist}
    scored = [r for r in rows if r["correct"] is not None]
    total = sum(r["points"] for r in scored)
    return {"points_in_volume": int(inside.sum()), "boxes_with_points": len(rows),
            "scored_points": total,
            "scored_points_correct_fraction": round(sum(r["correct"] for r in scored) / max(total, 1), 4),
            "per_category": summary, "predicted_label_histogram_all_points":
                {CLASS_NAMES[c]: int(n) for c, n in enumerate(np.bincount(labels, minlength=len(CLASS_NAMES)))},
            "_frame": frame, "_points": pts, "_labels": labels}



def plot_real_sample(check: dict, model, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    frame = check["_frame"]
    vox_pred, vox_prob, _, _ = predict(model, frame, np.zeros((1, 3), np.float32))
    cfg = model.cfg
    fig = plt.figure(figsize=(18, 10))
    order = ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"]
    for i, name in enumerate(order):
        ax = fig.add_subplot(4, 3, i + 1)
        ax.imshow(frame.images[frame.camera_names.index(name)])
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    extent = [cfg.y_range[1], cfg.y_range[0], cfg.x_range[0], cfg.x_range[1]]  # x up, y left (BEV view)
    # Top-down occupancy: the class of the highest non-empty voxel in each column.
    ax = fig.add_subplot(2, 3, 4)
    ax.imshow(CLASS_COLORS[top_view(vox_pred)][::-1, ::-1], extent=extent, interpolation="nearest")
    ax.set_title("predicted occupancy (top-down, highest voxel class)", fontsize=9)
    ax.set_xlabel("y [m] (left is +)")
    ax.set_ylabel("x [m] (forward)")
    ax = fig.add_subplot(2, 3, 5)
    pts, lab = check["_points"], check["_labels"]
    ax.scatter(pts[:, 1], pts[:, 0], c=CLASS_COLORS[lab], s=0.4)
    for box in frame.boxes:
        c, s = np.cos(box["yaw"]), np.sin(box["yaw"])
        dx, dy = box["size"][0] / 2, box["size"][1] / 2
        rotation_t = np.array([[c, s], [-s, c]])
        corners = np.array([[dx, dy], [dx, -dy], [-dx, -dy], [-dx, dy]]) @ rotation_t + box["center"][:2]
        ax.add_patch(Polygon(corners[:, ::-1], fill=False, ec="k", lw=0.6))
    ax.set_xlim(cfg.y_range[1], cfg.y_range[0])
    ax.set_ylim(*cfg.x_range)
    ax.set_aspect("equal")
    ax.set_title("real lidar points, predicted labels; black = annotated boxes", fontsize=9)
    ax = fig.add_subplot(2, 3, 6)
    for c in range(1, len(CLASS_NAMES)):
        ax.bar(c, 0, color=CLASS_COLORS[c], label=CLASS_NAMES[c])
    ax.legend(loc="center", fontsize=10)
    ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)



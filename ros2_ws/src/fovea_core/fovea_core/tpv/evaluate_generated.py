"""``fovea eval tpv --generated``: the evaluation on generated scenes, the architecture ablation and the
nuScenes box check, in one run (the real-data evaluation is ``evaluate.py``).

1. The committed model on held-out generated scenes: per-class IoU and mIoU on lidar points and on voxels
   (accumulated over the split, see ``metrics.py``), plus geometric (occupied/empty) voxel IoU.
2. Ablation, same data and same short training recipe: TPV vs BEV-only (same feature budget) vs dense voxel
   queries: mIoU, representation size, peak forward memory, latency side by side.
3. Box-level check on the real nuScenes sample: predicted labels of lidar points inside annotated boxes.
Writes ``eval.json``, ``per_class_iou.png``, ``ablation.png`` and ``real_sample_prediction.png`` into
``models/tpv/eval_generated/`` (the committed record there is issue 4's generated-scene model, whose
ablation checkpoints ``ablation_*.pt`` it used; the real-data record is ``models/tpv/eval/``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import data
from .frame import Frame
from .metrics import IoUAccumulator
from .box_check import box_check, plot_real_sample
from .profiling import forward_peak_memory_mib, representation_bytes, torch_latency_ms
from .scenes import CLASS_COLORS, CLASS_NAMES
from .scoring import iou_table, predict, top_view
from .train import load_checkpoint

DEFAULT_CKPT = Path("models/tpv/tpv_cpu.pt")
ABLATION = {"tpv": Path("models/tpv/ablation_tpv.pt"), "bev": Path("models/tpv/ablation_bev.pt"),
            "voxel": Path("models/tpv/ablation_voxel.pt")}


def evaluate_split(model, frames: list[Frame]) -> dict:
    points_acc = IoUAccumulator(model.cfg.num_classes)
    voxel_acc = IoUAccumulator(model.cfg.num_classes)
    for frame in frames:
        inside = data.points_in_volume(frame.points, model.cfg) & (frame.point_labels > 0)
        vox_pred, _, pt_pred, _ = predict(model, frame, frame.points[inside])
        points_acc.update(pt_pred, frame.point_labels[inside])
        voxel_acc.update(vox_pred, frame.voxel_labels)
    return {"points": iou_table(points_acc), "voxels": {**iou_table(voxel_acc), "geometry_iou":
                                                    round(voxel_acc.geometry_iou(), 4)},
            "frames": len(frames)}


def ablation(frames: list[Frame], checkpoints: dict[str, Path]) -> dict:
    out = {}
    for variant, path in checkpoints.items():
        if not Path(path).exists():
            out[variant] = {"missing_checkpoint": str(path)}
            continue
        model, info = load_checkpoint(path)
        res = evaluate_split(model, frames)
        images, ego2img = data.model_inputs(frames[0], model.cfg)
        pts = torch.from_numpy(frames[0].points[:4096])[None]
        out[variant] = {"miou_points": res["points"]["miou"], "miou_voxels": res["voxels"]["miou"],
                        "geometry_iou": res["voxels"]["geometry_iou"],
                        "representation_kib": representation_bytes(model) / 1024,
                        "feature_dim": model.dim,
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "peak_forward_mib": round(forward_peak_memory_mib(model.cfg, variant,
                                                                             threads=torch.get_num_threads()), 1),
                        "latency_ms": round(torch_latency_ms(model, (images, ego2img, pts), repeats=3), 1),
                        "train_iterations": info.get("iterations"), "train_seconds": info.get("seconds")}
    return out


def plot_heldout_example(model, frame: Frame, path: Path) -> None:
    """One held-out generated scene: cameras, ground-truth and predicted occupancy seen from above."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vox_pred, _, _, _ = predict(model, frame, np.zeros((1, 3), np.float32))
    cfg = model.cfg
    extent = [cfg.y_range[1], cfg.y_range[0], cfg.x_range[0], cfg.x_range[1]]
    fig = plt.figure(figsize=(15, 7))
    for i, name in enumerate(frame.camera_names):
        ax = fig.add_subplot(4, 6, i + 1)
        ax.imshow(frame.images[i])
        ax.set_title(name, fontsize=7)
        ax.axis("off")
    for k, (labels, title) in enumerate([(frame.voxel_labels, "ground truth"), (vox_pred, "prediction")]):
        ax = fig.add_subplot(1, 2, k + 1, position=[0.08 + 0.45 * k, 0.05, 0.4, 0.6])
        ax.imshow(CLASS_COLORS[top_view(labels)][::-1, ::-1], extent=extent, interpolation="nearest")
        ax.set_title(f"{title} (top-most voxel class)", fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_tables(result: dict, out_dir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(CLASS_NAMES[1:])
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(names))
    for k, (key, label) in enumerate([("points", "lidar points"), ("voxels", "voxels")]):
        vals = [result["heldout"][key]["per_class_iou"][n] or 0 for n in names]
        ax.bar(x + (k - 0.5) * 0.4, vals, 0.4, label=f"{label} (mIoU {result['heldout'][key]['miou']:.3f})")
    ax.set_xticks(x, names, rotation=30)
    ax.set_ylabel("IoU")
    ax.set_title("TPVFormer (CPU config) on held-out generated scenes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "per_class_iou.png", dpi=90)
    plt.close(fig)
    abl = {k: v for k, v in result["ablation"].items() if "miou_voxels" in v}
    if abl:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
        keys = list(abl)
        for ax, (metric, label) in zip(axes, [("miou_voxels", "voxel mIoU"), ("peak_forward_mib", "peak forward MiB"),
                                              ("latency_ms", "latency ms (1 thread)")]):
            ax.bar(keys, [abl[k][metric] for k in keys], color=["tab:blue", "tab:orange", "tab:green"][:len(keys)])
            ax.set_title(label)
        fig.tight_layout()
        fig.savefig(out_dir / "ablation.png", dpi=90)
        plt.close(fig)


def print_table(result: dict) -> None:
    h = result["heldout"]
    print(f"\nHeld-out generated scenes: {h['frames']} frames (seeds {data.VAL_SEEDS.start}..), model {result['checkpoint']}")
    print(f"{'class':<12}{'IoU points':>12}{'IoU voxels':>12}")
    for n in CLASS_NAMES[1:]:
        p, v = h["points"]["per_class_iou"][n], h["voxels"]["per_class_iou"][n]
        print(f"{n:<12}{'n/a' if p is None else f'{p:.3f}':>12}{'n/a' if v is None else f'{v:.3f}':>12}")
    print(f"{'mIoU':<12}{h['points']['miou']:>12.3f}{h['voxels']['miou']:>12.3f}")
    print(f"geometry (occupied vs empty) voxel IoU: {h['voxels']['geometry_iou']:.3f}")
    print("\nAblation (same data, same short recipe):")
    print(f"{'variant':<8}{'mIoU pts':>10}{'mIoU vox':>10}{'geo IoU':>9}{'repr KiB':>10}{'peak MiB':>10}{'ms':>9}{'params':>10}")
    for k, v in result["ablation"].items():
        if "miou_voxels" not in v:
            print(f"{k:<8} missing checkpoint {v['missing_checkpoint']}")
            continue
        print(f"{k:<8}{v['miou_points']:>10.3f}{v['miou_voxels']:>10.3f}{v['geometry_iou']:>9.3f}"
              f"{v['representation_kib']:>10.0f}{v['peak_forward_mib']:>10.1f}{v['latency_ms']:>9.1f}{v['parameters']:>10d}")
    b = result["real_sample_boxes"]
    print(f"\nReal nuScenes sample: {b['points_in_volume']} lidar points in the volume, {b['boxes_with_points']} boxes with points")
    for cat, e in b["per_category"].items():
        frac = "not modelled" if e["fraction_expected"] is None else f"{e['fraction_expected']:.3f} labelled {e['expected_class']}"
        print(f"  {cat:<22} boxes {e['boxes']:>3} points {e['points']:>5}  {frac}  {e['predicted_labels']}")
    print(f"  scored points labelled with their box's class: {b['scored_points_correct_fraction']:.3f} of {b['scored_points']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fovea eval tpv --generated",
                                     description="Evaluate TPVFormer on generated scenes: held-out table, ablation.")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CKPT)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: data/tpv/<image size>_<grid>")
    parser.add_argument("--val-scenes", type=int, default=len(data.VAL_SEEDS))
    parser.add_argument("--ablation-scenes", type=int, default=20)
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=Path("models/tpv/eval_generated"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, info = load_checkpoint(args.checkpoint)
    paths = data.generate((args.data_dir or data.cache_dir(model.cfg)) / "val", list(data.VAL_SEEDS)[:args.val_scenes],
                          model.cfg)
    frames = [Frame.load(p) for p in paths]
    print(f"evaluating {args.checkpoint} on {len(frames)} held-out scenes", flush=True)
    result = {"checkpoint": str(args.checkpoint), "train_info": info, "heldout": evaluate_split(model, frames)}
    print("held-out done", flush=True)
    result["ablation"] = {} if args.skip_ablation else ablation(frames[:args.ablation_scenes], ABLATION)
    check = box_check(model)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    plot_real_sample(check, model, args.out_dir / "real_sample_prediction.png")
    plot_heldout_example(model, frames[0], args.out_dir / "heldout_example.png")
    result["real_sample_boxes"] = {k: v for k, v in check.items() if not k.startswith("_")}
    result["ablation_scenes"] = min(args.ablation_scenes, len(frames))
    plot_tables(result, args.out_dir)
    (args.out_dir / "eval.json").write_text(json.dumps(result, indent=2, default=float))
    print_table(result)
    print(f"\nwrote {args.out_dir}/eval.json and plots")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``fovea eval tpv``: camera model vs image-blind baselines on the real PandaSet validation frames, one run.

Every method is scored on the same frames (46-55 of sequence 002, after the 00-43 training frames and a
two-frame gap) with the paper's split-accumulated IoU (``metrics.py``):

* points: lidar-segmentation IoU per class on the labelled returns inside the grid (a return is a surface: its
  label is the best semantic class); IGNORE returns count nowhere;
* voxels: semantic IoU per class and geometric (occupied vs empty) IoU against the dense labels accumulated from
  the validation sweeps (``dense_labels.py``); IGNORE voxels count nowhere;
* per frame along the drive, since whatever remembers the training street fades as the car drives on.

Methods: the camera model (``--checkpoint``), the same model with every image replaced by mid-grey (how much it
relies on the images), the image-blind network (``--blind-checkpoint``: same network without images, same
labels), the majority-class-per-voxel lookup of the training frames and the height prior (``baselines.py``),
and the model as the node runs it (ONNX Runtime, ``--onnx``). Also the nuScenes box check (``box_check.py``).
Writes ``eval.json`` and PNG plots into ``--out-dir``.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import data, real_data
from .baselines import HeightPrior, VoxelLookup
from .box_check import box_check, plot_real_sample
from .frame import Frame
from .metrics import IoUAccumulator
from .scenes import CLASS_NAMES
from .scoring import iou_table, predict
from .train import load_checkpoint

DEFAULT_CKPT = Path("models/tpv/tpv_cpu.pt")
DEFAULT_BLIND = Path("models/tpv/tpv_image_blind.pt")
DEFAULT_ONNX = Path("models/tpv/tpv_cpu.onnx")
MID_GREY = 128


class TorchMethod:
    def __init__(self, model, grey: bool = False):
        self.model, self.grey = model, grey
        # frames are given at the model's own image size (an up-scaled smaller image would handicap it)
        self.image_size = (model.cfg.image_width, model.cfg.image_height) if model.cfg.use_images else None

    def __call__(self, frame: Frame, points: np.ndarray):
        if self.grey:
            frame = Frame(**{**frame.__dict__, "images": np.full_like(frame.images, MID_GREY)})
        vox, _, pts, _ = predict(self.model, frame, points)
        return pts, vox


class OnnxMethod:
    """The exported model through the same runner the node uses (``inference.TPVInference``)."""

    def __init__(self, path: Path, threads: int):
        from .inference import TPVInference
        self.runner = TPVInference.load("onnxruntime", model_path=path, intra_op_threads=threads)

    def __call__(self, frame: Frame, points: np.ndarray):
        pred = self.runner.predict(list(frame.images), list(frame.intrinsics), list(frame.cam2ego), points)
        return pred.point_labels, pred.voxel_labels


class BaselineMethod:
    def __init__(self, baseline, voxel_labels: np.ndarray | None = None):
        self.baseline, self.voxel_labels = baseline, voxel_labels

    def __call__(self, frame: Frame, points: np.ndarray):
        return self.baseline.predict(frame, points), self.voxel_labels


def majority_voxels(frames: list[Frame], num_classes: int) -> np.ndarray:
    """Per voxel, the majority of the training frames' dense labels (the lookup baseline's occupancy)."""
    stack = np.stack([f.voxel_labels for f in frames]).reshape(len(frames), -1)
    votes = np.zeros((num_classes, stack.shape[1]), np.int64)
    for c in range(num_classes):
        votes[c] = (stack == c).sum(0)
    return votes.argmax(0).reshape(frames[0].voxel_labels.shape)


def score(methods: dict, frames: list[Frame], frame_ids, cfg, log=print, frames_at=None) -> dict:
    """``frames_at(width, height)``: the same frames with images at that size, for methods that state an
    ``image_size`` other than the frames' own."""
    out = {}
    for name, method in methods.items():
        size = getattr(method, "image_size", None)
        method_frames = frames if size is None or size == frames[0].image_size else frames_at(*size)
        start = time.time()
        pts_acc, vox_acc = IoUAccumulator(cfg.num_classes), IoUAccumulator(cfg.num_classes)
        per_frame = []
        for fid, frame in zip(frame_ids, method_frames):
            keep = data.points_in_volume(frame.points, cfg) & (frame.point_labels > 0)
            pt_pred, vox_pred = method(frame, frame.points[keep])
            one = IoUAccumulator(cfg.num_classes)
            one.update(pt_pred, frame.point_labels[keep])
            pts_acc.update(pt_pred, frame.point_labels[keep])
            row = {"frame": fid, "points_miou": round(one.miou(), 4),
                   "vehicle_iou": _round(one.per_class_iou()[CLASS_NAMES.index("vehicle")])}
            if vox_pred is not None:
                vox_acc.update(vox_pred, frame.voxel_labels)
                one_vox = IoUAccumulator(cfg.num_classes)
                one_vox.update(vox_pred, frame.voxel_labels)
                row["voxels_miou"] = round(one_vox.miou(), 4)
            per_frame.append(row)
        entry = {"points": iou_table(pts_acc), "per_frame": per_frame, "seconds": round(time.time() - start, 1)}
        if vox_acc.confusion.sum():
            entry["voxels"] = {**iou_table(vox_acc), "geometry_iou": round(vox_acc.geometry_iou(), 4)}
        out[name] = entry
        log(f"  {name:<24} points mIoU {entry['points']['miou']:.3f}"
            + (f"  voxels mIoU {entry['voxels']['miou']:.3f} geo {entry['voxels']['geometry_iou']:.3f}"
               if "voxels" in entry else "") + f"  ({entry['seconds']:.0f}s)", flush=True)
    return out


def _round(v):
    return None if np.isnan(v) else round(float(v), 4)


def build_methods(args, cfg, train_frames) -> tuple[dict, dict]:
    """Methods to score, and the checkpoints behind them: name -> (model, path, training info)."""
    methods, models = {}, {}
    camera, info = load_checkpoint(args.checkpoint)
    models["camera"] = (camera, str(args.checkpoint), info)
    methods["camera model"] = TorchMethod(camera)
    methods["camera model, grey images"] = TorchMethod(camera, grey=True)
    if args.blind_checkpoint and Path(args.blind_checkpoint).is_file():
        blind, binfo = load_checkpoint(args.blind_checkpoint)
        models["blind"] = (blind, str(args.blind_checkpoint), binfo)
        methods["image-blind network"] = TorchMethod(blind)
    for extra in args.extra or []:
        name, path = extra.split("=", 1)
        model, einfo = load_checkpoint(path)
        models[name] = (model, path, einfo)
        methods[name] = TorchMethod(model)
    methods["voxel lookup (train frames)"] = BaselineMethod(VoxelLookup(cfg).fit(train_frames),
                                                           majority_voxels(train_frames, cfg.num_classes))
    methods["height prior"] = BaselineMethod(HeightPrior(cfg).fit(train_frames))
    if args.onnx and Path(args.onnx).is_file():
        methods["camera model, ONNX Runtime"] = OnnxMethod(args.onnx, args.threads)
    return methods, models


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--generated" in argv:
        from . import evaluate_generated
        argv.remove("--generated")
        return evaluate_generated.main(argv)
    parser = argparse.ArgumentParser(prog="fovea eval tpv", description=__doc__.splitlines()[0] +
                                     " (--generated: the generated-scene evaluation and architecture ablation)")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CKPT, help="the camera model")
    parser.add_argument("--blind-checkpoint", default=str(DEFAULT_BLIND), help="the image-blind network (\"\": skip)")
    parser.add_argument("--extra", nargs="*", metavar="NAME=CKPT", help="more checkpoints to score (ablation rows)")
    parser.add_argument("--onnx", default=str(DEFAULT_ONNX), help="also score this export, as the node runs it (\"\": skip)")
    parser.add_argument("--data-root", type=Path, default=None, help="PandaSet sequence (default: shared data)")
    parser.add_argument("--val-frames", type=int, nargs="*", default=list(real_data.VAL_FRAMES))
    parser.add_argument("--train-frames", type=int, nargs="*", default=list(real_data.TRAIN_FRAMES),
                        help="frames the lookup and height-prior baselines are fitted on")
    parser.add_argument("--cache-dir", type=Path, default=None, help="preprocessed frames (default data/tpv/...)")
    parser.add_argument("--skip-box-check", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=Path("models/tpv/eval"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_checkpoint(args.checkpoint)[0].cfg
    print(f"PandaSet 002: training frames {args.train_frames[0]}-{args.train_frames[-1]} (for the "
          f"baselines), validation frames {args.val_frames}", flush=True)
    train_frames = real_data.load_frames(cfg, args.train_frames, args.data_root, cache_root=args.cache_dir)
    val_frames = real_data.load_frames(cfg, args.val_frames, args.data_root, cache_root=args.cache_dir)
    methods, models = build_methods(args, cfg, train_frames)
    camera = models["camera"][0]
    print(f"scoring {len(methods)} methods on {len(val_frames)} frames", flush=True)
    result = {"data": {"sequence": "PandaSet 002 (CC BY 4.0, Hesai and Scale AI)", "validation_frames": args.val_frames,
                       "training_frames": list(args.train_frames), "gap_frames": list(real_data.GAP_FRAMES),
                       "points": "labelled Pandar64 returns inside the grid; IGNORE classes excluded",
                       "voxels": "dense labels accumulated from the validation sweeps (dense_labels.py)"},
              "checkpoints": {k: {"path": path, "info": info} for k, (_, path, info) in models.items()},
              "methods": score(methods, val_frames, args.val_frames, cfg, frames_at=functools.cache(
                  lambda w, h: real_data.load_frames(replace(cfg, image_width=w, image_height=h), args.val_frames,
                                                     args.data_root, cache_root=args.cache_dir)))}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.skip_box_check:
        check = box_check(camera)
        result["nuscenes_box_check"] = {k: v for k, v in check.items() if not k.startswith("_")}
        plot_real_sample(check, camera, args.out_dir / "nuscenes_box_check.png")
        if "blind" in models:
            result["nuscenes_box_check_image_blind"] = {k: v for k, v in box_check(models["blind"][0]).items()
                                                        if not k.startswith("_")}
    from . import plots
    plots.per_class_bars(result, args.out_dir / "pandaset_per_class_iou.png")
    plots.per_frame_lines(result, args.out_dir / "pandaset_per_frame.png")
    from .pandaset import PandaSetSequence
    shown = args.val_frames[-1]  # the validation frame farthest from training, at the cameras' own resolution
    blind = models.get("blind", (None,))[0]
    plots.real_frame_picture(camera, blind, PandaSetSequence(args.data_root).load_frame(shown),
                             args.out_dir / f"pandaset_frame_{shown:02d}.png",
                             title=f"PandaSet 002 frame {shown:02d} (validation, the farthest from training); "
                                   "data CC BY 4.0 Hesai and Scale AI")
    (args.out_dir / "eval.json").write_text(json.dumps(result, indent=2, default=float))
    print_table(result)
    print(f"\nwrote {args.out_dir}/eval.json and plots")
    return 0


def print_table(result: dict) -> None:
    methods = result["methods"]
    names = list(methods)
    print(f"\nPandaSet 002, validation frames {result['data']['validation_frames']}: point IoU per class")
    print(f"{'class':<12}" + "".join(f"{n[:22]:>24}" for n in names))
    for c in CLASS_NAMES[1:]:
        vals = [methods[n]["points"]["per_class_iou"][c] for n in names]
        print(f"{c:<12}" + "".join(f"{'n/a' if v is None else f'{v:.3f}':>24}" for v in vals))
    print(f"{'mIoU points':<12}" + "".join(f"{methods[n]['points']['miou']:>24.3f}" for n in names))
    print(f"{'mIoU voxels':<12}" + "".join(f"{methods[n]['voxels']['miou']:>24.3f}" if "voxels" in methods[n]
                                           else f"{'-':>24}" for n in names))
    print(f"{'geo IoU':<12}" + "".join(f"{methods[n]['voxels']['geometry_iou']:>24.3f}" if "voxels" in methods[n]
                                       else f"{'-':>24}" for n in names))
    print("\nper frame, point mIoU:")
    for n in names:
        print(f"  {n[:26]:<28}" + " ".join(f"{r['points_miou']:.2f}" for r in methods[n]["per_frame"]))
    b = result.get("nuscenes_box_check")
    if b:
        print(f"\nnuScenes frame: {b['scored_points']} points in vehicle/pedestrian boxes, "
              f"{b['scored_points_correct_fraction']:.3f} get their box's class (camera model)")


if __name__ == "__main__":
    sys.exit(main())

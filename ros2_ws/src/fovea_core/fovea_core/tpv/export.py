"""Export a trained checkpoint to ONNX (standard ops, GridSample) with its config in the metadata.

The graph takes any number of cameras (dynamic axis 1 of ``images`` and ``ego2img``) and any number of query
points: the rig is an input, not part of the model. The export sample uses the PandaSet-free nuScenes rig.

    python -m fovea_core.tpv.export --checkpoint models/tpv/tpv_cpu.pt --out models/tpv/tpv_cpu.onnx
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .inference import INPUT_NAMES, ONNX_CONFIG_KEY, OUTPUT_NAMES
from .nuscenes_sample import load_rig
from .projection import ego_to_image
from .train import load_checkpoint


def export(model, out: Path, num_cameras: int = 6, dynamic_cameras: bool = True) -> dict:
    import onnx

    from fovea_core.backends import export_onnx
    from fovea_core.model_files import write_sha256

    cfg = model.cfg
    _, K, cam2ego = load_rig(image_size=(cfg.image_width, cfg.image_height))
    torch.manual_seed(0)
    images = torch.randn(1, num_cameras, 3, cfg.image_height, cfg.image_width)
    ego2img = torch.from_numpy(ego_to_image(K[:num_cameras], cam2ego[:num_cameras])).float()[None]
    points = torch.rand(1, 256, 3) * 20 - 10
    report = export_onnx(model, dict(zip(INPUT_NAMES, (images, ego2img, points))), out, output_names=OUTPUT_NAMES,
                         dynamic_axes={"points": {1: "num_points"}, "point_logits": {1: "num_points"},
                                       **({"images": {1: "num_cameras"}, "ego2img": {1: "num_cameras"}}
                                          if dynamic_cameras else {})}, opset=17)
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_CONFIG_KEY, cfg.to_json()
    onnx.save(proto, str(out))
    write_sha256(out)  # the metadata changed the file after export_onnx wrote its digest
    return dict(report.max_abs_diff)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a TPVFormer checkpoint to ONNX.")
    parser.add_argument("--checkpoint", type=Path, default=Path("models/tpv/tpv_cpu.pt"))
    parser.add_argument("--out", type=Path, default=Path("models/tpv/tpv_cpu.onnx"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the export and its check")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(args.checkpoint)
    diff = export(model, args.out)
    print(f"wrote {args.out}; max |onnxruntime - torch| per output: {diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

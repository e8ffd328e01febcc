"""Export ImplicitO to two ONNX files (standard ops; GridSample for every feature lookup), each with the
config JSON in its metadata (key ``occflow_config``):

- ``<stem>_encoder.onnx``: (lidar, map) -> decoder maps, run once per sweep;
- ``<stem>_decoder.onnx``: (maps, queries (1, Q, 3)) -> occupancy logits (1, Q, C), reverse flow
  (1, Q, C, 2); Q is dynamic, so one engine serves any batch of queries.

    python -m fovea_core.occflow.export --checkpoint models/occflow/implicito.pt [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .model import FeatureEncoder
from .train import load_model

ONNX_CONFIG_KEY = "occflow_config"
ENCODER_INPUTS, ENCODER_OUTPUTS = ["lidar", "map"], ["maps"]
DECODER_INPUTS, DECODER_OUTPUTS = ["maps", "queries"], ["occupancy_logits", "flow"]


def _stamp_config(path: Path, cfg_json: str) -> None:
    import onnx

    from fovea_core.model_files import write_sha256

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_CONFIG_KEY, cfg_json
    onnx.save(proto, str(path))
    write_sha256(path)


def export(model, out_stem: Path, num_queries: int = 512) -> dict[str, float]:
    """Both files; returns the max |onnxruntime - torch| per output on random inputs."""
    from fovea_core.backends import export_onnx

    cfg = model.cfg
    torch.manual_seed(0)
    lidar = torch.rand(1, cfg.lidar_channels, cfg.ny, cfg.nx)
    map_raster = torch.rand(1, 7, cfg.ny, cfg.nx)
    enc_path = out_stem.with_name(out_stem.name + "_encoder.onnx")
    dec_path = out_stem.with_name(out_stem.name + "_decoder.onnx")
    r1 = export_onnx(FeatureEncoder(model), dict(zip(ENCODER_INPUTS, (lidar, map_raster))), enc_path,
                     output_names=ENCODER_OUTPUTS, opset=17)
    with torch.no_grad():
        maps = model.features(lidar, map_raster)
    lo = torch.tensor([cfg.x_range[0], cfg.y_range[0], 0.0])
    hi = torch.tensor([cfg.x_range[1], cfg.y_range[1], cfg.horizon])
    queries = lo + torch.rand(1, num_queries, 3) * (hi - lo)
    r2 = export_onnx(model.decoder, dict(zip(DECODER_INPUTS, (maps, queries))), dec_path, output_names=DECODER_OUTPUTS,
                     dynamic_axes={"queries": {1: "num_queries"}, "occupancy_logits": {1: "num_queries"},
                                   "flow": {1: "num_queries"}}, opset=17)
    for path in (enc_path, dec_path):
        _stamp_config(path, cfg.to_json())
    return {**r1.max_abs_diff, **r2.max_abs_diff}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export an ImplicitO checkpoint to ONNX (encoder + decoder).")
    parser.add_argument("--checkpoint", type=Path, default=Path("models/occflow/implicito.pt"))
    parser.add_argument("--out", type=Path, default=None, help="file stem (default: beside the checkpoint)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the export and its check")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    model, _ = load_model(args.checkpoint, "--checkpoint")
    stem = args.out or args.checkpoint.with_suffix("")
    diff = export(model, stem)
    print(f"wrote {stem}_encoder.onnx and {stem}_decoder.onnx; max |onnxruntime - torch|: {diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Export the trained network's deterministic test-time graph to ONNX and check it against PyTorch."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .model_io import DEFAULT_MODEL_DIR, ONNX_NAME, load_network
from .network import InferenceNetwork, VBRegNetwork

OPSET = 17


def export_network(network: VBRegNetwork, path: str | Path, sample_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Writes the ONNX file (dynamic number of correspondences) and returns max |onnxruntime − torch| per
    output on a random sample."""
    from fovea_core.backends import export_onnx

    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, sample_size, 6, generator=generator) * 5.0
    report = export_onnx(
        InferenceNetwork(network.eval()),
        {"correspondences": sample},
        str(path),
        output_names=InferenceNetwork.output_names,
        dynamic_axes={"correspondences": {1: "num_correspondences"},
                      "inlier_logits": {2: "num_correspondences"},
                      "features": {1: "num_correspondences"}},
    )
    return dict(report.max_abs_diff)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the VBReg network to ONNX")
    parser.add_argument("--model-dir", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--output", default=None, help=f"default: <model-dir>/{ONNX_NAME}")
    args = parser.parse_args(argv)
    output = Path(args.output or Path(args.model_dir) / ONNX_NAME)
    diffs = export_network(load_network(args.model_dir), output)
    print(f"wrote {output}; max |onnxruntime - torch|: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

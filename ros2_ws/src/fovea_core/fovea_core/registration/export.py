"""Export the trained network's deterministic test-time graph to ONNX and check it against PyTorch.

    python -m fovea_core.registration.export [--iterations 6] [--full-precision-weights]

The committed ``vbreg.onnx`` runs the first ``DEFAULT_ITERATIONS`` of the 12 trained iterations (see
``VBRegNetwork.prefix``) and stores its weights as float16, cast back to float32 when the session is built
(compute stays float32): half the file, the same time, scores within 2e-3 of the float32 file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from .model_io import DEFAULT_ITERATIONS, DEFAULT_MODEL_DIR, ONNX_NAME, load_network
from .network import InferenceNetwork, VBRegNetwork

OPSET = 17


def store_weights_fp16(path: str | Path, min_elements: int = 64) -> None:
    """Rewrite ``path`` with its float32 weights stored as float16, each read through a Cast to float32.

    onnxconverter-common's float16 conversion would make the compute float16 too (slow on CPU; TensorRT
    decides that itself). Here only storage changes: onnxruntime folds the casts when it builds the session.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    for weight in [w for w in graph.initializer
                   if w.data_type == TensorProto.FLOAT and int(np.prod(w.dims)) >= min_elements]:
        half = numpy_helper.from_array(numpy_helper.to_array(weight).astype(np.float16), weight.name + "_fp16")
        graph.initializer.remove(weight)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [weight.name], to=TensorProto.FLOAT))
    for cast in reversed(casts):  # before every consumer: nodes stay topologically sorted
        graph.node.insert(0, cast)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_network(network: VBRegNetwork, path: str | Path, sample_size: int = 256, seed: int = 0,
                   iterations: int | None = None, weights_fp16: bool = False) -> dict[str, float]:
    """Writes the ONNX file (dynamic number of correspondences; ``iterations``: only the first ones) and
    returns max |onnxruntime − torch| per output on a random sample."""
    from fovea_core.backends import export_onnx, load_backend
    from fovea_core.backends.engine_cache import sha256_file

    network = network.eval() if iterations is None else network.prefix(iterations).eval()
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, sample_size, 6, generator=generator) * 5.0
    report = export_onnx(
        InferenceNetwork(network),
        {"correspondences": sample},
        str(path),
        output_names=InferenceNetwork.output_names,
        dynamic_axes={"correspondences": {1: "num_correspondences"},
                      "inlier_logits": {2: "num_correspondences"},
                      "features": {1: "num_correspondences"}},
    )
    if not weights_fp16:
        return dict(report.max_abs_diff)
    store_weights_fp16(path)
    Path(report.sha256_path).write_text(f"{sha256_file(path)}  {Path(path).name}\n")
    got = load_backend("onnxruntime", onnx_path=str(path), intra_op_threads=1).run(
        {"correspondences": sample.numpy()})
    with torch.no_grad():
        expected = dict(zip(InferenceNetwork.output_names, network(sample)))
    return {name: float(np.abs(got[name] - expected[name].numpy()).max()) for name in expected}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the VBReg network to ONNX")
    parser.add_argument("--model-dir", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--output", default=None, help=f"default: <model-dir>/{ONNX_NAME}")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help="network iterations in the graph (the first ones of the trained network)")
    parser.add_argument("--full-precision-weights", action="store_true", help="store weights as float32")
    args = parser.parse_args(argv)
    output = Path(args.output or Path(args.model_dir) / ONNX_NAME)
    diffs = export_network(load_network(args.model_dir), output, iterations=args.iterations,
                           weights_fp16=not args.full_precision_weights)
    print(f"wrote {output} ({args.iterations} iterations); max |onnxruntime - torch|: "
          + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Prebuild TensorRT engines into the cache (``build_only``), e.g. while provisioning a robot or image.

    python3 -m fovea_core.backends.prebuild models/tpv/model.onnx --precision fp16 \
        --shape points:1x1000x4,1x20000x4,1x40000x4

A node started later with the same ONNX file, precision and shapes finds the engine ("hit") instead of
spending minutes building it at start-up.
"""
from __future__ import annotations

import argparse
import sys

from .engine_cache import PRECISIONS


def parse_shape_arg(spec: str) -> tuple[str, object]:
    """``name:1x3x64x64`` (fixed) or ``name:MIN,OPT,MAX`` with each shape written ``AxBxC``."""
    name, sep, shapes = spec.partition(":")
    if not sep or not name or not shapes:
        raise ValueError(f"--shape must look like NAME:1x3x64x64 or NAME:MIN,OPT,MAX, got '{spec}'")
    try:
        parsed = [tuple(int(d) for d in s.split("x")) for s in shapes.split(",")]
    except ValueError as err:
        raise ValueError(f"--shape '{spec}': dimensions must be integers separated by 'x'") from err
    if len(parsed) == 1:
        return name, parsed[0]
    if len(parsed) == 3:
        return name, parsed
    raise ValueError(f"--shape '{spec}': give one shape or exactly three (min,opt,max)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m fovea_core.backends.prebuild",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("onnx", nargs="+", help="ONNX file(s) to build engines for")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--shape", action="append", default=[], metavar="NAME:SHAPES",
                        help="optimisation profile of a dynamic input (repeatable)")
    parser.add_argument("--cache-dir", help="engine cache (default $FOVEA_ENGINE_CACHE or ~/.cache/fovea/engines)")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--workspace-mb", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        shapes = dict(parse_shape_arg(s) for s in args.shape)
    except ValueError as err:
        print(f"prebuild: {err}", file=sys.stderr)
        return 2
    from .factory import load_backend

    for path in args.onnx:
        try:
            backend = load_backend(
                "tensorrt", onnx_path=path, precision=args.precision, cache_dir=args.cache_dir,
                device=args.device, build_only=True, input_shapes=shapes or None,
                workspace_bytes=args.workspace_mb * (1 << 20) if args.workspace_mb else None,
            )
        except (RuntimeError, ValueError, FileNotFoundError) as err:
            print(f"prebuild: {path}: {err}", file=sys.stderr)
            return 1
        result = backend.cache_result
        print(f"{path}: {result.status} {result.engine_path} ({result.reason}; {result.build_seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

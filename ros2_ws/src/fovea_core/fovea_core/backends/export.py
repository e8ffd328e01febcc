"""PyTorch -> ONNX export that proves itself: ONNX checker, then ONNX Runtime vs PyTorch on sample inputs.

Exporter choice (measured on torch 2.13, the pinned version): ``torch.onnx.export`` defaults to the
dynamo (torch.export) exporter, which needs the extra ``onnxscript`` package, took ~3.3 s for a
conv + grid_sample + linear toy model, and silently left the file at opset 18 when asked for 17
(its version converter failed on ReduceMean). The TorchScript exporter (``dynamo=False``) produced the
same standard ops (Conv, GridSample, ReduceMean, Gemm) at the requested opset in ~0.15 s with no
extra dependency, so it is the default here. It is deprecated upstream; ``exporter="dynamo"`` is
available for models it cannot trace, and the report records which exporter and opset were used.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .engine_cache import sha256_file

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_TOLERANCE = 1e-4


@dataclass
class ExportReport:
    path: str
    sha256: str
    sha256_path: str
    exporter: str
    opset: int | None
    input_names: list[str]
    output_names: list[str]
    max_abs_diff: dict[str, float]
    output_shapes: dict[str, list[int]] = field(default_factory=dict)

    @property
    def worst_abs_diff(self) -> float:
        return max(self.max_abs_diff.values()) if self.max_abs_diff else 0.0

    def within(self, tolerance: float = DEFAULT_TOLERANCE) -> bool:
        return all(d <= tolerance for d in self.max_abs_diff.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def format(self) -> str:
        lines = [f"wrote {self.path} (opset {self.opset}, {self.exporter} exporter)",
                 f"sha256 {self.sha256} -> {self.sha256_path}"]
        for name, diff in self.max_abs_diff.items():
            lines.append(f"max |onnxruntime - torch| {name} {self.output_shapes.get(name)}: {diff:.3e}")
        return "\n".join(lines)


def max_abs_diff(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Largest absolute difference; NaN in the same place in both counts as equal, NaN in one as inf."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: PyTorch {a.shape} vs ONNX Runtime {b.shape}")
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.abs(a - b)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf
    return float(diff.max())


@contextlib.contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _as_tuple(result) -> tuple:
    import torch

    return (result,) if isinstance(result, torch.Tensor) else tuple(result)


def _run_exporter(model, args: tuple, path: Path, input_names, output_names, dynamic_axes, opset, exporter):
    import torch

    common = dict(input_names=list(input_names), output_names=list(output_names),
                  opset_version=opset, dynamic_axes=dynamic_axes)
    if exporter == "torchscript":
        with warnings.catch_warnings():
            # torch >= 2.9 warns that this exporter is deprecated on every call; the choice is
            # deliberate (see the module docstring), so keep test and CLI output readable.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(model, args, os.fspath(path), dynamo=False, do_constant_folding=True, **common)
        return
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's dependency)
    except ImportError as err:
        raise RuntimeError("exporter='dynamo' needs the onnxscript package (pip install onnxscript)") from err
    torch.onnx.export(model, args, os.fspath(path), dynamo=True, external_data=False, **common)


def export_onnx(
    model,
    sample_inputs: Mapping[str, "object"],
    path: str | os.PathLike,
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str] | Sequence[int]] | None = None,
    opset: int = 17,
    exporter: str = "torchscript",
    threads: int | None = None,
) -> ExportReport:
    """Export ``model`` to ONNX at ``path`` and check it.

    ``sample_inputs``: input name -> tensor, in the order the model takes them positionally.
    ``dynamic_axes``: as ``torch.onnx.export`` takes it, e.g. ``{"points": {0: "n"}}``.
    Raises when the ONNX checker fails; the numeric comparison is reported, not judged (callers and the
    CLI decide their tolerance), in ``report.max_abs_diff`` (output name -> max |ORT - torch|).
    ``threads``: ONNX Runtime's intra-op threads for that check; default: the count torch runs with, which
    the exporting command set from its ``--threads``.
    """
    import onnx
    import torch

    from .onnx_graph import default_opset
    from .onnxruntime_backend import OnnxRuntimeBackend

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got '{exporter}'")
    if not sample_inputs:
        raise ValueError("export_onnx needs at least one sample input")
    input_names = list(sample_inputs)
    args = tuple(sample_inputs[n] for n in input_names)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _eval_mode(model), torch.no_grad():
        reference = _as_tuple(model(*args))
        if len(reference) != len(output_names):
            raise ValueError(f"the model returns {len(reference)} output(s) but output_names has "
                             f"{len(output_names)}: {list(output_names)}")
        _run_exporter(model, args, path, input_names, output_names, dynamic_axes, opset, exporter)
    onnx.checker.check_model(os.fspath(path))  # the path form also handles files over 2 GB

    runtime = OnnxRuntimeBackend(path, device="cpu", intra_op_threads=threads or torch.get_num_threads())
    feed = {n: t.detach().cpu().numpy() for n, t in sample_inputs.items()}
    got = runtime.run(feed)
    diffs, shapes = {}, {}
    for name, ref in zip(output_names, reference):
        ref_np = ref.detach().cpu().numpy()
        diffs[name] = max_abs_diff(ref_np, got[name])
        shapes[name] = list(ref_np.shape)

    digest = sha256_file(path)
    sha_path = path.with_name(path.name + ".sha256")
    sha_path.write_text(f"{digest}  {path.name}\n")  # sha256sum -c format
    return ExportReport(
        path=os.fspath(path), sha256=digest, sha256_path=os.fspath(sha_path), exporter=exporter,
        opset=default_opset(onnx.load(os.fspath(path), load_external_data=False)),
        input_names=input_names, output_names=list(output_names), max_abs_diff=diffs, output_shapes=shapes,
    )


# ---------------------------------------------------------------------------------------------------
# Command line: `fovea export ...` (wired by fovea_ros.cli to this main).


def _load_factory(spec: str):
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--model-module must look like 'package.module:factory', got '{spec}'")
    return getattr(importlib.import_module(module_name), attr)


def _parse_input(spec: str) -> tuple[str, tuple[int, ...], str]:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"--input must look like NAME:1x3x224x224[:float32], got '{spec}'")
    dims = parts[1].replace(",", "x").split("x")
    try:
        shape = tuple(int(d) for d in dims if d)
    except ValueError as err:
        raise ValueError(f"--input '{spec}': shape must be integers separated by 'x'") from err
    return parts[0], shape, parts[2] if len(parts) == 3 else "float32"


def _parse_dynamic_axis(spec: str) -> tuple[str, int, str]:
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"--dynamic-axis must look like NAME:AXIS[:LABEL], got '{spec}'")
    axis = int(parts[1])
    return parts[0], axis, parts[2] if len(parts) == 3 else f"{parts[0]}_dim{axis}"


def _sample_inputs(args) -> dict:
    import torch

    if args.sample_inputs:
        with np.load(args.sample_inputs) as data:
            names = args.input_names or list(data.files)
            return {n: torch.from_numpy(data[n]) for n in names}
    if not args.input:
        raise ValueError("give the model's inputs with --input NAME:SHAPE[:DTYPE] (repeat) or --sample-inputs FILE.npz")
    generator = torch.Generator().manual_seed(args.seed)
    inputs = {}
    for spec in args.input:
        name, shape, dtype_name = _parse_input(spec)
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"--input '{spec}': unknown dtype '{dtype_name}'")
        if dtype.is_floating_point:
            inputs[name] = torch.randn(shape, generator=generator).to(dtype)
        else:  # meaningful integer inputs (indices, counts) must come from --sample-inputs
            inputs[name] = torch.zeros(shape, dtype=dtype)
    return inputs


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fovea export",
        description="Export a PyTorch model to ONNX, check it with ONNX Runtime against PyTorch, "
                    "and optionally check its ops against TensorRT's supported list.",
    )
    p.add_argument("--model-module", metavar="PKG.MOD:FACTORY",
                   help="callable returning the torch.nn.Module (called with --factory-kwargs)")
    p.add_argument("--factory-kwargs", default="{}", help="JSON object of keyword arguments for the factory")
    p.add_argument("--state-dict", help="weights (.pt state dict, loaded with weights_only=True)")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE[:DTYPE]",
                   help="one model input, in positional order, e.g. image:1x3x224x224 (random, seeded)")
    p.add_argument("--sample-inputs", metavar="FILE.npz", help="real sample inputs instead of random ones")
    p.add_argument("--input-names", nargs="+", help="order of inputs taken from --sample-inputs")
    p.add_argument("--output-names", nargs="+", help="names of the model's outputs, in order")
    p.add_argument("--out", help="ONNX file to write")
    p.add_argument("--dynamic-axis", action="append", default=[], metavar="NAME:AXIS[:LABEL]",
                   help="mark an input/output axis dynamic (repeatable)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--exporter", choices=EXPORTERS, default="torchscript")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help="fail (exit 1) when any output's max abs difference exceeds this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report-json", help="also write the export report as JSON")
    p.add_argument("--check-trt", nargs="?", const="", default=None, metavar="FILE.onnx",
                   help="check ops against TensorRT's list: the exported file, or FILE.onnx alone")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    if args.model_module is None:
        if not args.check_trt:
            parser.error("give --model-module/--out to export, or --check-trt FILE.onnx to check a file")
        return _check_trt(args.check_trt)
    if not args.out or not args.output_names:
        parser.error("exporting needs --out and --output-names")
    import torch

    try:
        model = _load_factory(args.model_module)(**json.loads(args.factory_kwargs))
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{args.model_module} returned {type(model).__name__}, not a torch.nn.Module")
        if args.state_dict:
            model.load_state_dict(torch.load(args.state_dict, map_location="cpu", weights_only=True))
        inputs = _sample_inputs(args)
        dynamic_axes: dict[str, dict[int, str]] = {}
        for spec in args.dynamic_axis:
            name, axis, label = _parse_dynamic_axis(spec)
            dynamic_axes.setdefault(name, {})[axis] = label
    except (ValueError, TypeError, ImportError, AttributeError, OSError) as err:
        print(f"fovea export: {err}", file=sys.stderr)
        return 2
    report = export_onnx(model, inputs, args.out, args.output_names, dynamic_axes=dynamic_axes or None,
                         opset=args.opset, exporter=args.exporter)
    print(report.format())
    if args.report_json:
        Path(args.report_json).write_text(report.to_json())
    status = 0
    if not report.within(args.tolerance):
        print(f"FAILED: max abs difference {report.worst_abs_diff:.3e} exceeds tolerance {args.tolerance:g}")
        status = 1
    if args.check_trt is not None:
        status = max(status, _check_trt(args.check_trt or args.out))
    return status


def _check_trt(path: str) -> int:
    from .trt_ops import check_tensorrt_ops

    report = check_tensorrt_ops(path)
    print(f"{path}:\n{report.format()}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

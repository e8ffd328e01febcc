"""TensorRT backend: engine built from ONNX, cached on disk, executed with the TensorRT 10 tensor API.

``tensorrt`` and CUDA are imported only when this backend is constructed, so the module imports on any
machine. Written against the TensorRT 10 Python API (JetPack 6 ships 10.3; the x86 image pins 10.15).
TensorRT 11 removed weak typing: there fp32 builds and Q/DQ int8 files work, while fp16 needs an ONNX
file already converted to fp16, and calibration is gone; both cases fail with a message saying so.

Device memory comes from PyTorch CUDA tensors (torch is already a dependency of every method core, and
its caching allocator avoids a cudaMalloc per message).

Engine cache: see ``engine_cache`` (key = ONNX sha256 + TensorRT version + GPU name/compute capability
+ precision + optimisation profile [+ calibration digest]; key file validated on load; rebuild on
mismatch or failed deserialisation).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from . import onnx_graph
from .base import BackendInputError, InferenceBackend, TensorSpec, check_inputs
from .engine_cache import (
    EngineCache,
    EngineKey,
    ShapeRange,
    atomic_write,
    default_engine_name,
    resolve_profile,
    sha256_file,
)
from .int8_calibration import CalibrationFeed

LOG = logging.getLogger("fovea.backends")
MIN_TENSORRT_MAJOR = 10


def import_tensorrt():
    """The ``tensorrt`` module, or a RuntimeError saying what to install."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise RuntimeError(
            "the tensorrt backend needs TensorRT's Python package (x86: pip install tensorrt-cu12; "
            "Jetson: JetPack's python3-libnvinfer) and an NVIDIA GPU; use 'onnxruntime' elsewhere"
        ) from err
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        raise RuntimeError(f"TensorRT >= {MIN_TENSORRT_MAJOR} is required (tensor I/O API), found {trt.__version__}")
    return trt


def tensorrt_available() -> bool:
    """True when TensorRT imports and torch sees a CUDA GPU (what the GPU-marked tests need)."""
    try:
        import_tensorrt()
        import torch
    except (ImportError, RuntimeError):
        return False
    return bool(torch.cuda.is_available())


def gpu_identity(device_index: int) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of a CUDA device, as used in the engine key."""
    import torch

    props = torch.cuda.get_device_properties(device_index)
    return str(props.name), f"{props.major}.{props.minor}"


def _device_index(device: str | None) -> int:
    device = (device or "cuda").lower()
    if device == "cuda":
        return 0
    if device.startswith("cuda:"):
        return int(device.split(":", 1)[1])
    raise ValueError(f"the tensorrt backend runs on 'cuda' or 'cuda:N', not '{device}'")


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp32"
    workspace_bytes: int | None = None  # None: TensorRT's default (all device memory)
    timing_cache: Path | None = None


def make_int8_calibrator(trt, feed: CalibrationFeed, device_index: int, cache_file: Path | None):
    """Wrap ``feed`` in TensorRT's entropy calibrator (deprecated since 10.1 in favour of Q/DQ models,
    still supported through 10.x). Batches are copied to the GPU one at a time."""
    import torch

    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise RuntimeError(
            f"TensorRT {trt.__version__} has no INT8 calibrators (removed in 11); quantise the model to an "
            f"ONNX file with QuantizeLinear/DequantizeLinear nodes instead of passing calibration_batches"
        )

    class NumpyEntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # TensorRT requires the explicit base init
            self._alive: list = []  # device copies must outlive the get_batch call that returned them

        def get_batch_size(self) -> int:
            return feed.batch_size

        def get_batch(self, names):
            batch = feed.next_batch(list(names))
            if batch is None:
                return None
            self._alive = [torch.from_numpy(batch[n]).to(f"cuda:{device_index}") for n in names]
            torch.cuda.synchronize(device_index)
            return [int(t.data_ptr()) for t in self._alive]

        def read_calibration_cache(self):
            if cache_file is not None and cache_file.is_file():
                return cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if cache_file is not None:
                atomic_write(cache_file, bytes(cache))

    return NumpyEntropyCalibrator()


def build_serialized_engine(trt, logger, onnx_path: Path, profile: Mapping[str, ShapeRange],
                            options: BuildOptions, calibrator=None) -> bytes:
    """Parse ONNX, configure precision/profile/timing cache, and build; returns the serialised engine."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    # parse_from_file (not parse(bytes)) so weights stored as external data next to the file are found.
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n{errors}")
    config = builder.create_builder_config()
    if options.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_bytes))
    weakly_typed = hasattr(trt.BuilderFlag, "FP16")  # TensorRT 11 removed the precision flags
    if options.precision == "fp16" and not weakly_typed:
        raise RuntimeError(
            f"TensorRT {getattr(trt, '__version__', '?')} builds strongly typed networks only: convert the ONNX "
            f"file to fp16 first (e.g. ModelOpt AutoCast) and build it with precision='fp32'"
        )
    if options.precision == "int8" and not weakly_typed and calibrator is not None:
        raise RuntimeError("this TensorRT has no INT8 calibration; give an ONNX file with Q/DQ nodes instead")
    if options.precision in ("fp16", "int8") and weakly_typed:
        # int8 keeps FP16 allowed so layers without INT8 kernels fall back to half, not float.
        config.set_flag(trt.BuilderFlag.FP16)
        if options.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    # (strongly typed + Q/DQ int8: the precisions come from the file, nothing to set)
    trt_profile = builder.create_optimization_profile()
    for name, rng in profile.items():
        trt_profile.set_shape(name, rng.min, rng.opt, rng.max)
    config.add_optimization_profile(trt_profile)
    if calibrator is not None:
        config.int8_calibrator = calibrator
        config.set_calibration_profile(trt_profile)
    if options.timing_cache is not None:
        previous = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(previous), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    if options.timing_cache is not None:
        updated = config.get_timing_cache()
        if updated is not None:
            atomic_write(options.timing_cache, bytes(updated.serialize()))
    return bytes(serialized)


class TensorRTBackend(InferenceBackend):
    """A cached TensorRT engine behind the common interface.

    ``input_shapes``: optimisation profile for dynamic inputs, name -> shape or (min, opt, max).
    ``calibration_batches``: INT8 calibration data (list of {input name: array}); not needed when the
    ONNX file is explicitly quantised (Q/DQ nodes). ``build_only``: build and cache the engine, skip the
    execution context (``run`` then raises) — for prebuilding engines in a Docker image or at install.
    """

    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        device: str | None = "cuda",
        precision: str = "fp32",
        cache_dir: str | os.PathLike | None = None,
        build_only: bool = False,
        input_names: Iterable[str] | None = None,
        output_names: Iterable[str] | None = None,
        input_shapes: Mapping[str, object] | None = None,
        calibration_batches: Iterable[Mapping[str, np.ndarray]] | None = None,
        workspace_bytes: int | None = None,
        engine_name: str | None = None,
        log_interval_s: float = 30.0,
        log_severity: str = "WARNING",
    ) -> None:
        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("the tensorrt backend needs a CUDA GPU and torch with CUDA support")
        self._trt = trt
        self._device_index = _device_index(device)
        self._logger = trt.Logger(getattr(trt.Logger, log_severity))
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
        model = onnx_graph.load_model(onnx_path)
        model_inputs = onnx_graph.graph_inputs(model)
        if input_names is not None and list(input_names) != list(model_inputs):
            raise ValueError(
                f"input_names {list(input_names)} do not match the ONNX file's inputs {list(model_inputs)}"
            )
        profile = resolve_profile(model_inputs, input_shapes)

        extra: dict[str, str] = {}
        calibrator = None
        cache = EngineCache(cache_dir)
        name = engine_name or default_engine_name(onnx_path)
        if precision == "int8" and not onnx_graph.is_explicitly_quantized(model):
            if calibration_batches is None:
                raise ValueError(
                    "precision int8 needs calibration_batches (representative inputs) or an ONNX file "
                    "with QuantizeLinear/DequantizeLinear nodes"
                )
            feed = CalibrationFeed(calibration_batches)
            calibration_digest = feed.digest()
            extra["calibration_sha256"] = calibration_digest
            # TensorRT's calibration cache holds the computed scales; reusing it skips recalibration.
            calibrator = make_int8_calibrator(
                trt, feed, self._device_index, cache.cache_dir / f"{name}.{calibration_digest[:16]}.calib"
            )
        if workspace_bytes:
            extra["workspace_bytes"] = str(int(workspace_bytes))
        gpu_name, capability = gpu_identity(self._device_index)
        key = EngineKey.create(
            onnx_sha256=sha256_file(onnx_path),
            tensorrt_version=str(trt.__version__),
            gpu_name=gpu_name,
            compute_capability=capability,
            precision=precision,
            profile=profile,
            extra=extra,
        )
        options = BuildOptions(precision, workspace_bytes, cache.timing_cache_path(key))
        runtime = trt.Runtime(self._logger)

        def build() -> bytes:
            with torch.cuda.device(self._device_index):
                return build_serialized_engine(trt, self._logger, onnx_path, profile, options, calibrator)

        def deserialize(blob: bytes):
            with torch.cuda.device(self._device_index):
                return runtime.deserialize_cuda_engine(blob)  # None when the bytes are unusable

        self.cache_result = cache.get_or_build(name, key, build, deserialize, log_interval_s=log_interval_s)
        LOG.info("TensorRT engine %s: %s (%s)", self.cache_result.engine_path, self.cache_result.status,
                 self.cache_result.reason)
        self.engine_path = self.cache_result.engine_path
        self.key = key
        self._engine = self.cache_result.engine
        self._profile = profile
        self._context = None
        self._read_io(output_names)
        if not build_only:
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
            self._stream = torch.cuda.Stream(device=self._device_index)

    def _read_io(self, output_names: Iterable[str] | None) -> None:
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._specs: list[TensorSpec] = []
        outputs = []
        self._dtypes: dict[str, np.dtype] = {}
        for n in names:
            try:
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(n)))
            except TypeError as err:  # bf16 / fp8 I/O have no numpy type
                raise RuntimeError(
                    f"engine tensor '{n}' has type {engine.get_tensor_dtype(n)}, which numpy cannot hold; "
                    f"export the model with float32/float16 inputs and outputs"
                ) from err
            self._dtypes[n] = dtype
            if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT:
                shape = tuple(None if d < 0 else int(d) for d in engine.get_tensor_shape(n))
                self._specs.append(TensorSpec(n, dtype, shape))
            else:
                outputs.append(n)
        self._engine_outputs = list(outputs)
        if output_names is not None:
            unknown = [n for n in output_names if n not in outputs]
            if unknown:
                raise ValueError(f"output(s) {unknown} not in the engine's outputs {outputs}")
            outputs = list(output_names)
        self._output_names = outputs

    def warmup(self, inputs: Mapping[str, np.ndarray] | None = None, iterations: int = 1) -> None:
        if inputs is None:
            # The profile's opt shapes are what the engine was tuned for: the natural warm-up input.
            inputs = {s.name: np.zeros(self._profile[s.name].opt, dtype=s.dtype) for s in self._specs}
        super().warmup(inputs, iterations)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if self._context is None:
            raise RuntimeError(f"engine {self.engine_path} was loaded with build_only=True; it cannot run")
        check_inputs(self._specs, inputs)
        for spec in self._specs:
            shape = inputs[spec.name].shape
            if not self._profile[spec.name].contains(shape):
                rng = self._profile[spec.name]
                raise BackendInputError(
                    f"input '{spec.name}' has shape {tuple(shape)}, outside the engine's optimisation profile "
                    f"min {rng.min} .. max {rng.max}; rebuild with a wider input_shapes range"
                )
        device = torch.device("cuda", self._device_index)
        context = self._context
        keep_alive = []
        with torch.cuda.device(device), torch.cuda.stream(self._stream):
            for spec in self._specs:
                tensor = torch.from_numpy(np.ascontiguousarray(inputs[spec.name])).to(device)
                keep_alive.append(tensor)
                if not context.set_input_shape(spec.name, tuple(tensor.shape)):
                    raise BackendInputError(f"TensorRT rejected shape {tuple(tensor.shape)} for input '{spec.name}'")
                context.set_tensor_address(spec.name, tensor.data_ptr())
            results = {}
            # Every engine output needs an address, including ones the caller did not ask for.
            for name in self._engine_outputs:
                shape = tuple(context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise RuntimeError(
                        f"output '{name}' has a data-dependent shape {shape}; this backend needs shapes "
                        f"known from the inputs (no NonZero-style outputs)"
                    )
                out = torch.empty(shape, dtype=_torch_dtype(self._dtypes[name]), device=device)
                context.set_tensor_address(name, out.data_ptr())
                results[name] = out
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            self._stream.synchronize()
        return {n: results[n].cpu().numpy() for n in self._output_names}


def _torch_dtype(dtype: np.dtype):
    import torch

    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype

"""TensorRT engine cache: what an engine depends on, where it lives, and when to rebuild it.

Pure Python on purpose (no tensorrt, no GPU): the decisions here are what break robots in the field
(a JetPack upgrade, a new ONNX file, a half-written engine after a power cut), so they are unit-tested
on every machine with a fake builder. ``tensorrt_backend`` supplies the real build/deserialise calls.

Layout under the cache directory (``$FOVEA_ENGINE_CACHE``, default ``~/.cache/fovea/engines``)::

    <engine_name>.<precision>.engine            serialised engine
    <engine_name>.<precision>.engine.key.json   the EngineKey it was built for (written last)
    <engine_name>.<precision>.engine.lock       serialises concurrent builds of the same engine
    timing-trt<version>-<gpu>-sm<cc>.cache      TensorRT timing cache, shared by all builds on that GPU
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Generic, Mapping, Sequence, TypeVar

from .build_heartbeat import BuildHeartbeat

LOG = logging.getLogger("fovea.backends")

ENGINE_CACHE_ENV = "FOVEA_ENGINE_CACHE"
DEFAULT_ENGINE_CACHE = "~/.cache/fovea/engines"
# Bump when the key's meaning changes, so engines cached by an older Fovea are rebuilt.
KEY_FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")

Shape = tuple[int, ...]
T = TypeVar("T")


def default_cache_dir() -> Path:
    """``$FOVEA_ENGINE_CACHE`` if set, else ``~/.cache/fovea/engines``."""
    return Path(os.path.expanduser(os.environ.get(ENGINE_CACHE_ENV) or DEFAULT_ENGINE_CACHE))


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Optimisation profile: the input shapes an engine accepts.


@dataclass(frozen=True)
class ShapeRange:
    """Smallest, tuned-for and largest shape of one input (TensorRT optimisation profile)."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError(f"min/opt/max shapes must have the same rank: {self.min}, {self.opt}, {self.max}")
        for lo, mid, hi in zip(self.min, self.opt, self.max):
            if not (0 < lo <= mid <= hi):
                raise ValueError(f"need 0 < min <= opt <= max on every axis: {self.min}, {self.opt}, {self.max}")

    @classmethod
    def fixed(cls, shape: Sequence[int]) -> "ShapeRange":
        s = tuple(int(d) for d in shape)
        return cls(s, s, s)

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(lo <= d <= hi for d, lo, hi in zip(shape, self.min, self.max))


def resolve_profile(
    model_inputs: Mapping[str, Sequence[int | None]],
    requested: Mapping[str, object] | None = None,
) -> dict[str, ShapeRange]:
    """Optimisation profile for every model input.

    ``model_inputs``: input name -> ONNX shape (``None`` for dynamic dims), in model order.
    ``requested``: input name -> a fixed shape ``(1, 3, 224, 224)`` or ``(min, opt, max)`` shapes.
    Static inputs need no entry; dynamic ones must be given, since TensorRT cannot guess a range.
    """
    requested = dict(requested or {})
    unknown = [n for n in requested if n not in model_inputs]
    if unknown:
        raise ValueError(f"input_shapes names {unknown} are not model inputs {list(model_inputs)}")
    profile: dict[str, ShapeRange] = {}
    for name, onnx_shape in model_inputs.items():
        dims = tuple(onnx_shape)
        if name not in requested:
            dynamic_axes = [i for i, d in enumerate(dims) if d is None]
            if dynamic_axes:
                raise ValueError(
                    f"input '{name}' has dynamic axes {dynamic_axes} (ONNX shape {dims}); pass "
                    f"input_shapes={{'{name}': (min_shape, opt_shape, max_shape)}} or a fixed shape"
                )
            profile[name] = ShapeRange.fixed(dims)
            continue
        rng = _as_range(name, requested[name])
        for shape in (rng.min, rng.max):
            if len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape)):
                raise ValueError(f"input_shapes['{name}'] = {shape} does not fit the ONNX shape {dims}")
        profile[name] = rng
    return profile


def _as_range(name: str, value: object) -> ShapeRange:
    if isinstance(value, ShapeRange):
        return value
    seq = list(value)  # type: ignore[arg-type]
    if seq and all(isinstance(d, int) for d in seq):
        return ShapeRange.fixed(seq)
    if len(seq) == 3 and all(isinstance(s, (list, tuple)) for s in seq):
        return ShapeRange(*(tuple(int(d) for d in s) for s in seq))
    raise ValueError(f"input_shapes['{name}'] must be a shape or (min, opt, max) shapes, got {value!r}")


# ---------------------------------------------------------------------------------------------------
# The key: everything a serialised engine is only valid for.


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_shapes: tuple[tuple[str, Shape, Shape, Shape], ...]
    # Anything else that changes the engine (calibration data digest, builder options), as sorted pairs.
    extra: tuple[tuple[str, str], ...] = field(default=())
    format_version: int = KEY_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got '{self.precision}'")

    @classmethod
    def create(
        cls,
        *,
        onnx_sha256: str,
        tensorrt_version: str,
        gpu_name: str,
        compute_capability: str,
        precision: str,
        profile: Mapping[str, ShapeRange],
        extra: Mapping[str, str] | None = None,
    ) -> "EngineKey":
        shapes = tuple((n, r.min, r.opt, r.max) for n, r in profile.items())
        return cls(
            onnx_sha256, tensorrt_version, gpu_name, compute_capability, precision, shapes,
            tuple(sorted((str(k), str(v)) for k, v in (extra or {}).items())),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shapes"] = [
            {"name": n, "min": list(lo), "opt": list(mid), "max": list(hi)} for n, lo, mid, hi in self.input_shapes
        ]
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "EngineKey":
        shapes = tuple(
            (s["name"], tuple(s["min"]), tuple(s["opt"]), tuple(s["max"])) for s in d["input_shapes"]
        )
        return cls(
            onnx_sha256=d["onnx_sha256"],
            tensorrt_version=d["tensorrt_version"],
            gpu_name=d["gpu_name"],
            compute_capability=d["compute_capability"],
            precision=d["precision"],
            input_shapes=shapes,
            extra=tuple(sorted((str(k), str(v)) for k, v in d.get("extra", {}).items())),
            format_version=int(d.get("format_version", 0)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def differences(self, other: "EngineKey") -> list[str]:
        """Human-readable list of fields that differ, e.g. ``tensorrt_version: '10.3.0' -> '10.7.0'``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: {theirs[k]!r} -> {mine[k]!r}" for k in mine if mine[k] != theirs.get(k)]


# ---------------------------------------------------------------------------------------------------
# Cache decisions.


@dataclass(frozen=True)
class CacheDecision:
    reuse: bool
    reason: str


@dataclass
class CacheResult(Generic[T]):
    engine_path: Path
    status: str  # "hit" | "built" | "rebuilt"
    reason: str
    engine: T
    build_seconds: float = 0.0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "unknown"


def default_engine_name(onnx_path: str | os.PathLike) -> str:
    """``<parent folder>.<file stem>``: independent of the install prefix (so engines prebuilt on one
    checkout are found from another), yet distinct for ``models/tpv/model.onnx`` and ``models/hmnet/model.onnx``."""
    p = Path(onnx_path).resolve()
    return f"{_slug(p.parent.name)}.{_slug(p.stem)}"


class EngineCache:
    """Finds, validates and (re)builds cached engines under one directory."""

    def __init__(self, cache_dir: str | os.PathLike | None = None) -> None:
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    def engine_path(self, engine_name: str, precision: str) -> Path:
        return self.cache_dir / f"{engine_name}.{precision}.engine"

    @staticmethod
    def key_path(engine_path: Path) -> Path:
        return engine_path.with_name(engine_path.name + ".key.json")

    def timing_cache_path(self, key: EngineKey) -> Path:
        # Timing data is only meaningful for one TensorRT version on one GPU model.
        return self.cache_dir / (
            f"timing-trt{_slug(key.tensorrt_version)}-{_slug(key.gpu_name)}-sm{_slug(key.compute_capability)}.cache"
        )

    def lookup(self, engine_path: Path, key: EngineKey) -> CacheDecision:
        """Whether the engine at ``engine_path`` may be reused for ``key`` (before deserialising it)."""
        key_file = self.key_path(engine_path)
        if not engine_path.is_file():
            return CacheDecision(False, "no cached engine")
        if not key_file.is_file():
            return CacheDecision(False, f"cached engine has no key file {key_file.name}")
        try:
            cached = EngineKey.from_dict(json.loads(key_file.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            return CacheDecision(False, f"key file {key_file.name} is unreadable ({err})")
        if cached != key:
            return CacheDecision(False, "key mismatch: " + "; ".join(key.differences(cached)))
        return CacheDecision(True, "key matches")

    def get_or_build(
        self,
        engine_name: str,
        key: EngineKey,
        build: Callable[[], bytes],
        deserialize: Callable[[bytes], T],
        log_interval_s: float = 30.0,
        log: Callable[[str], None] | None = None,
    ) -> CacheResult[T]:
        """Reuse the cached engine when its key matches and it deserialises; otherwise build, store, load.

        ``build()`` returns the serialised engine; ``deserialize(bytes)`` returns the live engine or
        raises / returns ``None`` when the bytes are unusable (corrupt file, other TensorRT build).
        """
        log = log or LOG.info
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.engine_path(engine_name, key.precision)
        with _file_lock(path.with_name(path.name + ".lock")):
            decision = self.lookup(path, key)
            status = "rebuilt" if path.exists() else "built"
            if decision.reuse:
                try:
                    engine = deserialize(path.read_bytes())
                except Exception as err:  # any failure means "cannot use this file": rebuild it
                    engine, why = None, f"{type(err).__name__}: {err}"
                else:
                    why = "deserialiser returned nothing"
                if engine is not None:
                    return CacheResult(path, "hit", decision.reason, engine)
                decision = CacheDecision(False, f"cached engine failed to deserialise ({why})")
            log(f"TensorRT engine {path.name}: {status} because {decision.reason}")
            with BuildHeartbeat(
                f"building TensorRT engine {path.name} ({key.precision}) — this can take minutes",
                interval_s=log_interval_s,
                log=log,
            ) as beat:
                blob = build()
            if not blob:
                raise RuntimeError(f"TensorRT engine build for {path.name} produced nothing")
            self._store(path, key, bytes(blob))
            engine = deserialize(bytes(blob))
            if engine is None:
                raise RuntimeError(f"a freshly built engine {path.name} could not be deserialised")
            return CacheResult(path, status, decision.reason, engine, beat.elapsed_s)

    def _store(self, path: Path, key: EngineKey, blob: bytes) -> None:
        # Remove the key first and write it last: a crash in between leaves an engine without a key,
        # which the next start rebuilds instead of trusting.
        key_file = self.key_path(path)
        key_file.unlink(missing_ok=True)
        atomic_write(path, blob)
        atomic_write(key_file, key.to_json().encode())


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _file_lock(lock_path: Path):
    """Exclusive lock so two nodes starting together build an engine once; the second then finds it."""
    try:
        import fcntl
    except ImportError:  # non-POSIX: no locking, at worst a duplicate build
        yield
        return
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

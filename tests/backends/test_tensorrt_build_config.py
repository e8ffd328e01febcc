"""How ``build_serialized_engine`` configures TensorRT, checked against a recording stand-in.

The stand-in mirrors only the TensorRT 10 calls the builder makes; it proves the precision flags,
optimisation profile, calibrator and timing-cache handling are wired as intended on machines without
a GPU. Whether TensorRT itself accepts them is what the GPU-marked tests check.
"""
from pathlib import Path
from types import SimpleNamespace

import pytest

from fovea_core.backends.engine_cache import ShapeRange
from fovea_core.backends.tensorrt_backend import BuildOptions, build_serialized_engine


class Recorder:
    def __init__(self, parse_ok=True, build_ok=True, weakly_typed=True):
        self.parse_ok, self.build_ok, self.weakly_typed = parse_ok, build_ok, weakly_typed
        self.flags, self.profiles, self.pools = [], [], {}
        self.timing_cache_in = None
        self.calibrator = self.calibration_profile = None

    def module(self):
        rec = self

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, lo, mid, hi):
                self.shapes[name] = (tuple(lo), tuple(mid), tuple(hi))

        class Config:
            def set_memory_pool_limit(self, pool, size):
                rec.pools[pool] = size

            def set_flag(self, flag):
                rec.flags.append(flag)

            def add_optimization_profile(self, profile):
                rec.profiles.append(profile)

            def set_calibration_profile(self, profile):
                rec.calibration_profile = profile

            @property
            def int8_calibrator(self):
                return rec.calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, value):
                rec.calibrator = value

            def create_timing_cache(self, blob):
                rec.timing_cache_in = bytes(blob)
                return SimpleNamespace(serialize=lambda: rec.timing_cache_in + b"+tuned")

            def set_timing_cache(self, cache, ignore_mismatch):
                self._timing = cache

            def get_timing_cache(self):
                return self._timing

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                assert flags == 0
                return "network"

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"serialized-engine" if rec.build_ok else None

        class OnnxParser:
            def __init__(self, network, logger):
                self.num_errors = 0 if rec.parse_ok else 1

            def parse_from_file(self, path):
                return rec.parse_ok

            def get_error(self, i):
                return "In node 3 (Unique): No importer registered for op: Unique"

        return SimpleNamespace(
            Builder=Builder, OnnxParser=OnnxParser,
            BuilderFlag=SimpleNamespace(FP16="FP16", INT8="INT8") if rec.weakly_typed else SimpleNamespace(),
            __version__="10.15.1" if rec.weakly_typed else "11.4.0",
            MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        )


PROFILE = {"x": ShapeRange((1, 3), (4, 3), (8, 3))}


@pytest.mark.parametrize("precision, flags", [("fp32", []), ("fp16", ["FP16"]), ("int8", ["FP16", "INT8"])])
def test_precision_flags_and_profile(tmp_path, precision, flags):
    rec = Recorder()
    blob = build_serialized_engine(rec.module(), None, Path("m.onnx"), PROFILE,
                                   BuildOptions(precision, workspace_bytes=1 << 30))
    assert blob == b"serialized-engine"
    assert rec.flags == flags
    assert rec.pools == {"WORKSPACE": 1 << 30}
    assert [p.shapes for p in rec.profiles] == [{"x": ((1, 3), (4, 3), (8, 3))}]
    assert rec.calibrator is None


def test_int8_calibrator_uses_the_same_profile():
    rec, calibrator = Recorder(), object()
    build_serialized_engine(rec.module(), None, Path("m.onnx"), PROFILE, BuildOptions("int8"), calibrator)
    assert rec.calibrator is calibrator and rec.calibration_profile is rec.profiles[0]


def test_timing_cache_is_loaded_and_written_back(tmp_path):
    path = tmp_path / "timing.cache"
    rec = Recorder()
    build_serialized_engine(rec.module(), None, Path("m.onnx"), PROFILE, BuildOptions(timing_cache=path))
    assert rec.timing_cache_in == b"" and path.read_bytes() == b"+tuned"
    build_serialized_engine(rec.module(), None, Path("m.onnx"), PROFILE, BuildOptions(timing_cache=path))
    assert rec.timing_cache_in == b"+tuned" and path.read_bytes() == b"+tuned+tuned"


def test_parse_and_build_failures_are_reported():
    with pytest.raises(RuntimeError, match="No importer registered for op: Unique"):
        build_serialized_engine(Recorder(parse_ok=False).module(), None, Path("m.onnx"), PROFILE, BuildOptions())
    with pytest.raises(RuntimeError, match="failed to build"):
        build_serialized_engine(Recorder(build_ok=False).module(), None, Path("m.onnx"), PROFILE, BuildOptions())


def test_strongly_typed_tensorrt_refuses_what_it_cannot_do():
    # TensorRT 11 removed BuilderFlag.FP16/INT8 and calibrators: say so instead of an AttributeError.
    with pytest.raises(RuntimeError, match="strongly typed networks only"):
        build_serialized_engine(Recorder(weakly_typed=False).module(), None, Path("m.onnx"), PROFILE,
                                BuildOptions("fp16"))
    with pytest.raises(RuntimeError, match="no INT8 calibration"):
        build_serialized_engine(Recorder(weakly_typed=False).module(), None, Path("m.onnx"), PROFILE,
                                BuildOptions("int8"), calibrator=object())
    rec = Recorder(weakly_typed=False)  # a Q/DQ int8 file builds with no flags at all
    assert build_serialized_engine(rec.module(), None, Path("m.onnx"), PROFILE, BuildOptions("int8"))
    assert rec.flags == []

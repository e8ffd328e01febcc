"""Engine cache decisions with a fake builder: no TensorRT, no GPU needed."""
import json

import numpy as np
import pytest

from fovea_core.backends.build_heartbeat import BuildHeartbeat
from fovea_core.backends.engine_cache import (
    ENGINE_CACHE_ENV,
    EngineCache,
    EngineKey,
    ShapeRange,
    default_cache_dir,
    default_engine_name,
    resolve_profile,
)
from fovea_core.backends.int8_calibration import CalibrationFeed

PROFILE = {"image": ShapeRange.fixed((1, 3, 64, 64)), "points": ShapeRange((1, 100, 4), (1, 5000, 4), (1, 30000, 4))}


def make_key(**changes) -> EngineKey:
    fields = dict(onnx_sha256="a" * 64, tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7",
                  precision="fp16", profile=PROFILE, extra={})
    fields.update(changes)
    return EngineKey.create(**fields)


class FakeTensorRT:
    """Stands in for build + deserialise: an 'engine' is bytes naming the key digest it was built for."""

    def __init__(self) -> None:
        self.builds = 0

    def build_for(self, key: EngineKey):
        def build() -> bytes:
            self.builds += 1
            return b"ENGINE:" + key.digest().encode()
        return build

    @staticmethod
    def deserialize(blob: bytes):
        if not blob.startswith(b"ENGINE:"):
            raise RuntimeError("magic tag mismatch")  # what a corrupt or foreign engine looks like
        return {"digest": blob[len(b"ENGINE:"):].decode()}


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "b" * 64},
        {"tensorrt_version": "10.7.0"},
        {"gpu_name": "NVIDIA H200"},
        {"compute_capability": "9.0"},
        {"precision": "fp32"},
        {"profile": {**PROFILE, "points": ShapeRange((1, 100, 4), (1, 8000, 4), (1, 30000, 4))}},
        {"profile": {**PROFILE, "image": ShapeRange.fixed((1, 3, 64, 128))}},
        {"extra": {"calibration_sha256": "c" * 64}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_every_component_changes_the_key(change):
    base, changed = make_key(), make_key(**change)
    assert base != changed
    assert base.digest() != changed.digest()
    field = next(iter(change))
    field = "input_shapes" if field == "profile" else field
    assert [d.split(":")[0] for d in changed.differences(base)] == [field]


def test_key_round_trips_through_json():
    key = make_key(extra={"calibration_sha256": "c" * 64, "workspace_bytes": "1024"})
    assert EngineKey.from_dict(json.loads(key.to_json())) == key
    assert make_key().digest() == make_key().digest()  # deterministic across calls


def test_key_rejects_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of"):
        make_key(precision="int4")


def test_build_then_hit_then_rebuild_when_engine_is_corrupt(tmp_path):
    cache, trt, key, logs = EngineCache(tmp_path), FakeTensorRT(), make_key(), []
    first = cache.get_or_build("tpv.model", key, trt.build_for(key), trt.deserialize, log=logs.append)
    assert (first.status, first.reason, trt.builds) == ("built", "no cached engine", 1)
    assert first.engine == {"digest": key.digest()}
    assert first.engine_path == tmp_path / "tpv.model.fp16.engine"
    assert json.loads(cache.key_path(first.engine_path).read_text())["tensorrt_version"] == "10.3.0"
    assert any("this can take minutes" in line for line in logs)

    second = cache.get_or_build("tpv.model", key, trt.build_for(key), trt.deserialize)
    assert (second.status, trt.builds) == ("hit", 1)

    first.engine_path.write_bytes(b"\x00garbage from a power cut")
    third = cache.get_or_build("tpv.model", key, trt.build_for(key), trt.deserialize)
    assert third.status == "rebuilt" and trt.builds == 2
    assert "failed to deserialise" in third.reason and "magic tag mismatch" in third.reason
    assert trt.deserialize(first.engine_path.read_bytes()) == {"digest": key.digest()}


def test_deserialiser_returning_none_also_rebuilds(tmp_path):
    cache, trt, key = EngineCache(tmp_path), FakeTensorRT(), make_key()
    cache.get_or_build("m", key, trt.build_for(key), trt.deserialize)
    calls = []

    def refuses_cached_bytes_once(blob):  # TensorRT's deserialize_cuda_engine returns None on failure
        calls.append(blob)
        return None if len(calls) == 1 else trt.deserialize(blob)

    result = cache.get_or_build("m", key, trt.build_for(key), refuses_cached_bytes_once)
    assert result.status == "rebuilt" and "deserialiser returned nothing" in result.reason


def test_mismatched_key_rebuilds_and_names_what_changed(tmp_path):
    cache, trt = EngineCache(tmp_path), FakeTensorRT()
    old = make_key(tensorrt_version="10.3.0")
    cache.get_or_build("m", old, trt.build_for(old), trt.deserialize)
    new = make_key(tensorrt_version="10.7.0")  # e.g. after a JetPack upgrade
    result = cache.get_or_build("m", new, trt.build_for(new), trt.deserialize)
    assert result.status == "rebuilt" and trt.builds == 2
    assert result.reason == "key mismatch: tensorrt_version: '10.3.0' -> '10.7.0'"
    assert result.engine == {"digest": new.digest()}
    assert EngineKey.from_dict(json.loads(cache.key_path(result.engine_path).read_text())) == new


def test_engine_copied_in_without_or_with_a_broken_key_file_is_not_trusted(tmp_path):
    cache, trt, key = EngineCache(tmp_path), FakeTensorRT(), make_key()
    built = cache.get_or_build("m", key, trt.build_for(key), trt.deserialize)
    key_file = cache.key_path(built.engine_path)

    key_file.unlink()
    assert cache.lookup(built.engine_path, key).reason.startswith("cached engine has no key file")
    assert cache.get_or_build("m", key, trt.build_for(key), trt.deserialize).status == "rebuilt"

    key_file.write_text("{not json")
    decision = cache.lookup(built.engine_path, key)
    assert not decision.reuse and "unreadable" in decision.reason
    assert cache.get_or_build("m", key, trt.build_for(key), trt.deserialize).status == "rebuilt"
    assert trt.builds == 3


def test_failed_build_leaves_no_trusted_engine(tmp_path):
    cache, key = EngineCache(tmp_path), make_key()

    def failing_build() -> bytes:
        raise RuntimeError("TensorRT could not parse model.onnx")

    with pytest.raises(RuntimeError, match="could not parse"):
        cache.get_or_build("m", key, failing_build, FakeTensorRT.deserialize)
    assert not cache.lookup(cache.engine_path("m", "fp16"), key).reuse
    with pytest.raises(RuntimeError, match="produced nothing"):
        cache.get_or_build("m", key, lambda: b"", FakeTensorRT.deserialize)


def test_precisions_are_cached_side_by_side(tmp_path):
    cache, trt = EngineCache(tmp_path), FakeTensorRT()
    fp16, fp32 = make_key(precision="fp16"), make_key(precision="fp32")
    cache.get_or_build("m", fp16, trt.build_for(fp16), trt.deserialize)
    cache.get_or_build("m", fp32, trt.build_for(fp32), trt.deserialize)
    assert cache.get_or_build("m", fp16, trt.build_for(fp16), trt.deserialize).status == "hit"
    assert trt.builds == 2


def test_timing_cache_is_per_tensorrt_version_and_gpu(tmp_path):
    cache = EngineCache(tmp_path)
    orin = cache.timing_cache_path(make_key())
    assert orin.name == "timing-trt10-3-0-orin-sm8-7.cache"
    assert cache.timing_cache_path(make_key(precision="fp32")) == orin  # shared across precisions
    assert cache.timing_cache_path(make_key(gpu_name="NVIDIA H200", compute_capability="9.0")) != orin
    assert cache.timing_cache_path(make_key(tensorrt_version="10.7.0")) != orin


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENGINE_CACHE_ENV, str(tmp_path / "engines"))
    assert default_cache_dir() == tmp_path / "engines"
    assert EngineCache().cache_dir == tmp_path / "engines"
    monkeypatch.delenv(ENGINE_CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "fovea" / "engines"


def test_engine_name_is_folder_and_stem(tmp_path):
    assert default_engine_name(tmp_path / "models" / "tpv" / "model.onnx") == "tpv.model"
    assert default_engine_name(tmp_path / "models" / "hmnet" / "model.onnx") == "hmnet.model"


def test_profile_resolution():
    onnx_inputs = {"image": (1, 3, 64, 64), "points": (1, None, 4)}
    profile = resolve_profile(onnx_inputs, {"points": [(1, 10, 4), (1, 100, 4), (1, 1000, 4)]})
    assert profile["image"] == ShapeRange.fixed((1, 3, 64, 64))
    assert profile["points"].opt == (1, 100, 4) and profile["points"].contains((1, 999, 4))
    assert not profile["points"].contains((1, 1001, 4))
    assert resolve_profile(onnx_inputs, {"points": (1, 50, 4)})["points"] == ShapeRange.fixed((1, 50, 4))
    with pytest.raises(ValueError, match=r"input 'points' has dynamic axes \[1\]"):
        resolve_profile(onnx_inputs)
    with pytest.raises(ValueError, match="does not fit the ONNX shape"):
        resolve_profile(onnx_inputs, {"points": (1, 50, 3)})
    with pytest.raises(ValueError, match="not model inputs"):
        resolve_profile(onnx_inputs, {"point": (1, 50, 4)})
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ShapeRange((1, 10), (1, 5), (1, 20))


def test_heartbeat_logs_at_start_while_blocked_and_at_the_end():
    lines = []
    clock = iter(range(0, 1000, 7))  # a deterministic clock; only the wall-time wait is real
    with BuildHeartbeat("building x", interval_s=0.02, log=lines.append, clock=lambda: next(clock)):
        import time

        time.sleep(0.15)
    assert lines[0] == "building x"
    beats = [line for line in lines if "still building" in line]
    assert 2 <= len(beats) <= 9  # throttled: about one per interval, not one per build step
    assert lines[-1].startswith("building x — finished after")
    with pytest.raises(ValueError):
        BuildHeartbeat("x", interval_s=0)


def test_calibration_feed_serves_batches_then_stops():
    rng = np.random.default_rng(0)
    batches = [{"image": rng.standard_normal((4, 3, 8, 8)).astype(np.float32),
                "mask": np.ones((4, 8, 8), np.float32)} for _ in range(3)]
    feed = CalibrationFeed(batches)
    assert feed.batch_size == 4 and len(feed) == 3
    served = [feed.next_batch(["mask", "image"]) for _ in range(4)]
    assert served[3] is None and list(served[0]) == ["mask", "image"]
    assert np.array_equal(served[1]["image"], batches[1]["image"])
    with pytest.raises(KeyError, match="asked for calibration input"):
        feed.next_batch(["depth"])
    # The digest follows the data: other calibration data must give another engine.
    assert feed.digest() == CalibrationFeed(batches).digest()
    changed = [dict(b) for b in batches]
    changed[2] = dict(changed[2], image=changed[2]["image"] + 1e-3)
    assert CalibrationFeed(changed).digest() != feed.digest()


def test_calibration_feed_rejects_inconsistent_batches():
    good = {"image": np.zeros((2, 3), np.float32)}
    with pytest.raises(ValueError, match="at least one batch"):
        CalibrationFeed([])
    with pytest.raises(ValueError, match="batch 1 input 'image'"):
        CalibrationFeed([good, {"image": np.zeros((2, 4), np.float32)}])
    with pytest.raises(ValueError, match="batch 1 has inputs"):
        CalibrationFeed([good, {"img": np.zeros((2, 3), np.float32)}])
    with pytest.raises(ValueError, match="share one non-zero batch size"):
        CalibrationFeed([{"a": np.zeros((2, 3)), "b": np.zeros((3, 3))}])



def test_prebuild_shape_arguments():
    from fovea_core.backends.prebuild import parse_shape_arg

    assert parse_shape_arg("image:1x3x64x64") == ("image", (1, 3, 64, 64))
    assert parse_shape_arg("points:1x10x4,1x100x4,1x1000x4") == ("points", [(1, 10, 4), (1, 100, 4), (1, 1000, 4)])
    for bad in ("points", "points:1x10x4,1x100x4", "points:1xAx4"):
        with pytest.raises(ValueError):
            parse_shape_arg(bad)

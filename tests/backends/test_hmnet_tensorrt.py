"""HMNet's step graphs on TensorRT (the GPU tests skip where no CUDA GPU + TensorRT >= 10 exist, like the other
TensorRT tests of this folder): the streaming schedule gives what ONNX Runtime gives, one cached engine per
step graph is built once and reused, and the event-memory node runs on the tensorrt backend."""
from pathlib import Path

import numpy as np
import pytest

from fovea_core.events.arrays import make_events
from fovea_core.events.hmnet.streaming import StreamingHMNet, step_graph_names
from fovea_core.events.hmnet.train import load_model

MODELS = Path(__file__).resolve().parents[2] / "models" / "hmnet"


def windows(cfg, n=12, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = np.sort(rng.integers(i * cfg.window_ns, (i + 1) * cfg.window_ns, 400))
        out.append((make_events(rng.integers(0, cfg.width, 400), rng.integers(0, cfg.height, 400), t,
                                rng.integers(0, 2, 400)), (i + 1) * cfg.window_ns))
    return out


@pytest.mark.gpu
def test_step_graphs_on_tensorrt_match_onnxruntime_and_engines_are_cached(tmp_path):
    model, _ = load_model(MODELS / "hmnet.pt")
    cfg = model.cfg
    trt = StreamingHMNet.from_onnx(cfg, MODELS / "onnx", backend="tensorrt", cache_dir=tmp_path)
    ort = StreamingHMNet.from_onnx(cfg, MODELS / "onnx", backend="onnxruntime")
    statuses = {name: b.cache_result.status for name, b in trt.runner.backends.items()}
    assert set(statuses) == set(step_graph_names(cfg)) and set(statuses.values()) == {"built"}
    for events, end in windows(cfg):  # every level runs within 12 steps of 5 ms
        a, b = trt.feed(events, end), ort.feed(events, end)
        assert a.levels_run == b.levels_run
        assert np.abs(a.logits - b.logits).max() < 1e-2 and np.abs(a.depth - b.depth).max() < 1e-2
        assert (a.labels == b.labels).mean() > 0.99
    again = StreamingHMNet.from_onnx(cfg, MODELS / "onnx", backend="tensorrt", cache_dir=tmp_path)
    assert {b.cache_result.status for b in again.runner.backends.values()} == {"hit"}


@pytest.mark.gpu
def test_event_memory_node_runs_on_tensorrt(tmp_path, monkeypatch):
    import sys

    from event_camera_msgs.msg import EventPacket

    from fovea_core.events.packets import PacketStreamEncoder

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robustness"))
    from node_harness import NodeHarness

    from fovea_ros.nodes.event_memory_node import EventMemoryNode

    monkeypatch.setenv("FOVEA_ENGINE_CACHE", str(tmp_path))
    harness = NodeHarness(EventMemoryNode, {"backend": "tensorrt", "precision": "fp16", "queue_size": 50},
                          run_worker=True)
    try:
        assert not harness.up_error, harness.up_error
        cfg = harness.node.cfg
        encoder = PacketStreamEncoder("evt3", cfg.width, cfg.height)
        for events, _ in windows(cfg, 12):
            raw = encoder.encode(events, 1_700_000_000_000_000_000 + int(events["t"][0]))
            msg = EventPacket(width=raw.width, height=raw.height, seq=raw.seq, encoding="evt3", events=raw.events)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(raw.stamp_ns, 1_000_000_000)
            harness.feed("/event_camera/events", msg)
        assert harness.node.wait_idle(120)
        values = harness.values()
        assert int(values["steps"]) >= 10 and values["drops_total"] == "0", values
        assert values["model"].endswith("(tensorrt)")
    finally:
        harness.close()


def test_tensorrt_wiring_without_a_gpu(monkeypatch, tmp_path):
    """On any machine: backend tensorrt asks the backend layer for one engine per step graph, with the
    precision and cache asked for; the node refuses a precision the other backends cannot run."""
    import fovea_core.backends as backends

    calls = []

    class Fake:
        def __init__(self, kind, onnx_path, **options):
            calls.append((kind, Path(onnx_path).name, options))

        def run(self, inputs):
            raise AssertionError("not run here")

    monkeypatch.setattr(backends, "load_backend", lambda kind, **kw: Fake(kind, **kw))
    model, _ = load_model(MODELS / "hmnet.pt")
    StreamingHMNet.from_onnx(model.cfg, MODELS / "onnx", backend="tensorrt", parameter="onnx_dir",
                             precision="fp16", cache_dir=tmp_path)
    assert sorted(name for _, name, _ in calls) == sorted(f"{n}.onnx" for n in step_graph_names(model.cfg))
    assert all(kind == "tensorrt" and o["device"] == "cuda" and o["precision"] == "fp16" and
               o["cache_dir"] == tmp_path and o["model_parameter"] == "onnx_dir" for kind, _, o in calls)
    with pytest.raises(ValueError, match="onnxruntime or tensorrt"):
        StreamingHMNet.from_onnx(model.cfg, MODELS / "onnx", backend="torch")

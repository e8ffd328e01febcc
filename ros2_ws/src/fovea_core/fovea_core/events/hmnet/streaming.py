"""Streaming inference: feed the events of each 5 ms window, get the latest prediction.

Only the levels due at a step run (level l every ``rate_l`` steps); the slow part of the neck is recomputed
only when a slow level changed. The same schedule runs on PyTorch or on ONNX graphs of the step pieces
(``step_graphs``) through ``fovea_core.backends``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fovea_core.events.hmnet.config import HMNetConfig
from fovea_core.events.hmnet.step_graphs import step_graph_specs
from fovea_core.events.hmnet.tokens import window_tokens


@dataclass
class Prediction:
    labels: np.ndarray  # (H, W) uint8 class ids
    depth: np.ndarray  # (H, W) float32 metres
    logits: np.ndarray  # (C, H, W) float32
    window_end_ns: int
    step: int
    levels_run: tuple[bool, ...]
    latency_s: float  # model time of this step (tokenising included, event decoding excluded)


def step_graph_names(cfg: HMNetConfig) -> list[str]:
    """The exported step graphs a model of ``cfg`` needs (``<name>.onnx`` each)."""
    return ["fast", "readout"] + [f"level{i + 1}" for i in range(1, cfg.levels)] + [
        f"topdown{i}" for i in range(1, cfg.levels)] + (["slow_neck"] if cfg.levels > 1 else [])


class _GraphRunner:
    """Runs the step pieces by name with numpy in / numpy out."""

    def __init__(self, backends: dict) -> None:
        self.backends = backends

    def __call__(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.backends[name].run(inputs)


class _TorchRunner:
    """Same interface, calling the modules directly (no copies through a backend) under inference mode."""

    def __init__(self, model) -> None:
        import torch

        self.torch = torch
        self.specs = step_graph_specs(model)

    def __call__(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        module, in_names, out_names = self.specs[name]
        with self.torch.inference_mode():
            out = module(*[self.torch.from_numpy(inputs[n]) for n in in_names])
        out = out if isinstance(out, tuple) else (out,)
        return {n: o.numpy() for n, o in zip(out_names, out)}


@dataclass
class StreamingHMNet:
    cfg: HMNetConfig
    runner: object
    step_index: int = 0
    states: list = field(default_factory=list)
    slow: np.ndarray | None = None
    topdown: dict = field(default_factory=dict)  # level i -> cached keys / values of level i+1 (1-based)
    runs: list = field(default_factory=list)  # per level: steps at which it ran

    @classmethod
    def from_torch(cls, model) -> "StreamingHMNet":
        model.eval()
        return cls(model.cfg, _TorchRunner(model)).reset()

    @classmethod
    def from_onnx(cls, cfg: HMNetConfig, onnx_dir: str | Path, threads: int = 1, *, backend: str = "onnxruntime",
                  device: str | None = None, parameter: str | None = None, **options) -> "StreamingHMNet":
        """The exported step graphs in ``onnx_dir`` on ``backend`` ("onnxruntime": CPU unless ``device`` says
        otherwise, ``threads`` intra-op threads; "tensorrt": one cached engine per step graph, under the
        default engine names ``fovea build-engine`` prebuilds). ``parameter``: the name a bad file is reported
        under; ``options`` go to ``load_backend`` (e.g. tensorrt ``precision``, ``cache_dir``)."""
        from fovea_core.backends import load_backend

        onnx_dir = Path(onnx_dir)
        backends = {}
        for name in step_graph_names(cfg):
            if backend == "onnxruntime":
                kind_options = {"device": device or "cpu", "intra_op_threads": threads}
            elif backend == "tensorrt":
                kind_options = {"device": device or "cuda"}
            else:
                raise ValueError(f"step graphs run on onnxruntime or tensorrt, not {backend!r}")
            backends[name] = load_backend(backend, onnx_path=str(onnx_dir / f"{name}.onnx"), model_parameter=parameter,
                                          **kind_options, **options)
        return cls(cfg, _GraphRunner(backends)).reset()

    def reset(self) -> "StreamingHMNet":
        c = self.cfg
        self.states = [np.zeros((1, ch, c.height // s, c.width // s), np.float32) for ch, s in zip(c.channels, c.strides)]
        self.step_index, self.slow, self.topdown = 0, None, {}
        self.runs = [[] for _ in range(c.levels)]
        return self

    def due(self, step: int) -> list[bool]:
        return [step % r == r - 1 for r in self.cfg.rates]

    def feed_tokens(self, tokens: np.ndarray, window_end_ns: int = 0) -> Prediction:
        start = time.perf_counter()
        c, st, run = self.cfg, self.states, self.runner
        n = c.levels
        feed = {"tokens": tokens.reshape(1, *tokens.shape).astype(np.int64), "z1": st[0]}
        if n > 1:
            feed.update(self._topdown(1))
        st[0] = run("fast", feed)["z1_out"]
        due = self.due(self.step_index)
        self.runs[0].append(self.step_index)
        for i in range(1, n):  # 0-based index i = level i+1
            if due[i]:
                feed = {f"z{i}": st[i - 1], f"z{i + 1}": st[i]}
                if i + 1 < n:
                    feed.update(self._topdown(i + 1))
                st[i] = run(f"level{i + 1}", feed)[f"z{i + 1}_out"]
                self.runs[i].append(self.step_index)
                self.topdown.pop(i, None)  # level i reads the new level i+1 from its next update on
        if n > 1 and (self.slow is None or any(due[1:])):
            self.slow = run("slow_neck", {f"z{i + 1}": st[i] for i in range(1, n)})["slow"]
        feed = {"z1": st[0]}
        if n > 1:
            feed["slow"] = self.slow
        out = run("readout", feed)
        logits, depth = out["logits"][0], out["depth"][0, 0]
        pred = Prediction(logits.argmax(0).astype(np.uint8), depth.astype(np.float32), logits, int(window_end_ns),
                          self.step_index, tuple(due), time.perf_counter() - start)
        self.step_index += 1
        return pred

    def _topdown(self, level: int) -> dict[str, np.ndarray]:
        """Cached keys / values of level+1 for ``level`` (1-based), computed after level+1 last changed."""
        if level not in self.topdown:
            self.topdown[level] = self.runner(f"topdown{level}", {f"z{level + 1}": self.states[level]})
        return self.topdown[level]

    def feed(self, events: np.ndarray, window_end_ns: int) -> Prediction:
        """Events of the window [window_end_ns - 5 ms, window_end_ns) (others are ignored)."""
        c = self.cfg
        start = time.perf_counter()
        tokens = window_tokens(events, window_end_ns - c.window_ns, c.window_ns, c.width, c.height, c.strides[0],
                               c.time_bins, c.max_events_per_cell)
        pred = self.feed_tokens(tokens, window_end_ns)
        pred.latency_s = time.perf_counter() - start
        return pred


def export_step_graphs(model, out_dir: str | Path) -> dict[str, float]:
    """ONNX of every step piece into ``out_dir``; returns name -> max |onnxruntime - torch| on sample inputs."""
    import torch

    from fovea_core.backends import export_onnx

    c = model.cfg
    model.eval()
    g = torch.Generator().manual_seed(0)
    shapes = {f"z{i + 1}": (1, ch, c.height // s, c.width // s) for i, (ch, s) in enumerate(zip(c.channels, c.strides))}
    samples = {k: torch.randn(v, generator=g) for k, v in shapes.items()}
    cells = (c.height // c.strides[0]) * (c.width // c.strides[0])
    samples["tokens"] = torch.randint(0, 60, (1, cells, c.max_events_per_cell), generator=g)
    if c.levels > 1:
        with torch.no_grad():
            for i in range(1, c.levels):
                kv = model.topdown_kv(i - 1, samples[f"z{i + 1}"])
                samples.update(dict(zip([f"td{i}_k", f"td{i}_v", f"td{i}_bias"], kv)))
        samples["slow"] = torch.randn(1, c.neck_channels, c.height // c.strides[1], c.width // c.strides[1], generator=g)
    diffs = {}
    for name, (module, in_names, out_names) in step_graph_specs(model).items():
        report = export_onnx(module, {n: samples[n] for n in in_names}, Path(out_dir) / f"{name}.onnx",
                             output_names=out_names)
        diffs[name] = report.worst_abs_diff
    return diffs

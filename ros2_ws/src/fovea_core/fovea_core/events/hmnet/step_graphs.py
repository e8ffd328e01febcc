"""The per-step computation of HMNet split into the pieces the streaming runtime calls, as modules with
positional tensor inputs (so each can be exported to ONNX and run by any backend):

- ``fast``      (tokens, z1[, td1_k, td1_v, td1_bias])        -> z1       every step
- ``level<i>``  (z_{i-1}, z_i[, td<i>_k, td<i>_v, td<i>_bias]) -> z_i      only when level i is due
- ``topdown<i>`` (z_{i+1})  -> td<i>_k, td<i>_v, td<i>_bias    level i+1's keys / values for level i's top-down
  attention; only after level i+1 changed
- ``slow_neck`` (z2, z3, ...)                                  -> slow     only after a slow level changed
- ``readout``   (z1[, slow])                                   -> logits, depth   every step
"""
from __future__ import annotations

from torch import nn

from fovea_core.events.hmnet.model import HMNet


class FastUpdate(nn.Module):
    def __init__(self, model: HMNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens, z1, *topdown_kv):
        k, v, mask = self.model.esca.keys_values(tokens)
        return self.model.update_fast([z1, None], k, v, mask, tuple(topdown_kv) if topdown_kv else None)


class TopDown(nn.Module):
    def __init__(self, model: HMNet, level: int) -> None:
        super().__init__()
        self.model, self.level = model, level

    def forward(self, upper):
        return self.model.topdown_kv(self.level, upper)


class LevelUpdate(nn.Module):
    def __init__(self, model: HMNet, level: int) -> None:
        super().__init__()
        self.model, self.level = model, level

    def forward(self, lower, z, *topdown_kv):
        i = self.level
        states = [None] * (i - 1) + [lower, z, None]
        return self.model.update_level(i, states, tuple(topdown_kv) if topdown_kv else None)


class SlowNeck(nn.Module):
    def __init__(self, model: HMNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, *slow_states):
        return self.model.neck.slow_features([None] + list(slow_states))


class Readout(nn.Module):
    def __init__(self, model: HMNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, z1, slow=None):
        return self.model.neck.heads(z1, slow)


def _td(i: int) -> list[str]:
    return [f"td{i}_k", f"td{i}_v", f"td{i}_bias"]


def step_graph_specs(model: HMNet) -> dict[str, tuple[nn.Module, list[str], list[str]]]:
    """name -> (module, input names, output names); level numbers are 1-based in names."""
    n = model.cfg.levels
    specs = {"fast": (FastUpdate(model), ["tokens", "z1"] + (_td(1) if n > 1 else []), ["z1_out"]),
             "readout": (Readout(model), ["z1"] + (["slow"] if n > 1 else []), ["logits", "depth"])}
    for i in range(1, n):  # 0-based level index i is level i+1 in names
        specs[f"level{i + 1}"] = (LevelUpdate(model, i), [f"z{i}", f"z{i + 1}"] + (_td(i + 1) if i + 1 < n else []),
                                  [f"z{i + 1}_out"])
        specs[f"topdown{i}"] = (TopDown(model, i - 1), [f"z{i + 1}"], _td(i))
    if n > 1:
        specs["slow_neck"] = (SlowNeck(model), [f"z{i + 1}" for i in range(1, n)], ["slow"])
    return specs

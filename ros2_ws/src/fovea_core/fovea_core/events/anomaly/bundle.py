"""The anomaly model file: one torch state file (read with ``weights_only=True`` through
:mod:`fovea_core.model_files`) holding the sync network, the three AR models (classical features, learned
features, events-only activity) and a JSON ``meta`` string: feature settings, model shapes, window length and
what calibration on held-out normal data fitted: thresholds (with the false-alarm rate and the data), the
reference distributions and the softmax temperatures of both extractors.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fovea_core.events.anomaly.ar_model import CausalTransformerAR
from fovea_core.events.anomaly.features import FeatureConfig
from fovea_core.events.anomaly.sync_net import SyncNet

EXTRACTORS = ("rule", "classical", "learned")  # frame + event streams
EVENTS_ONLY = "events"
# the AR score alone (AVAD's), without the reference term: calibrated too, for the evaluation's ablation
AR_ONLY = {"classical_ar": "classical", "learned_ar": "learned"}


@dataclass
class AnomalyMeta:
    features: dict = field(default_factory=lambda: asdict(FeatureConfig()))
    sync_net: dict = field(default_factory=lambda: {"pool": 2, "hidden": 32})
    ar: dict = field(default_factory=lambda: {"width": 64, "layers": 2, "heads": 4, "context": 50})
    activity_grid: tuple[int, int] = (8, 6)  # events-only observation
    events_step_ns: int = 40_000_000  # events-only step clock
    window_steps: int = 5
    rule_history: int = 25
    thresholds: dict = field(default_factory=dict)  # score -> window-score threshold
    references: dict = field(default_factory=dict)  # extractor -> reference distribution (list of floats)
    # extractor -> softmax temperature (classical: NCC units; learned: on the network's scores); the ones the
    # AR models were trained at unless a site calibration matched them to a recording (:mod:`.calibration`)
    temperatures: dict = field(default_factory=lambda: {"classical": FeatureConfig().temperature, "learned": 1.0})
    normal_entropy: dict = field(default_factory=dict)  # extractor -> mean entropy of the training steps (nats)
    false_alarm_rate: float = 0.002  # per step, on the calibration data
    calibration: str = ""  # which data the thresholds came from
    training: dict = field(default_factory=dict)

    def feature_config(self) -> FeatureConfig:
        f = dict(self.features)
        f["grid"] = tuple(f["grid"])
        f["temperature"] = float(self.temperatures.get("classical", f.get("temperature", 0.1)))
        return FeatureConfig(**f)

    def reference(self, extractor: str):
        """The reference distribution of ``extractor`` as an array, or None (AVAD's score alone)."""
        import numpy as np

        ref = self.references.get(extractor)
        return None if ref is None else np.asarray(ref, np.float32)

    def activity_config(self) -> FeatureConfig:
        return FeatureConfig(grid=tuple(self.activity_grid))


@dataclass
class AnomalyModels:
    meta: AnomalyMeta
    sync_net: SyncNet
    ar: dict[str, CausalTransformerAR]  # "classical", "learned", "events"


def build_models(meta: AnomalyMeta) -> AnomalyModels:
    cfg = meta.feature_config()
    net = SyncNet(cfg.grid, meta.sync_net["pool"], meta.sync_net["hidden"])
    ar = {name: CausalTransformerAR(cfg.num_offsets, **meta.ar) for name in ("classical", "learned")}
    ar[EVENTS_ONLY] = CausalTransformerAR(meta.activity_grid[0] * meta.activity_grid[1], **meta.ar)
    return AnomalyModels(meta, net, ar)


def save_models(models: AnomalyModels, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"meta": json.dumps(asdict(models.meta)), "sync_net": models.sync_net.state_dict()}
    state.update({f"ar_{name}": m.state_dict() for name, m in models.ar.items()})
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_models(path: str | Path, parameter: str | None = None) -> AnomalyModels:
    """Checked load (missing / cut short / pickled / wrong keys or shapes -> ModelFileError naming the file)."""
    from fovea_core.model_files import ModelFileError, check_state_dict, load_torch_file

    keys = ("meta", "sync_net", "ar_classical", "ar_learned", "ar_events")
    state = load_torch_file(path, parameter, required_keys=keys)
    try:
        raw = json.loads(state["meta"])
        raw["activity_grid"] = tuple(raw["activity_grid"])
        meta = AnomalyMeta(**raw)
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(path, f"meta is not an anomaly model description ({exc})", parameter) from exc
    models = build_models(meta)
    for key, module in [("sync_net", models.sync_net)] + [(f"ar_{n}", m) for n, m in models.ar.items()]:
        check_state_dict(state[key], module, path, parameter, key=key)
        module.load_state_dict(state[key])
        module.eval()
    return models


def export_onnx_models(models: AnomalyModels, onnx_dir: str | Path) -> dict[str, float]:
    """``ar_<name>.onnx`` for each AR model (full-window runners of the node); returns each export's check."""
    from fovea_core.events.anomaly.scoring import export_ar_onnx

    return {name: export_ar_onnx(m, Path(onnx_dir) / f"ar_{name}.onnx") for name, m in models.ar.items()}

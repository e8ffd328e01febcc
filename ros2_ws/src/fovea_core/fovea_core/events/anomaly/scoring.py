"""Scores: AVAD's per-step KL divergence between the AR model's prediction and the observed distribution, a
causal sliding-window mean, the rule baseline, and the threshold calibrated on held-out normal data.

Every score exists twice with one definition: over a whole recorded sequence (evaluation, calibration) and
step by step (the node); the tests hold the two equal.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch

from fovea_core.events.anomaly.ar_model import LOG_FLOOR, CausalTransformerAR


def _kl(observed: np.ndarray, log_predicted: np.ndarray) -> np.ndarray:
    target = np.clip(observed, LOG_FLOOR, None)
    target = target / target.sum(-1, keepdims=True)
    return (target * (np.log(target) - log_predicted)).sum(-1)


@torch.no_grad()
def kl_sequence(model: CausalTransformerAR, dists: np.ndarray) -> np.ndarray:
    """(K,) KL of each step against the prediction from up to ``context`` steps before it; NaN for step 0."""
    model.eval()
    k, c = len(dists), model.context
    out = np.full(k, np.nan, np.float32)
    if k < 2:
        return out
    x = torch.from_numpy(np.ascontiguousarray(dists, dtype=np.float32))
    head = model(x[None, :min(c, k - 1)])[0].numpy()  # predictions of steps 1..min(c, k-1)
    out[1:1 + len(head)] = _kl(dists[1:1 + len(head)], head)
    if k > c + 1:  # later steps: the full window of the c steps before each
        windows = x.unfold(0, c, 1)[: k - c].permute(0, 2, 1)  # (k - c, c, dim), window i = steps i..i+c-1
        preds = torch.cat([model(windows[i:i + 256])[:, -1] for i in range(0, len(windows), 256)]).numpy()
        out[c:] = _kl(dists[c:], preds)
    return out


def windowed_mean(scores: np.ndarray, window: int) -> np.ndarray:
    """Causal mean over the last ``window`` finite scores (NaN until one exists)."""
    out = np.full(len(scores), np.nan, np.float32)
    recent: deque = deque(maxlen=window)
    for i, s in enumerate(scores):
        if np.isfinite(s):
            recent.append(float(s))
        if recent:
            out[i] = np.mean(recent)
    return out


class StreamingKL:
    """Step-by-step :func:`kl_sequence` + :func:`windowed_mean`.

    ``full_window``: optional runner for a full context window (``(1, context, dim)`` probabilities -> log-
    probabilities), e.g. the model exported to ONNX and run by ONNX Runtime (:func:`onnx_window_runner`);
    shorter windows at the start of a stream run on the torch model."""

    def __init__(self, model: CausalTransformerAR, window: int, full_window=None) -> None:
        self.model = model.eval()
        self.full_window = full_window
        self.history: deque = deque(maxlen=model.context)
        self.recent: deque = deque(maxlen=window)

    def reset(self) -> None:
        self.history.clear()
        self.recent.clear()

    @torch.no_grad()
    def update(self, dist: np.ndarray) -> tuple[float, float]:
        """(step score, window score); NaN step score for the first step."""
        step = float("nan")
        if self.history:
            context = np.stack(self.history).astype(np.float32)[None]
            if self.full_window is not None and len(self.history) == self.model.context:
                predicted = self.full_window(context)[0, -1]
            else:
                predicted = self.model(torch.from_numpy(context))[0, -1].numpy()
            step = float(_kl(dist, predicted))
            self.recent.append(step)
        self.history.append(np.asarray(dist, np.float32))
        return step, (float(np.mean(self.recent)) if self.recent else float("nan"))


def rule_step_scores(lags: np.ndarray, history: int = 25) -> np.ndarray:
    """The rule baseline: |argmax lag - running median of the ``history`` lags before it|, in bins (NaN first)."""
    out = np.full(len(lags), np.nan, np.float32)
    for i in range(1, len(lags)):
        out[i] = abs(float(lags[i]) - float(np.median(lags[max(0, i - history):i])))
    return out


def rate_rule_scores(counts: np.ndarray, history: int = 25) -> np.ndarray:
    """The events-only rule: |log(1 + events in the step) - running median of it| (NaN first)."""
    return rule_step_scores(np.log1p(np.asarray(counts, np.float64)), history)


class StreamingRule:
    def __init__(self, window: int, history: int = 25) -> None:
        self.lags: deque = deque(maxlen=history)
        self.recent: deque = deque(maxlen=window)

    def reset(self) -> None:
        self.lags.clear()
        self.recent.clear()

    def update(self, lag: float) -> tuple[float, float]:
        step = float("nan")
        if self.lags:
            step = abs(float(lag) - float(np.median(self.lags)))
            self.recent.append(step)
        self.lags.append(lag)
        return step, (float(np.mean(self.recent)) if self.recent else float("nan"))


def calibrate_threshold(normal_window_scores: np.ndarray, false_alarm_rate: float) -> float:
    """The (1 - rate) quantile of window scores on held-out normal data: that share of normal steps alarms."""
    finite = normal_window_scores[np.isfinite(normal_window_scores)]
    if len(finite) == 0:
        raise ValueError("no normal scores to calibrate on")
    return float(np.quantile(finite, 1.0 - false_alarm_rate))


def export_ar_onnx(model: CausalTransformerAR, path) -> float:
    """Export the AR model for full context windows (fixed length ``context``) and return the largest
    |ONNX Runtime - torch| difference on a random window (the export's own check)."""
    from fovea_core.backends.export import export_onnx

    sample = torch.softmax(torch.randn(1, model.context, model.dim), dim=-1)
    # the fused inference kernel of nn.TransformerEncoderLayer has no ONNX form: export the plain ops
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        report = export_onnx(model.eval(), {"dists": sample}, path, ["log_probs"])
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return max(report.max_abs_diff.values())


def onnx_window_runner(path, threads: int = 1):
    """A ``full_window`` runner for :class:`StreamingKL` from an exported AR model (checked load)."""
    from fovea_core.backends.onnxruntime_backend import OnnxRuntimeBackend
    from fovea_core.model_files import check_model_file

    backend = OnnxRuntimeBackend(check_model_file(path, "onnx"), device="cpu", intra_op_threads=threads)
    return lambda window: backend.run({"dists": window})["log_probs"]

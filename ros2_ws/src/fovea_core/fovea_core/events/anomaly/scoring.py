"""Scores: AVAD's per-step KL divergence between the AR model's prediction and the observed distribution, plus
the KL divergence of the step's observations from the normal reference distribution, a causal sliding-window
mean, the rule baseline, and the threshold calibrated on held-out normal data.

Why the reference term: the AR model predicts the next step from the last 50, so a fault that persists (a
constant offset, frozen frames, a silent event stream) soon becomes its context, and it predicts the faulty
distribution back: on held-out simulated data the AR score alone reached AUC 0.78 on frozen frames and 0.83
on an event gap. The reference (the mean distribution of held-out normal steps, fitted with the thresholds)
does not adapt: where the sync usually peaks is exactly what such faults move. Both are KL divergences in nats
of the same observation, so they add. ``reference=None`` gives AVAD's score alone (the evaluation's ablation).

Every score exists twice with one definition: over a whole recorded sequence (evaluation, calibration) and
step by step (the node); the tests hold the two equal.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch

from fovea_core.events.anomaly.ar_model import LOG_FLOOR, CausalTransformerAR, NextStepPredictor


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


def reference_kl(dists: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """KL(observed || reference) per step (``reference``: floored at LOG_FLOOR and normalised, see
    :func:`fit_reference`)."""
    return _kl(dists, np.log(reference))


def fit_reference(normal_dists: np.ndarray) -> np.ndarray:
    """The reference distribution: the mean of normal steps' distributions, floored like the observations."""
    ref = np.clip(np.mean(np.asarray(normal_dists, np.float64), axis=0), LOG_FLOOR, None)
    return (ref / ref.sum()).astype(np.float32)


def step_scores(model: CausalTransformerAR, dists: np.ndarray, nominal_dists: np.ndarray | None = None,
                reference: np.ndarray | None = None) -> np.ndarray:
    """(K,) per-step scores of a whole sequence: :func:`kl_sequence`, plus with a ``reference`` the KL of the
    step's distribution and of its nominal-window distribution from it (NaN for step 0)."""
    out = kl_sequence(model, dists)
    if reference is not None:
        nominal = dists if nominal_dists is None else nominal_dists
        out = out + reference_kl(dists, reference) + reference_kl(nominal, reference)
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
    """Step-by-step :func:`step_scores` + :func:`windowed_mean`.

    ``next_step``: optional runner for a full context window (``(1, context, dim)`` probabilities -> the next
    step's ``(1, dim)`` log-probabilities), e.g. the model's :class:`NextStepPredictor` exported to ONNX and run
    by ONNX Runtime (:func:`onnx_window_runner`); shorter windows at the start of a stream run on the torch
    model."""

    def __init__(self, model: CausalTransformerAR, window: int, next_step=None,
                 reference: np.ndarray | None = None) -> None:
        self.model = model.eval()
        self.next_step = next_step
        self.reference = None if reference is None else np.asarray(reference, np.float32)
        # the last ``context`` distributions, oldest first, in one array (no stacking per step)
        self._context = np.zeros((1, model.context, model.dim), np.float32)
        self._filled = 0
        self.recent: deque = deque(maxlen=window)

    def reset(self) -> None:
        self._filled = 0
        self.recent.clear()

    def update(self, dist: np.ndarray, nominal: np.ndarray | None = None) -> tuple[float, float]:
        """(step score, window score); NaN step score for the first step. ``nominal``: the distribution of the
        step's nominal-length windows (the reference term's second part; default ``dist``)."""
        step = float("nan")
        c = self.model.context
        if self._filled:
            if self.next_step is not None and self._filled == c:
                predicted = self.next_step(self._context)[0]
            else:
                with torch.no_grad():
                    window = torch.from_numpy(self._context[:, c - self._filled:])
                    predicted = self.model(window)[0, -1].numpy()
            step = float(_kl(dist, predicted))
            if self.reference is not None:
                log_ref = np.log(self.reference)
                step += float(_kl(dist, log_ref)) + float(_kl(dist if nominal is None else nominal, log_ref))
            self.recent.append(step)
        self._context[0, :-1] = self._context[0, 1:].copy()
        self._context[0, -1] = dist
        self._filled = min(self._filled + 1, c)
        return step, (sum(self.recent) / len(self.recent) if self.recent else float("nan"))


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
    """Export the AR model's next-step prediction from a full context window (:class:`NextStepPredictor`,
    fixed length ``context``) and return the largest |ONNX Runtime - torch| difference on a random window,
    against the full model's last output (the export's own check)."""
    from fovea_core.backends.export import export_onnx
    from fovea_core.backends.onnxruntime_backend import OnnxRuntimeBackend

    sample = torch.softmax(torch.randn(1, model.context, model.dim), dim=-1)
    # the fused inference kernel of nn.TransformerEncoderLayer has no ONNX form: export the plain ops
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        export_onnx(NextStepPredictor(model.eval()).eval(), {"dists": sample}, path, ["log_probs"])
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    check = torch.softmax(3 * torch.randn(1, model.context, model.dim), dim=-1)
    with torch.no_grad():
        expected = model.eval()(check)[:, -1].numpy()
    got = OnnxRuntimeBackend(path, device="cpu", intra_op_threads=1).run({"dists": check.numpy()})["log_probs"]
    return float(np.abs(got - expected).max())


def onnx_window_runner(path, threads: int = 1, model: CausalTransformerAR | None = None,
                       parameter: str | None = None):
    """A ``next_step`` runner for :class:`StreamingKL` from an exported AR model (checked load). With ``model``,
    the file must take that model's full window and give one next-step distribution (an export of another
    shape, or of the full window as earlier versions wrote it, is refused naming the file)."""
    from fovea_core.backends.onnxruntime_backend import OnnxRuntimeBackend
    from fovea_core.model_files import ModelFileError, check_model_file

    path = check_model_file(path, "onnx", parameter)
    backend = OnnxRuntimeBackend(path, device="cpu", intra_op_threads=threads)
    if model is not None:
        window = np.full((1, model.context, model.dim), 1.0 / model.dim, np.float32)
        try:
            out = backend.run({"dists": window})["log_probs"]
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ModelFileError(path, f"is no next-step AR model for {model.context} x {model.dim} windows "
                                       f"({exc})", parameter) from None
        if out.shape != (1, model.dim):
            raise ModelFileError(path, f"gives {out.shape}, not the next step's (1, {model.dim}): re-export it "
                                       "(fovea train anomaly / export_onnx_models)", parameter)
    return lambda window: backend.run({"dists": window})["log_probs"]

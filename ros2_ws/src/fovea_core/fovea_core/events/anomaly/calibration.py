"""Window scores of a recorded sequence for every detector, and the calibration that fits a model to normal data:
thresholds, reference distributions and (for a site) the softmax temperatures.

* ``fovea train anomaly`` calibrates on held-out simulated normal sequences at the temperatures the AR models
  were trained at, and records the mean entropy of the training steps' distributions (``normal_entropy``).
* A site calibration (``fovea fit anomaly`` on a user's recording; the evaluation on the first part of the real
  DAVIS346 clip) first matches each extractor's temperature so that the site's normal steps are as sharp, in
  mean entropy, as the training steps were: a recording whose correlation peaks are broader (the real clip's
  are) would otherwise reach the AR model flatter than anything it saw. Then the references and thresholds.

Only normal steps are used; which ones (a held-out, time-ordered part of a recording) is the caller's choice
and is written into ``meta.calibration``.
"""
from __future__ import annotations

import copy

import numpy as np

from fovea_core.events.anomaly.bundle import AR_ONLY, AnomalyModels
from fovea_core.events.anomaly.data import SequenceFeatures, frame_distributions
from fovea_core.events.anomaly.scoring import (calibrate_threshold, fit_reference, kl_sequence, rate_rule_scores,
                                               rule_step_scores, step_scores, windowed_mean)

FRAME_EXTRACTORS = ("classical", "learned")


def window_scores(models: AnomalyModels, feats: SequenceFeatures) -> tuple[dict, dict]:
    """({frame method: (K,) window scores}, {events-only method: (J,) window scores}) of one sequence, with
    the model's current calibration (a method whose reference is missing scores without it)."""
    meta, w = models.meta, models.meta.window_steps
    frame = {"rule": windowed_mean(rule_step_scores(feats.lags, meta.rule_history), w)}
    for extractor in FRAME_EXTRACTORS:
        dists, nominal = frame_distributions(models, feats, extractor)
        ar = models.ar[extractor]
        frame[extractor] = windowed_mean(step_scores(ar, dists, nominal, meta.reference(extractor)), w)
        ablation = next(name for name, ext in AR_ONLY.items() if ext == extractor)
        frame[ablation] = windowed_mean(kl_sequence(ar, dists), w)
    events = {"rate_rule": windowed_mean(rate_rule_scores(feats.activity_counts, meta.rule_history), w),
              "events": windowed_mean(kl_sequence(models.ar["events"], feats.activity), w)}
    return frame, events


def mean_entropy(dists: np.ndarray) -> float:
    p = np.clip(np.asarray(dists, np.float64), 1e-12, None)
    return float(-(p * np.log(p)).sum(axis=-1).mean())


def record_normal_entropy(models: AnomalyModels, training: list[SequenceFeatures]) -> None:
    """The sharpness site calibrations aim for: the mean entropy of the training steps (in place)."""
    models.meta.normal_entropy = {
        ext: mean_entropy(np.concatenate([frame_distributions(models, f, ext)[0] for f in training]))
        for ext in FRAME_EXTRACTORS}


def match_temperature(models: AnomalyModels, normal: list[SequenceFeatures], extractor: str) -> float:
    """The temperature at which the normal steps' mean entropy equals the training steps' (bisection on the
    log of the temperature; entropy rises with it)."""
    from scipy.optimize import brentq

    target = models.meta.normal_entropy[extractor]
    trial = copy.deepcopy(models.meta)

    def gap(log_t: float) -> float:
        trial.temperatures[extractor] = float(np.exp(log_t))
        probe = AnomalyModels(trial, models.sync_net, models.ar)
        return mean_entropy(np.concatenate([frame_distributions(probe, f, extractor)[0] for f in normal])) - target

    start = np.log(models.meta.temperatures[extractor])
    lo, hi = start - np.log(50.0), start + np.log(50.0)
    if gap(lo) > 0 or gap(hi) < 0:  # no temperature reaches it (e.g. no correlation at all): keep the trained one
        return float(models.meta.temperatures[extractor])
    return float(np.exp(brentq(gap, lo, hi, xtol=1e-4)))


def calibrate(models: AnomalyModels, normal: list[SequenceFeatures], rate: float, source: str,
              fit_temperatures: bool = False) -> None:
    """References and window-score thresholds of every method on normal sequences (in place); with
    ``fit_temperatures`` the temperatures first (a site calibration; needs ``meta.normal_entropy``)."""
    meta = models.meta
    if fit_temperatures:
        if not meta.normal_entropy:
            raise ValueError("the model records no training entropy (calibrate it with fovea train anomaly "
                             "--stage calibrate first)")
        meta.temperatures = {ext: match_temperature(models, normal, ext) for ext in FRAME_EXTRACTORS}
    meta.references = {ext: fit_reference(np.concatenate([frame_distributions(models, f, ext)[0] for f in normal]))
                       .tolist() for ext in FRAME_EXTRACTORS}
    scores: dict[str, list] = {}
    for f in normal:
        frame, events = window_scores(models, f)
        for name, values in {**frame, **events}.items():
            scores.setdefault(name, []).append(values)
    meta.thresholds = {name: calibrate_threshold(np.concatenate(v), rate) for name, v in scores.items()}
    meta.false_alarm_rate = rate
    meta.calibration = source


def site_calibrated(models: AnomalyModels, normal: list[SequenceFeatures], rate: float,
                    source: str) -> AnomalyModels:
    """A copy of ``models`` (the networks shared, the meta new) calibrated to a site's normal recording."""
    fitted = AnomalyModels(copy.deepcopy(models.meta), models.sync_net, models.ar)
    calibrate(fitted, normal, rate, source, fit_temperatures=True)
    return fitted

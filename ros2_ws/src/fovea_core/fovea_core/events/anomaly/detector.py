"""The streaming detector the node runs: events and frames in, one result per frame step out (and, while no
frames come, one per events-only step), with a state, a suspected fault and an offset estimate.

One result per frame: the first one of a stream is ``STARTING`` (no step yet). Step k (frames k-1, k) can be scored once events up to t_k + horizon have arrived (the shifted windows reach
that far), or - when the event stream has gone quiet - once a later frame shows that time has passed anyway
(a gap must be scored, not waited for). Scores are the ones of :mod:`~fovea_core.events.anomaly.scoring`
(the same definitions the evaluation measured).

While no frames come (none yet, or none for ``stream_timeout_ns``), the events are scored alone on a fixed
40 ms clock by the event-rate rule (|log events per step - its running median|, threshold calibrated like the
others): in the evaluation it beat the events-only AR model on every event-side fault of the real libcaer bag.

State: ``OK`` below the threshold, ``WARN`` at or above it, ``ERROR`` at ``error_ratio`` times it or when one
stream has been missing for ``stream_timeout_ns``; ``STARTING`` until the first score exists.

Suspected fault, from the step's own measurements (checked in this order, the first that holds):
``frame_stall`` (no frame for 3 frame intervals), ``event_gap`` (under 5 % of the usual events in the step),
``frozen`` (the frame did not change: mean |delta log I| under 1e-3), ``hot_pixels`` (half of the step's events
in 1 % of the patches), ``event_storm`` (over 5 x the usual events), ``offset`` (the window's mean distribution
peaks 2 or more bins away from 0), else ``unknown``. The offset estimate (ms, positive = frames late) is given
when the window's mean distribution has a clear peak (over 3 x uniform), else NaN.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from fovea_core.events.anomaly.bundle import AnomalyModels
from fovea_core.events.anomaly.features import (StepExtractor, classical_distribution, expected_offset_ms,
                                                ncc_per_offset)
from fovea_core.events.anomaly.scoring import StreamingKL, StreamingRule

STATES = ("STARTING", "OK", "WARN", "ERROR")


@dataclass
class StepResult:
    stamp_ns: int
    score: float  # window score (NaN while starting)
    threshold: float
    state: str
    suspected_fault: str  # "" when OK
    offset_ms: float  # NaN when the features do not tell
    method: str
    events_in_step: int


class StreamAnomalyDetector:
    def __init__(self, models: AnomalyModels, width: int, height: int, method: str = "learned",
                 error_ratio: float = 3.0, stream_timeout_ns: int = 1_000_000_000, threshold_scale: float = 1.0,
                 window_runners: dict | None = None) -> None:
        """``window_runners``: AR model name -> next-step runner on full windows (ONNX Runtime), see
        ``StreamingKL``."""
        if method not in ("rule", "classical", "learned"):
            raise ValueError(f"method must be rule, classical or learned, got '{method}'")
        self.models, self.meta, self.method = models, models.meta, method
        self.cfg = models.meta.feature_config()
        self.width, self.height = width, height
        self.error_ratio, self.stream_timeout_ns = error_ratio, stream_timeout_ns
        self.threshold_scale = threshold_scale  # a site's tuning of the calibrated thresholds
        self.window_runners = window_runners or {}
        self._setup()

    @property
    def threshold(self) -> float:
        return float(self.meta.thresholds[self.method]) * self.threshold_scale

    @property
    def events_threshold(self) -> float:
        return float(self.meta.thresholds["rate_rule"]) * self.threshold_scale

    def _setup(self) -> None:
        w = self.meta.window_steps
        method, models = self.method, self.models
        self.frame_scorer = (StreamingRule(w, self.meta.rule_history) if method == "rule"
                             else StreamingKL(models.ar[method], w, self.window_runners.get(method),
                                              self.meta.reference(method)))
        # events alone: the event-rate rule, which beat the events-only AR model on every event-side fault of
        # the real libcaer bag in the evaluation (models/anomaly/MODEL_CARD.md)
        self.events_scorer = StreamingRule(w, self.meta.rule_history)
        # events are binned once on arrival; a step reads its shifted windows from the running prefix sums
        self._extractor = StepExtractor(self.width, self.height, self.cfg)
        self._latest_event_ns: int | None = None
        self._first_event_ns: int | None = None
        self._frames: deque = deque()  # (stamp, frame) not yet scored as the end of a step, oldest first
        self._previous: tuple | None = None  # the frame that starts the next step (its log intensity kept)
        self._latest_frame_ns: int | None = None
        self._recent_dists: deque = deque(maxlen=w)
        self._recent_counts: deque = deque(maxlen=50)
        self._intervals: deque = deque(maxlen=20)
        self._frame_interval = 40_000_000  # median of the recent frame intervals (until there are some)
        self._next_events_step: int | None = None

    # ---- input --------------------------------------------------------------------------------------------
    def push_events(self, events: np.ndarray) -> list[StepResult]:
        """Time-sorted events on the frames' clock; returns the steps this completes."""
        if len(events):
            self._extractor.push_events(events)
            self._latest_event_ns = int(events["t"][-1])
            if self._first_event_ns is None:
                self._first_event_ns = int(events["t"][0])
        return self._drain()

    def push_frame(self, stamp_ns: int, image: np.ndarray) -> list[StepResult]:
        if self._latest_frame_ns is not None:
            self._intervals.append(stamp_ns - self._latest_frame_ns)
            self._frame_interval = int(np.median(self._intervals))
        self._latest_frame_ns = int(stamp_ns)
        self._frames.append((int(stamp_ns), self._extractor.frame(image)))
        return self._drain()

    def reset(self) -> None:
        """Forget both streams (a clock reset, e.g. a bag looped)."""
        self._setup()

    # ---- scoring ------------------------------------------------------------------------------------------
    def _drain(self) -> list[StepResult]:
        out = []
        horizon = self.cfg.horizon_ns
        while self._frames:
            stamp, image = self._frames[0]
            if self._previous is None:  # the first frame starts the stream: one result per frame, this one STARTING
                self._previous = self._frames.popleft()
                out.append(StepResult(stamp, float("nan"), self.threshold, "STARTING", "", float("nan"), self.method, 0))
                continue
            events_done = self._latest_event_ns is not None and self._latest_event_ns >= stamp + horizon
            time_passed = self._latest_frame_ns >= stamp + horizon + self._frame_interval
            if not (events_done or time_passed):
                break
            self._frames.popleft()
            out.append(self._score_step(self._previous, (stamp, image)))
            self._previous = (stamp, image)
        # no frames for stream_timeout while events run (from the start, or since the last frame): watch the
        # events alone on their own clock
        since = self._latest_frame_ns if self._latest_frame_ns is not None else self._first_event_ns
        if since is not None and self._latest_event_ns - since > self.stream_timeout_ns:
            out.extend(self._events_only_steps())
        if out:
            self._trim()  # only after scoring: the buffer is joined and cut once per step, not once per packet
        return out

    def _trim(self) -> None:
        keep_from = (self._previous[0] if self._previous else self._latest_event_ns or 0) - self.cfg.horizon_ns \
            - 2 * self._frame_interval
        if self._next_events_step is not None:
            keep_from = min(keep_from, self._next_events_step - self.meta.events_step_ns)
        self._extractor.events.trim(keep_from)

    def _score_step(self, previous, current) -> StepResult:
        (t0, frame0), (t1, frame1) = previous, current
        inputs = self._extractor.step(t0, frame0, t1, frame1)
        if self.method == "rule":
            ncc = ncc_per_offset(inputs)
            lag = int(np.argmax(ncc)) - self.cfg.max_offset_bins
            dist = classical_distribution(inputs, self.cfg)
            _, score = self.frame_scorer.update(lag)
        elif self.method == "classical":
            dist = classical_distribution(inputs, self.cfg)
            nominal = dist if inputs.nominal_counts is None else classical_distribution(inputs, self.cfg, True)
            _, score = self.frame_scorer.update(dist, nominal)
        else:
            counts = inputs.counts[None] if inputs.nominal_counts is None else np.stack([inputs.counts,
                                                                                         inputs.nominal_counts])
            change = np.broadcast_to(inputs.change, (len(counts),) + inputs.change.shape)
            with torch.no_grad():
                scores = self.models.sync_net(torch.from_numpy(counts), torch.from_numpy(np.ascontiguousarray(change)))
            both = torch.softmax(scores / float(self.meta.temperatures.get("learned", 1.0)), dim=1).numpy()
            dist, nominal = both[0], both[-1]
            _, score = self.frame_scorer.update(dist, nominal)
        self._recent_dists.append(dist)
        usual = float(np.median(self._recent_counts)) if self._recent_counts else None
        self._recent_counts.append(inputs.events_in_step)
        return self._result(t1, score, self.threshold, inputs, usual)

    def _events_only_steps(self) -> list[StepResult]:
        out = []
        step = self.meta.events_step_ns
        if self._latest_event_ns is None:
            return out
        if self._next_events_step is None:  # the events-only clock starts where the watch starts
            start = self._latest_frame_ns if self._latest_frame_ns is not None else self._first_event_ns
            self._next_events_step = start - start % step + step
        while self._latest_event_ns >= self._next_events_step:
            end = self._next_events_step
            n = self._extractor.events.total(end - step, end)
            _, score = self.events_scorer.update(float(np.log1p(n)))
            usual = float(np.median(self._recent_counts)) if self._recent_counts else None
            self._recent_counts.append(n)
            result = self._result(end, score, self.events_threshold, None, usual, events_in_step=n)
            result.method = "events"
            if self._latest_frame_ns is not None:  # frames came, then stopped while events run: that is the fault
                result.state, result.suspected_fault = "ERROR", "frame_stall"
            out.append(result)
            self._next_events_step += step
        return out

    # ---- state and diagnosis ------------------------------------------------------------------------------
    def _result(self, stamp: int, score: float, threshold: float, inputs, usual: float | None,
                events_in_step: int | None = None) -> StepResult:
        n = inputs.events_in_step if inputs is not None else events_in_step
        if not np.isfinite(score):
            state = "STARTING"
        elif score >= self.error_ratio * threshold:
            state = "ERROR"
        elif score >= threshold:
            state = "WARN"
        else:
            state = "OK"
        offset = float("nan")
        if self._recent_dists and inputs is not None:
            mean = np.mean(self._recent_dists, axis=0)
            if mean.max() > 3.0 / len(mean):
                offset = expected_offset_ms(mean, self.cfg)
        fault = ""
        if state in ("WARN", "ERROR"):
            fault = self._diagnose(inputs, n, usual, offset)
        return StepResult(int(stamp), float(score), threshold, state, fault, offset, self.method, int(n))

    def _diagnose(self, inputs, n: int, usual: float | None, offset_ms: float) -> str:
        if self._intervals and inputs is not None and inputs.interval_ns > 3 * self._frame_interval:
            return "frame_stall"
        if usual and n < 0.05 * usual:
            return "event_gap"
        if inputs is not None and float(inputs.change.sum(axis=0).mean()) < 1e-3:
            return "frozen"
        if inputs is not None and n > 0:
            per_patch = np.sort(inputs.counts[self.cfg.max_offset_bins].sum(axis=0))[::-1]
            top = max(1, len(per_patch) // 100)
            if per_patch[:top].sum() > 0.5 * n:
                return "hot_pixels"
        if usual and n > 5 * usual:
            return "event_storm"
        if np.isfinite(offset_ms) and abs(offset_ms) >= 2 * self.cfg.offset_step_ns / 1e6:
            return "offset"
        return "unknown"

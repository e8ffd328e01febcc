"""``fovea eval anomaly``: every fault at every severity injected into normal streams, scored in one run by
the rule baseline, classical features + AR, learned features + AR (each with the reference term, and without
it: AVAD's score alone, the ablation), and on the event stream alone the event-rate rule and the events-only
AR model.

Reported per fault and severity: window-level AUC-ROC and average precision (positives: the steps of a faulty
sequence that overlap the fault; negatives: the steps of the clean sequences), and at the calibrated
threshold the event-level detection rate (an alarm between onset and end + one window) with the delay from the
onset to the first alarm, plus false alarms per minute on the clean sequences (alarm onsets). No point-adjusted
F1. Data sets, in the same run:

* ``sim``: held-out simulated sequences (test seeds, never seen in training or calibration), with the model
  as shipped (calibrated on the simulated calibration seeds);
* ``davis``: the real DAVIS346 clip (``events/davis346_emlb``, MIT; 12 frame steps) and its three mirror
  images as normal data, the faults injected into them; scored twice: with the shipped calibration, and
  site-calibrated as ``fovea fit anomaly`` calibrates a user's recording - temperatures, references and
  thresholds fitted on the first 40 % of each clean sequence (the 4 steps before any fault starts), the
  negatives and false alarms counted on the remaining 60 % only;
* ``libcaer``: the real libcaer bag (``event_camera_codecs_bags/libcaer_rollover``, Apache-2.0; events only,
  2 s) and its mirror images, with the event-side faults.

Writes ``<out>/results.json``, ``<out>/table.md`` and plots (score over time with the fault interval, AUC per
fault) and prints the headline last.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fovea_core.events.anomaly import faults as F
from fovea_core.events.anomaly.bundle import AnomalyModels, load_models
from fovea_core.threads import set_process_threads
from fovea_core.events.anomaly.calibration import site_calibrated, window_scores
from fovea_core.events.anomaly.data import DEFAULT_CACHE, TEST_SEEDS, SequenceFeatures, sequence_features, \
    simulated_streams
from fovea_core.events.anomaly.streams import EventFrameStreams, FrameStream
from fovea_core.paths import shared_data_dir

FRAME_METHODS = ("rule", "classical", "learned", "classical_ar", "learned_ar")
EVENT_METHODS = ("rate_rule", "events")
METHOD_LABELS = {"rule": "rule baseline (argmax lag vs running median)",
                 "classical": "classical features + AR + reference", "learned": "learned features + AR + reference",
                 "classical_ar": "classical features + AR only (AVAD score)",
                 "learned_ar": "learned features + AR only (AVAD score)",
                 "rate_rule": "event-rate rule", "events": "events-only AR"}
GOAL_FAULTS = ("frozen", "frame_stall", "event_gap")  # and offsets of 20 ms or more
SITE_SPLIT = 0.4  # the DAVIS clip's faults start here: the part before calibrates the site


@dataclass
class ScoredSequence:
    frame_stamps: np.ndarray  # (K,) end of each frame step
    frame_prev: np.ndarray  # (K,) start of each frame step
    frame_scores: dict  # method -> (K,) window scores
    event_stamps: np.ndarray  # (J,) end of each events-only step
    event_step_ns: int
    event_scores: dict  # method -> (J,)


def features_of(models: AnomalyModels, streams: EventFrameStreams) -> SequenceFeatures:
    meta = models.meta
    return sequence_features(streams, meta.feature_config(), meta.sync_net["pool"], meta.activity_config(),
                             meta.events_step_ns)


def score_features(models: AnomalyModels, feats: SequenceFeatures) -> ScoredSequence:
    frame, events = window_scores(models, feats)
    return ScoredSequence(feats.stamps, feats.stamps - feats.intervals, frame, feats.activity_stamps,
                          models.meta.events_step_ns, events)


def score_streams(models: AnomalyModels, streams: EventFrameStreams) -> ScoredSequence:
    return score_features(models, features_of(models, streams))


def is_goal(kind: str, severity: str) -> bool:
    return kind in GOAL_FAULTS or (kind == "offset" and float(severity.split()[0]) >= 20)


def step_labels(starts: np.ndarray, ends: np.ndarray, fault: F.FaultInterval) -> np.ndarray:
    return (ends > fault.start_ns) & (starts < fault.end_ns)


def _auc_ap(neg: np.ndarray, pos: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    neg, pos = neg[np.isfinite(neg)], pos[np.isfinite(pos)]
    if len(neg) == 0 or len(pos) == 0:
        return float("nan"), float("nan")
    y = np.concatenate([np.zeros(len(neg)), np.ones(len(pos))])
    s = np.concatenate([neg, pos])
    return float(roc_auc_score(y, s)), float(average_precision_score(y, s))


def alarm_onsets(scores: np.ndarray, threshold: float) -> np.ndarray:
    above = np.nan_to_num(scores, nan=-np.inf) > threshold
    return np.flatnonzero(above & ~np.concatenate(([False], above[:-1])))


def detection(stamps: np.ndarray, scores: np.ndarray, threshold: float, fault: F.FaultInterval,
              grace_ns: int) -> float | None:
    """Delay (ms) from the onset to the first alarm in [onset, end + grace), None when there is none."""
    inside = (stamps >= fault.start_ns) & (stamps < fault.end_ns + grace_ns)
    hits = np.flatnonzero(inside & (np.nan_to_num(scores, nan=-np.inf) > threshold))
    return None if len(hits) == 0 else float((stamps[hits[0]] - fault.start_ns) / 1e6)


def fault_cases(kinds, streams: EventFrameStreams, start: int, end: int, other: EventFrameStreams | None):
    for kind in kinds:
        for kwargs in F.FRAME_EVENT_FAULTS[kind]:
            if kind == "splice" and other is None:
                continue
            yield kind, kwargs, F.inject(kind, streams, start, end, other=other, **kwargs)


def site_split(models: AnomalyModels, normals: list[EventFrameStreams], feats: list[SequenceFeatures],
               fraction: float) -> tuple[AnomalyModels, list[tuple[np.ndarray, np.ndarray]]]:
    """The models site-calibrated on the first ``fraction`` of each clean sequence, and per sequence the masks
    (frame steps, events-only steps) of the held-out rest."""
    parts, masks = [], []
    for s, f in zip(normals, feats):
        cut = s.start_ns + int(fraction * (s.end_ns - s.start_ns))
        k, j = int(np.searchsorted(f.stamps, cut, "right")), int(np.searchsorted(f.activity_stamps, cut, "right"))
        parts.append(f.select(slice(None, k), slice(None, j)))
        masks.append((np.arange(len(f.stamps)) >= k, np.arange(len(f.activity_stamps)) >= j))
    steps = sum(len(p.stamps) for p in parts)
    fitted = site_calibrated(models, parts, models.meta.false_alarm_rate,
                             f"the first {fraction:.0%} of each clean sequence ({steps} frame steps in all; "
                             "held out of the negatives)")
    return fitted, masks


def evaluate_set(models: AnomalyModels, normals: list[EventFrameStreams], fault_span: tuple[float, float],
                 kinds, label: str, frames: bool = True, log=print, calibration_fraction: float | None = None) -> dict:
    """Score every clean sequence and every (fault, severity) injected into each of them. With
    ``calibration_fraction`` the models are first site-calibrated on that first part of the clean sequences,
    which then counts neither as negatives nor for false alarms."""
    methods = (FRAME_METHODS if frames else ()) + EVENT_METHODS
    clean_feats = [features_of(models, s) for s in normals]
    masks = [(np.ones(len(f.stamps), bool), np.ones(len(f.activity_stamps), bool)) for f in clean_feats]
    if calibration_fraction is not None:
        models, masks = site_split(models, normals, clean_feats, calibration_fraction)
    thresholds = models.meta.thresholds
    clean = [score_features(models, f) for f in clean_feats]
    negatives = {m: np.concatenate([c.frame_scores[m][fm] for c, (fm, _) in zip(clean, masks)])
                 for m in FRAME_METHODS if frames}
    negatives.update({m: np.concatenate([c.event_scores[m][em] for c, (_, em) in zip(clean, masks)])
                      for m in EVENT_METHODS})
    minutes_frames = sum(float(np.sum((c.frame_stamps - c.frame_prev)[fm])) / 6e10 for c, (fm, _) in zip(clean, masks))
    minutes_events = sum(int(em.sum()) * c.event_step_ns / 6e10 for c, (_, em) in zip(clean, masks))
    false_alarms, false_alarm_counts = {}, {}
    for m in methods:
        onsets = 0
        for c, (fm, em) in zip(clean, masks):
            series, keep = (c.frame_scores[m], fm) if m in FRAME_METHODS else (c.event_scores[m], em)
            onsets += int(np.isin(alarm_onsets(series, thresholds[m]), np.flatnonzero(keep)).sum())
        false_alarm_counts[m] = onsets
        false_alarms[m] = onsets / max(minutes_frames if m in FRAME_METHODS else minutes_events, 1e-9)
    rows, examples = [], {}
    window_ns = models.meta.window_steps
    start_time = time.monotonic()
    for i, normal in enumerate(normals):
        start = normal.start_ns + int(fault_span[0] * (normal.end_ns - normal.start_ns))
        end = normal.start_ns + int(fault_span[1] * (normal.end_ns - normal.start_ns))
        other = normals[(i + 1) % len(normals)] if len(normals) > 1 and normals[(i + 1) % len(normals)].frames.images.shape[1:] == normal.frames.images.shape[1:] else None
        for kind, kwargs, (faulty, fault) in fault_cases(kinds, normal, start, end, other):
            scored = score_streams(models, faulty)
            grace_frames = window_ns * int(np.median(np.diff(normal.frames.stamps))) if len(normal.frames) > 1 else 0
            for m in methods:
                if m in FRAME_METHODS:
                    labels = step_labels(scored.frame_prev, scored.frame_stamps, fault)
                    scores, stamps, grace = scored.frame_scores[m], scored.frame_stamps, grace_frames
                else:
                    labels = step_labels(scored.event_stamps - scored.event_step_ns, scored.event_stamps, fault)
                    scores, stamps = scored.event_scores[m], scored.event_stamps
                    grace = window_ns * scored.event_step_ns
                rows.append({"fault": kind, "severity": fault.severity, "sequence": i, "method": m,
                             "positives": scores[labels].tolist(),
                             "delay_ms": detection(stamps, scores, thresholds[m], fault, grace)})
            if i == 0 and (kind, fault.severity) not in examples:
                examples[(kind, fault.severity)] = (scored, fault)
        log(f"[eval anomaly] {label}: sequence {i + 1}/{len(normals)} ({time.monotonic() - start_time:.0f} s)")
    table = []
    keys = sorted({(r["fault"], r["severity"]) for r in rows}, key=lambda k: (list(F.INJECTORS).index(k[0]), k[1]))
    for kind, severity in keys:
        for m in methods:
            sel = [r for r in rows if r["fault"] == kind and r["severity"] == severity and r["method"] == m]
            if not sel:
                continue
            pos = np.array([v for r in sel for v in r["positives"]], np.float64)
            auc, ap = _auc_ap(negatives[m].astype(np.float64), pos)
            delays = [r["delay_ms"] for r in sel if r["delay_ms"] is not None]
            table.append({"fault": kind, "severity": severity, "method": m, "auc": auc, "ap": ap,
                          "positives": int(np.isfinite(pos).sum()), "negatives": int(np.isfinite(negatives[m]).sum()),
                          "detected": len(delays), "cases": len(sel),
                          "delay_ms_median": float(np.median(delays)) if delays else None})
    meta = models.meta
    return {"label": label, "table": table, "false_alarms_per_minute": false_alarms,
            "false_alarm_counts": false_alarm_counts,
            "normal_minutes": {"frames": minutes_frames, "events": minutes_events},
            "calibration": {"source": meta.calibration, "thresholds": meta.thresholds,
                            "temperatures": meta.temperatures},
            "examples": examples, "clean_example": clean[0] if clean else None}


def davis_normals() -> list[EventFrameStreams]:
    from fovea_core.events.aedat4 import read_aedat4

    rec = read_aedat4(shared_data_dir() / "events" / "davis346_emlb" / "emlb_demo-01.aedat4")
    base = EventFrameStreams(rec.events, FrameStream(rec.frame_stamps, np.stack([f.image for f in rec.frames])),
                             rec.width, rec.height)
    return [base, base.flipped(True), base.flipped(False), base.flipped(True).flipped(False)]


def libcaer_normals() -> list[EventFrameStreams]:
    from fovea_core.events.bagio import read_events

    events, _, _ = read_events(shared_data_dir() / "events" / "event_camera_codecs_bags" / "libcaer_rollover")
    base = EventFrameStreams(events, FrameStream.empty(480, 640), 640, 480)
    return [base, base.flipped(True), base.flipped(False), base.flipped(True).flipped(False)]


def format_table(result: dict) -> str:
    lines = [f"### {result['label']}", "",
             "| fault | severity | method | AUC-ROC | AP | detected | median delay (ms) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["table"]:
        delay = f"{r['delay_ms_median']:.0f}" if r["delay_ms_median"] is not None else "-"
        lines.append(f"| {r['fault']} | {r['severity']} | {METHOD_LABELS[r['method']]} | {r['auc']:.3f} | "
                     f"{r['ap']:.3f} | {r['detected']}/{r['cases']} | {delay} |")
    fa = ", ".join(f"{METHOD_LABELS[m]} {v:.2f} ({result['false_alarm_counts'][m]})"
                   for m, v in result["false_alarms_per_minute"].items())
    minutes = result["normal_minutes"]
    cal = result["calibration"]
    temps = ", ".join(f"{k} {v:.4g}" for k, v in cal["temperatures"].items())
    lines += ["", f"False alarms per minute (alarm onsets in brackets) on the clean sequences "
              f"({minutes['frames']:.3f} min of frame steps, {minutes['events']:.3f} min of event steps): {fa}",
              "", f"Calibration: {cal['source']}; temperatures {temps}.", ""]
    return "\n".join(lines)


def goal_summary(result: dict, methods=FRAME_METHODS) -> dict:
    """Per method, the lowest AUC over the goal faults (offsets >= 20 ms, frozen, stall, event gap)."""
    out = {}
    for m in methods:
        rows = [r for r in result["table"] if r["method"] == m and is_goal(r["fault"], r["severity"])]
        if rows:
            worst = min(rows, key=lambda r: r["auc"])
            out[m] = {"min_auc": worst["auc"], "worst": f"{worst['fault']} {worst['severity']}"}
    return out


def plot_example(result: dict, key: tuple[str, str], thresholds: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    scored, fault = result["examples"][key]
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    t0 = scored.frame_prev[0] if len(scored.frame_prev) else scored.event_stamps[0] - scored.event_step_ns
    for ax, methods, stamps, series in ((axes[0], FRAME_METHODS, scored.frame_stamps, scored.frame_scores),
                                        (axes[1], EVENT_METHODS, scored.event_stamps, scored.event_scores)):
        for m in methods:
            if m not in series or not len(stamps):
                continue
            ratio = series[m] / thresholds[m]
            ax.plot((stamps - t0) / 1e9, ratio, label=METHOD_LABELS[m])
        ax.axhline(1.0, color="k", ls="--", lw=1, label="calibrated threshold")
        ax.axvspan((fault.start_ns - t0) / 1e9, (min(fault.end_ns, stamps[-1] if len(stamps) else fault.end_ns) - t0)
                   / 1e9, color="red", alpha=0.15, label=f"fault: {fault.kind} {fault.severity}")
        ax.set_ylabel("window score / threshold")
        # linear below the threshold, logarithmic above: a score 30x over it stays on the page
        ax.set_yscale("symlog", linthresh=1.0)
        ax.yaxis.set_major_locator(FixedLocator([0, 0.25, 0.5, 0.75, 1, 2, 5, 10, 20, 50, 100, 200, 500]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_ylim(bottom=0.0)  # scores are divergences and lag deviations: never negative
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_title("\n".join(textwrap.wrap(f"{result['label']}: {fault.kind} ({fault.severity}) - frame steps "
                                              "(top), event steps (bottom)", 110)), fontsize=10)
    axes[1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_auc(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["table"]
    cases = sorted({(r["fault"], r["severity"]) for r in rows}, key=lambda k: (list(F.INJECTORS).index(k[0]), k[1]))
    methods = [m for m in FRAME_METHODS + EVENT_METHODS if any(r["method"] == m for r in rows)]
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(cases)), 4.5))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        vals = [next((r["auc"] for r in rows if (r["fault"], r["severity"]) == c and r["method"] == m), np.nan)
                for c in cases]
        ax.bar(np.arange(len(cases)) + j * width, vals, width, label=METHOD_LABELS[m])
    ax.set_xticks(np.arange(len(cases)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{k}\n{s}" for k, s in cases], rotation=60, fontsize=7, ha="right")
    ax.set_ylabel("window AUC-ROC")
    ax.set_ylim(0.0, 1.02)
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(result["label"])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _json_ready(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("examples", "clean_example")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fovea eval anomaly", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/anomaly/anomaly.pt"))
    parser.add_argument("--out", type=Path, default=Path("out/anomaly/eval"))
    parser.add_argument("--sets", nargs="+", choices=("sim", "davis", "libcaer"), default=["sim", "davis", "libcaer"])
    parser.add_argument("--sim-sequences", type=int, default=5)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from fovea_core.paths import resolve_data_path
    set_process_threads(args.threads)
    models = load_models(resolve_data_path(args.model), "--model")
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    results = {}
    all_kinds = list(F.FRAME_EVENT_FAULTS)
    if "sim" in args.sets:
        normals = [simulated_streams(s, args.duration, args.cache_dir) for s in TEST_SEEDS[:args.sim_sequences]]
        results["sim"] = evaluate_set(models, normals, (0.4, 0.65), all_kinds,
                                      f"simulated held-out ({len(normals)} x {args.duration:g} s, seeds "
                                      f"{TEST_SEEDS.start}-{TEST_SEEDS.start + len(normals) - 1})", log=log)
    if "davis" in args.sets:
        # the clip has 12 frame steps: the fault covers steps 5-9, so a stalled frame stream resumes before the end
        davis = davis_normals()
        results["davis"] = evaluate_set(models, davis, (SITE_SPLIT, 0.8), all_kinds,
                                        "real DAVIS346 clip (E-MLB demo-01, MIT) + 3 mirror images, shipped "
                                        "calibration (simulation)", log=log)
        results["davis_site"] = evaluate_set(models, davis, (SITE_SPLIT, 0.8), all_kinds,
                                             "real DAVIS346 clip (E-MLB demo-01, MIT) + 3 mirror images, "
                                             f"site-calibrated on its first {SITE_SPLIT:.0%}", log=log,
                                             calibration_fraction=SITE_SPLIT)
    if "libcaer" in args.sets:
        results["libcaer"] = evaluate_set(models, libcaer_normals(), (0.45, 0.75), F.EVENT_ONLY_FAULTS,
                                          "real libcaer bag (event_camera_codecs, Apache-2.0), events only, "
                                          "+ 3 mirror images", frames=False, log=log)
    text = ["# Event/frame anomaly detection: evaluation", "",
            f"Model: `{args.model}`; shipped thresholds calibrated on {models.meta.calibration} at a false-alarm "
            f"rate of {models.meta.false_alarm_rate:g} per step; window {models.meta.window_steps} steps.", ""]
    for name, result in results.items():
        text.append(format_table(result))
        plot_auc(result, args.out / f"auc_{name}.png")
        for key in result["examples"]:
            if key[0] in ("offset", "frozen", "hot_pixels", "event_gap"):
                plot_example(result, key, result["calibration"]["thresholds"],
                             args.out / f"scores_{name}_{key[0]}_{key[1].replace(' ', '')}.png")
    (args.out / "table.md").write_text("\n".join(text))
    summaries = {name: goal_summary(result) for name, result in results.items()}
    (args.out / "results.json").write_text(json.dumps({"sets": {k: _json_ready(v) for k, v in results.items()},
                                                       "goal_min_auc": summaries}, indent=1))
    print("\n".join(text))
    for name, summary in summaries.items():
        if summary:
            print(f"goal {name}: min AUC over offsets >= 20 ms, frozen, stall, event gap: " + ", ".join(
                f"{m} {v['min_auc']:.3f} ({v['worst']})" for m, v in summary.items()))
    lines = [f"{name} {summaries[name]['classical']['min_auc']:.3f}" for name in ("sim", "davis_site", "davis")
             if summaries.get(name, {}).get("classical")]
    if lines:
        print("headline: classical features + AR + reference (the node's default), min AUC over the goal faults: "
              + ", ".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

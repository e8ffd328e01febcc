"""``fovea fit anomaly BAG --events TOPIC --frames TOPIC``: fit the detector to a user's own normal recording.

Starts from the shipped model (``--base``) and fine-tunes the sync network and the AR models on the first
``--train-fraction`` of the recording's frame steps, with the recipe of ``fovea train anomaly`` on the shared
training runner (progress, checkpoints, TensorBoard); then calibrates the thresholds on the rest (held out)
and writes the model file and a model card beside it (data, steps, thresholds, false-alarm rate, time).

    fovea fit anomaly my_normal_drive/ --events /dvs/events --frames /dvs/image_raw --out models/anomaly/site.pt
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from fovea_core.events.anomaly.bundle import export_onnx_models, load_models, save_models
from fovea_core.events.anomaly.data import SequenceFeatures, sequence_features
from fovea_core.events.anomaly.streams import read_bag_streams
from fovea_core.events.anomaly.calibration import FRAME_EXTRACTORS, calibrate, match_temperature
from fovea_core.events.anomaly.train import ar_task, distribution_sets, sync_task
from fovea_core.training import train_main


def split_features(feats: SequenceFeatures, fraction: float) -> tuple[SequenceFeatures, SequenceFeatures]:
    """Frame steps and events-only steps cut at the same time: the first ``fraction`` trains, the rest holds out."""
    k = max(2, int(len(feats.stamps) * fraction))
    cut_ns = feats.stamps[min(k, len(feats.stamps) - 1)]
    j = int(np.searchsorted(feats.activity_stamps, cut_ns))
    return feats.select(slice(None, k), slice(None, j)), feats.select(slice(k, None), slice(j, None))


MODEL_CARD = """# Event/frame anomaly model fitted with `fovea fit anomaly`

- Recording: `{bag}` (events `{events}`, frames `{frames}`), {width}x{height}, {steps} frame steps over {seconds:.1f} s,
  {events_n} events; event stream: {stream_stats}.
- Base model: `{base}`.
- Fine-tuned on the first {train_steps} frame steps ({train_fraction:.0%}), with softmax temperatures matched on
  them to the sharpness of the base model's training data ({temperatures}); references and thresholds
  calibrated on the last {held_steps} (held out) at a false-alarm rate of {rate:g} per step.
- Thresholds (window of {window} steps): {thresholds}.
- Training: stage sync {sync_steps} steps, stage ar {ar_steps} steps; {minutes:.1f} min wall clock in total.
- Command: `fovea fit anomaly {argv}`
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", choices=("anomaly",))
    parser.add_argument("bag")
    parser.add_argument("--events", required=True, help="event packet topic")
    parser.add_argument("--frames", required=True, help="image topic")
    parser.add_argument("--base", type=Path, default=Path("models/anomaly/anomaly.pt"))
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--false-alarm-rate", type=float, default=0.002)


def main(argv: list[str] | None = None) -> int:
    from fovea_core.paths import resolve_data_path

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    add_arguments(pre)
    pre.add_argument("--out", type=Path, default=Path("models/anomaly/fitted.pt"))
    known, _ = pre.parse_known_args(argv)
    started = time.monotonic()
    models = load_models(resolve_data_path(known.base), "--base")
    meta = models.meta
    try:
        streams, stats = read_bag_streams(known.bag, known.events, known.frames)
    except (OSError, ValueError) as exc:
        print(f"fovea fit anomaly: {exc}", file=sys.stderr)
        return 2
    if len(streams.frames) < 8:
        print(f"fovea fit anomaly: {known.bag} has {len(streams.frames)} frames on {known.frames}; need 8 or more",
              file=sys.stderr)
        return 2
    print(f"[fit anomaly] {known.bag}: {len(streams.events)} events, {len(streams.frames)} frames; computing "
          "features", file=sys.stderr, flush=True)
    feats = sequence_features(streams, meta.feature_config(), meta.sync_net["pool"], meta.activity_config(),
                              meta.events_step_ns)
    train, held = split_features(feats, known.train_fraction)
    counts = {}

    def build_sync(args, ctx):
        def save(model, out, summary):
            out.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), out)
            counts["sync"] = summary.get("steps")
        return sync_task(meta, [train], [held], args.batch, args.lr, save)

    run_dir = known.out.parent / f"{known.out.stem}_runs"
    rest = [a for a in argv if a not in ("anomaly",)]
    rest = [a for a in rest if a != known.bag]
    sync_argv = rest + ["--run-dir", str(run_dir / "sync"), "--out", str(run_dir / "sync_net.pt")]
    # fine-tuned from the base model's sync network
    rc = train_main(sync_argv, lambda args, ctx: _with_state(build_sync(args, ctx), models.sync_net),
                    name="anomaly-fit", description="fit stage sync", out=str(run_dir / "sync_net.pt"),
                    add_arguments=_fit_flags, minutes=2)
    if rc != 0:
        return rc
    models.sync_net.load_state_dict(torch.load(run_dir / "sync_net.pt", weights_only=True))

    # the recording's own sharpness: temperatures matched on the training part, before the AR models see it
    if meta.normal_entropy:
        meta.temperatures = {ext: match_temperature(models, [train], ext) for ext in FRAME_EXTRACTORS}

    def build_ar(args, ctx):
        train_sets = distribution_sets(models, [train])
        held_sets = distribution_sets(models, [held])

        def save(module, out, summary):
            calibrate(models, [held], args.false_alarm_rate,
                      f"the last {len(held.stamps)} frame steps of {Path(known.bag).name} (held out)")
            models.meta.training = {"data": f"fitted on {Path(known.bag).name}", "summary": summary,
                                    "base": str(known.base)}
            save_models(models, out)
            export_onnx_models(models, out.parent / f"{out.stem}_onnx")
            counts["ar"] = summary.get("steps")
        task = ar_task(models, train_sets, held_sets, args.batch, args.lr, save, {"stage": "fit-ar",
                                                                                   "meta": asdict(meta)})
        return task

    ar_argv = rest + ["--run-dir", str(run_dir / "ar"), "--out", str(known.out)]
    rc = train_main(ar_argv, build_ar, name="anomaly-fit", description="fit stage ar", out=str(known.out),
                    add_arguments=_fit_flags, minutes=3)
    if rc != 0:
        return rc
    seconds = (streams.end_ns - streams.start_ns) / 1e9
    card = MODEL_CARD.format(
        bag=known.bag, events=known.events, frames=known.frames, width=streams.width, height=streams.height,
        steps=len(feats.stamps), seconds=seconds, events_n=len(streams.events),
        stream_stats=f"{stats.packets} packets, {stats.lost_packets} lost, {sum(stats.rejected.values())} rejected",
        base=known.base, train_steps=len(train.stamps), train_fraction=known.train_fraction,
        held_steps=len(held.stamps), rate=models.meta.false_alarm_rate, window=meta.window_steps,
        thresholds=", ".join(f"{k} {v:.4g}" for k, v in models.meta.thresholds.items()),
        temperatures=", ".join(f"{k} {v:.4g}" for k, v in models.meta.temperatures.items()),
        sync_steps=counts.get("sync"), ar_steps=counts.get("ar"), minutes=(time.monotonic() - started) / 60,
        argv=" ".join(argv))
    card_path = known.out.with_name(f"{known.out.stem}_MODEL_CARD.md")
    card_path.write_text(card)
    print(f"[fit anomaly] wrote {known.out} and {card_path}", file=sys.stderr)
    return 0


def _fit_flags(parser: argparse.ArgumentParser) -> None:
    """The fit's own flags, as ``train_main`` sees them (the positional method and bag removed before)."""
    parser.add_argument("--events", required=True)
    parser.add_argument("--frames", required=True)
    parser.add_argument("--base", type=Path, default=Path("models/anomaly/anomaly.pt"))
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--false-alarm-rate", type=float, default=0.002)


def _with_state(task, source: torch.nn.Module):
    task.model.load_state_dict(source.state_dict())
    return task


if __name__ == "__main__":
    raise SystemExit(main())

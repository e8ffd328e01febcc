"""The ``fovea`` command line: one entry point, one sub-command per tool.

Each sub-command lives in its own module and is imported only when used, so ``fovea info`` does not pay for
importing torch and ``fovea train`` does not need a ROS middleware.
"""
from __future__ import annotations

import importlib
import sys

# sub-command -> (module with a ``main(argv) -> int``, one-line help)
TOOLS: dict[str, tuple[str, str]] = {
    "replay": ("fovea_ros.bag.replay", "publish a rosbag2 (sqlite3 or MCAP) with its recorded timing"),
    "record": ("fovea_ros.bag.record", "record topics to an MCAP bag, counting drops"),
    "info": ("fovea_ros.bag.info", "summarise a bag: topics, types, counts, time range"),
    "import": ("fovea_core.events.aedat4", "convert a recording to a rosbag2: fovea import aedat4 FILE OUT_BAG"),
    "fit": ("fovea_core.events.anomaly.fit", "fit a model to your own normal recording: fovea fit anomaly BAG ..."),
    "run": ("fovea_ros.graph", "start the nodes a graph YAML names (one process or one per node)"),
    "export": ("fovea_core.backends.export", "export a model to ONNX and check ONNX Runtime against PyTorch"),
    "build-engine": ("fovea_core.backends.prebuild", "prebuild TensorRT engines into the engine cache (build_only)"),
    "demo": ("fovea_ros.demo", "the main job: replay the bundled bag through the suite and write a report"),
    "viz": ("fovea_ros.viz.bridge", "bridge the suite's topics to Foxglove (WebSocket server, foxglove-sdk)"),
}

# method name -> core package that provides ``train.main`` and ``evaluate.main``
METHODS: dict[str, str] = {
    "registration": "fovea_core.registration",
    "tpv": "fovea_core.tpv",
    "hmnet": "fovea_core.events.hmnet",
    "occflow": "fovea_core.occflow",
    "anomaly": "fovea_core.events.anomaly",
}


def _usage() -> str:
    lines = ["usage: fovea <command> [args...]", "", "commands:"]
    lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in TOOLS.items()]
    lines += [f"  {'train':<10} train a method's model: fovea train {{{','.join(METHODS)}}} [args]",
              f"  {'eval':<10} evaluate a method:       fovea eval {{{','.join(METHODS)}}} [args]"]
    return "\n".join(lines)


def _resolve(argv: list[str]) -> tuple[str, list[str]]:
    """Return the module that implements the command and the arguments left for it."""
    command, rest = argv[0], argv[1:]
    if command in TOOLS:
        return TOOLS[command][0], rest
    if command in ("train", "eval"):
        if not rest or rest[0] not in METHODS:
            raise SystemExit(f"fovea {command}: name a method: {', '.join(METHODS)}")
        stage = "train" if command == "train" else "evaluate"
        return f"{METHODS[rest[0]]}.{stage}", rest[1:]
    raise SystemExit(f"fovea: unknown command {command!r}\n\n{_usage()}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    module_name, rest = _resolve(argv)
    try:
        module = importlib.import_module(module_name)
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:  # Ctrl-C before a tool's own handling starts (importing, setting up): no traceback
        print(f"fovea {argv[0]}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

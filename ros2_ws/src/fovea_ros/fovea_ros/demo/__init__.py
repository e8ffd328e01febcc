"""``fovea demo``: the main job. Replay each bundled bag through its node graph, record, write one report.

The stages (bag, graph YAML, input and output topics, accounting rule) are listed in ``config/demo.yaml`` and
run one after another (:mod:`fovea_ros.demo.stages`). Writes into ``--out`` (default ``out/demo``):
``<stage>/recording/`` (MCAP of the stage's outputs and /diagnostics), ``<stage>/graph.log``,
``report.md``, ``report.json`` and ``report.html`` (one self-contained page with each stage's pictures,
:mod:`fovea_ros.demo.report_html`). The suites (``suites:``, :mod:`fovea_ros.demo.suite`) run after the
stages: every node at once, each member stage's books checked. Exits 1 (after writing the report) when a stage's books do not balance.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fovea_core.paths import repo_root
from fovea_ros.demo.report import render_markdown, write_report
from fovea_ros.demo.report_html import write_html_report
from fovea_ros.demo.stages import StageRun, load_stages
from fovea_ros.demo.suite import SuiteRun, load_suites
from fovea_ros.parameters import config_dir

DEFAULT_STAGES_FILE = "demo.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fovea demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="stages YAML (default: config/demo.yaml)")
    parser.add_argument("--stages", nargs="+", metavar="NAME", help="run only these stages (in the file's order)")
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--rate", type=float, default=1.0, help="replay rate")
    args = parser.parse_args(argv)
    config = config_dir()
    if config is None:
        print("fovea demo: cannot find the config/ folder", file=sys.stderr)
        return 2
    stages_file = args.config or config / DEFAULT_STAGES_FILE
    stages, suites = load_stages(stages_file), load_suites(stages_file)
    unknown = set(args.stages or ()) - {s.name for s in (*stages, *suites)}
    if unknown:
        print(f"fovea demo: unknown stage(s) {sorted(unknown)}; known: {[s.name for s in (*stages, *suites)]}",
              file=sys.stderr)
        return 2
    selected = [s for s in stages if not args.stages or s.name in args.stages]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    repo = repo_root()  # bags/ are the repository's
    started = time.monotonic()
    sections = []
    for spec in selected:
        print(f"== fovea demo: stage {spec.name} ({spec.bag} → {spec.graph})", flush=True)
        sections.append(StageRun(spec, repo, config, out, rate=args.rate).run())
    suite_reports = []
    for suite in (s for s in suites if not args.stages or s.name in args.stages):
        print(f"== fovea demo: suite {suite.name} ({suite.graph}, one process per node)", flush=True)
        result = SuiteRun(suite, stages, repo, config, out, rate=args.rate).run()
        sections += result.pop("members")  # each member's books, as a stage section named <suite>/<stage>
        suite_reports.append(result)
    report = {"rate": args.rate, "wall_s": round(time.monotonic() - started, 1),
              "passed": all(s["passed"] for s in (*sections, *suite_reports)), "stages": sections,
              "suites": suite_reports}
    write_report(out, report)
    write_html_report(out, report, config)
    print(render_markdown(report))
    for s in (*sections, *suite_reports):
        for check in s["checks"]:
            if not check["ok"]:
                print(f"fovea demo: stage {s['name']}: {check['name']} failed ({check['detail']})", file=sys.stderr)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

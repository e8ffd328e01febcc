"""The combined demo report: ``report.json`` (everything) and ``report.md`` (a table row and a section per stage)."""
from __future__ import annotations

import json
from pathlib import Path

from fovea_ros.demo.suite import render_suites_markdown


def _pct(values: dict | None) -> str:
    if not values or values.get("p50") is None:
        return "n/a"
    return f"{values['p50']} / {values['p99']}"


def _drops(node: dict) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(node["drops"].items())) or "none"


def render_markdown(report: dict) -> str:
    lines = ["# Fovea demo report", "",
             f"{len(report['stages'])} stage(s), replay rate {report['rate']}, wall time {report['wall_s']} s: "
             f"**{'PASS' if report['passed'] else 'FAIL'}**", "",
             "| stage | result | replayed | inputs seen | outputs seen / recorded | counted drops | "
             "processing p50 / p99 ms | end-to-end p50 / p99 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for s in report["stages"]:
        inputs = sum(v["seen"] for v in s["inputs"].values())
        out = s["outputs"][s["primary_output"]]
        lines.append(f"| {s['name']} | {'pass' if s['passed'] else '**FAIL**'} | {s['messages_replayed']} | {inputs} | "
                     f"{out['seen']} / {out['recorded']} | {s['node']['drops_total']} | "
                     f"{_pct(s['node']['processing_time_ms'])} | {_pct(s['end_to_end_latency_ms'])} |")
    for s in report["stages"]:
        node = s["node"]
        lines += ["", f"## {s['name']}: {'pass' if s['passed'] else 'FAIL'}", "", s["description"], "",
                  f"Bag `{s['bag']}` → graph `{s['graph']}` · accounting `{s['accounting']}` · {s['wall_s']} s", "",
                  "| topic | role | published | received by the node | lost before its callback (counted / unseen) "
                  "| seen by the probe | recorded |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {t} | input | {v['published']} | {v.get('received', '')} | "
                  f"{v.get('counted_lost', '')} / {v.get('unseen', '')} | {v['seen']} | |" for t, v in s["inputs"].items()]
        lines += [f"| {t} | output | {v.get('published', '')} | | | {v['seen']} | {v['recorded']} |"
                  for t, v in s["outputs"].items()]
        lat = s["end_to_end_latency_ms"]
        lines += ["", f"Node `{node['name']}` (last /diagnostics): {node['inputs']} inputs, {node['processed']} "
                  f"processed, processing p50 / p99 {_pct(node['processing_time_ms'])} ms, drops {node['drops_total']} "
                  f"({_drops(node)}) — {node['message']}", "",
                  "End-to-end latency (input received → output with its stamp received): " + (
                      f"p50 / p99 {_pct(lat)} ms over {lat['count']} outputs" if lat and lat["count"]
                      else "n/a (the outputs do not carry an input's stamp)" if lat is None else "no matched outputs")]
        if s["method_values"]:
            lines += ["", "Method values: " + ", ".join(f"`{k}` {v}" for k, v in s["method_values"].items())]
        lines += ["", "Checks:", ""]
        lines += [f"- {'ok' if c['ok'] else '**FAILED**'}: {c['name']} ({c['detail']})" for c in s["checks"]]
        lines += ["", f"Recording: `{s['recording']}`"]
    lines += render_suites_markdown(report.get("suites") or [])
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report))

"""``out/demo/report.html``: one self-contained page (images embedded as data URIs) with, per stage, the
pictures a person wants next to its tables.

Pictures are rendered with matplotlib from the stage's MCAP recording (its outputs, ``/diagnostics``,
``/fovea/health``) or its input bag, chosen by message type through ``config/demo_report.yaml`` (the kinds
are listed there). A picture that cannot be drawn (no such messages in this run) is said so in words on the
page, never left as an empty frame.
"""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on robots' build machines or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from fovea_core.paths import repo_root  # noqa: E402
from fovea_ros.bag.reader import BagReader  # noqa: E402
from fovea_ros.bag.typestore import import_message_class  # noqa: E402

REPORT_CONFIG = "demo_report.yaml"
MAX_MESSAGES = 5000          # per topic read for one picture
LEVEL_NAMES = ("ok", "degraded", "unreliable", "unknown")
LEVEL_COLORS = ("#3a9d4f", "#e0a82e", "#c8372d", "#9a9a9a")


class NoData(Exception):
    """The picture has nothing to show in this run (the message says what was missing)."""


# ---- reading messages ----------------------------------------------------------------------------------
def read_messages(bag: Path, topic: str, limit: int = MAX_MESSAGES) -> list:
    """(log time ns, rclpy message) for ``topic`` in a bag or recording."""
    from rclpy.serialization import deserialize_message

    if not Path(bag).exists():
        raise NoData(f"{bag} does not exist")
    with BagReader(bag) as reader:
        types = {t.name: t.msgtype for t in reader.topics}
        if topic not in types:
            raise NoData(f"no {topic} in {Path(bag).name}")
        msg_class = import_message_class(types[topic])
        if msg_class is None:
            raise NoData(f"{types[topic]} is not built here")
        out = []
        for raw in reader.messages([topic]):
            out.append((raw.log_time_ns, deserialize_message(raw.data, msg_class)))
            if len(out) >= limit:
                break
    if not out:
        raise NoData(f"no messages on {topic}")
    return out


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---- picture kinds -------------------------------------------------------------------------------------
def _class_palette(name: str | None):
    if name == "tpv":
        from fovea_core.tpv.scenes import CLASS_COLORS, CLASS_NAMES
        return np.asarray(CLASS_COLORS, float), list(CLASS_NAMES)
    return None, None


def picture_camera(spec: dict, sources: dict) -> str:
    from fovea_ros.conversions import image_to_array

    _, msg = read_messages(sources[spec.get("from", "recording")], spec["topic"], limit=1)[0]
    pixels = image_to_array(msg)
    if msg.encoding == "bgr8":
        pixels = pixels[..., ::-1]
    fig, ax = plt.subplots(figsize=(6, 6 * pixels.shape[0] / pixels.shape[1]))
    if pixels.ndim == 2:  # mono (a DAVIS APS frame): stretched to its own range, as an image viewer does
        lo, hi = np.percentile(pixels, [1, 99])
        ax.imshow(pixels, cmap="gray", vmin=lo, vmax=max(hi, lo + 1))
    else:
        ax.imshow(pixels)
    ax.set_axis_off()
    return _png(fig)


def picture_cloud_bev(spec: dict, sources: dict) -> str:
    from fovea_ros.conversions import pointcloud2_to_array

    _, msg = read_messages(sources[spec.get("from", "recording")], spec["topic"], limit=1)[0]
    cloud = pointcloud2_to_array(msg).reshape(-1)
    if len(cloud) == 0:
        raise NoData(f"the first cloud on {spec['topic']} is empty")
    finite = np.isfinite(cloud["x"]) & np.isfinite(cloud["y"])
    cloud = cloud[finite]
    field = spec.get("color", "z")
    fig, ax = plt.subplots(figsize=(6, 6))
    colors, names = _class_palette(spec.get("classes"))
    if field == "label" and "label" in cloud.dtype.names and colors is not None:
        labels = cloud["label"].astype(int).clip(0, len(colors) - 1)
        ax.scatter(cloud["x"], cloud["y"], s=1.5, c=colors[labels], linewidths=0)
        present = sorted(set(labels.tolist()) - {0})
        handles = [plt.Line2D([], [], marker="s", ls="", color=colors[c], label=names[c]) for c in present]
        ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.8)
    else:
        values = cloud[field] if field in cloud.dtype.names else cloud["z"]
        lo, hi = np.percentile(values, [2, 98])
        points = ax.scatter(cloud["x"], cloud["y"], s=1, c=values, cmap="viridis", vmin=lo, vmax=hi, linewidths=0)
        fig.colorbar(points, ax=ax, shrink=0.7, label=field)
    ax.set_aspect("equal")
    ax.set_xlabel(f"x (m, {msg.header.frame_id})")
    ax.set_ylabel("y (m)")
    ax.set_title(f"{len(cloud)} points", fontsize=9)
    return _png(fig)


def _planar_pose(msg) -> np.ndarray:
    """The 3x3 planar transform of an Odometry pose (x, y, yaw)."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    yaw = np.arctan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, p.x], [s, c, p.y], [0, 0, 1]])


def picture_trajectory(spec: dict, sources: dict) -> str:
    estimated = [m for _, m in read_messages(sources["recording"], spec["topic"])]
    fig, ax = plt.subplots(figsize=(6, 5))
    est = np.array([_planar_pose(m) for m in estimated])
    if spec.get("ground_truth"):
        truth = [m for _, m in read_messages(sources["bag"], spec["ground_truth"])]
        gt = np.array([_planar_pose(m) for m in truth])
        ax.plot(gt[:, 0, 2], gt[:, 1, 2], "o-", color="#444", ms=4, label=f"ground truth ({len(gt)})")
        # odometry starts in its own frame: put its first pose on the ground truth of the same stamp
        by_stamp = {_stamp(m): pose for m, pose in zip(truth, gt)}
        anchor = by_stamp.get(_stamp(estimated[0]))
        if anchor is not None:
            est = np.einsum("ij,njk->nik", anchor @ np.linalg.inv(est[0]), est)
    ax.plot(est[:, 0, 2], est[:, 1, 2], "x-", color="#d0452a", ms=7, label=f"estimated ({len(est)})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.legend(fontsize=8)
    return _png(fig)


def picture_image_frames(spec: dict, sources: dict) -> str:
    from fovea_ros.conversions import image_to_array

    topics = spec["topics"]
    per_topic = {t: read_messages(sources["recording"], t) for t in topics}
    stamps = sorted(set.intersection(*[{_stamp(m) for _, m in msgs} for msgs in per_topic.values()]))
    if not stamps:
        raise NoData("no stamp is on every topic")
    want = min(int(spec.get("frames", 3)), len(stamps))
    chosen = [stamps[int(i)] for i in np.linspace(len(stamps) // 4, len(stamps) - 1, want)]
    fig, axes = plt.subplots(want, len(topics), figsize=(3 * len(topics), 2.4 * want), squeeze=False)
    for row, stamp in enumerate(chosen):
        for col, topic in enumerate(topics):
            msg = next(m for _, m in per_topic[topic] if _stamp(m) == stamp)
            pixels = image_to_array(msg)
            ax = axes[row][col]
            if msg.encoding == "32FC1":
                im = ax.imshow(np.nan_to_num(pixels), cmap="magma")
                fig.colorbar(im, ax=ax, shrink=0.8)
            elif msg.encoding == "mono8":
                ax.imshow(pixels, cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
            else:
                ax.imshow(pixels)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(topic.rsplit("/", 1)[-1], fontsize=8)
        axes[row][0].text(-0.05, 0.5, f"{(stamp - chosen[0]) / 1e6:+.0f} ms", transform=axes[row][0].transAxes,
                          ha="right", va="center", fontsize=8)
    return _png(fig)


def picture_occupancy_grids(spec: dict, sources: dict) -> str:
    topics = spec["topics"]
    grids = [(t, read_messages(sources["recording"], t)[-1][1]) for t in topics]
    arrows = []
    if spec.get("markers"):  # flow arrows (MarkerArray, one namespace per horizon), where recorded
        try:
            arrows = read_messages(sources["recording"], spec["markers"])[-1][1].markers
        except NoData:
            arrows = []
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.4), squeeze=False)
    for ax, (topic, grid) in zip(axes[0], grids):
        horizon = topic.rsplit("_", 1)[-1]   # e.g. "1000ms"
        for m in arrows:
            if horizon in m.ns and len(m.points) >= 2:
                a, b = m.points[0], m.points[1]
                ax.annotate("", xy=(b.x, b.y), xytext=(a.x, a.y),
                            arrowprops={"arrowstyle": "->", "color": "#3ec1d3", "lw": 0.8})
        info = grid.info
        data = np.asarray(grid.data, np.int16).reshape(info.height, info.width).astype(float)
        data[data < 0] = np.nan
        x0, y0 = info.origin.position.x, info.origin.position.y
        extent = (x0, x0 + info.width * info.resolution, y0, y0 + info.height * info.resolution)
        im = ax.imshow(data / 100.0, origin="lower", extent=extent, cmap="inferno", vmin=0, vmax=1)
        ax.set_title(topic.rsplit("/", 1)[-1], fontsize=8)
        ax.set_aspect("equal")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="P(occupied)")
    return _png(fig)


def picture_anomaly_score(spec: dict, sources: dict) -> str:
    """Score and threshold over time, WARN/ERROR steps marked, the injected fault's interval shaded
    (``fault_intervals_ns``: [start, end] header stamps, end null = to the end of the run)."""
    msgs = read_messages(sources["recording"], spec["topic"])
    t0 = _stamp(msgs[0][1])
    t = np.array([(_stamp(m) - t0) / 1e9 for _, m in msgs])
    score = np.array([m.score for _, m in msgs], float)
    threshold = np.array([m.threshold for _, m in msgs], float)
    state = np.array([m.state for _, m in msgs])
    fig, ax = plt.subplots(figsize=(7, 3))
    for i, (lo, hi) in enumerate(spec.get("fault_intervals_ns") or []):
        hi_s = t[-1] if hi is None else (hi - t0) / 1e9
        ax.axvspan((lo - t0) / 1e9, hi_s, color="#f2b8b5", alpha=0.6, label="injected fault" if i == 0 else None)
    ax.plot(t, score, "o-", ms=3, color="#2a5da8", label="window score")
    ax.plot(t, threshold, "--", color="#c8372d", label="threshold")
    warn = state >= 2  # StreamAnomaly WARN or ERROR
    if warn.any():
        top = np.nanmax(np.r_[score[np.isfinite(score)], threshold[np.isfinite(threshold)], 1.0])
        ax.plot(t[warn], np.full(warn.sum(), top * 1.08), "v", color="#c8372d", ms=6, label="WARN / ERROR")
    ax.set_xlabel("time since the first scored step (s, header stamps)")
    ax.set_ylabel("KL score")
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def picture_processing(spec: dict, sources: dict) -> str:
    node = spec["node"]
    msgs = read_messages(sources["recording"], "/diagnostics")
    rows = []
    for log_ns, msg in msgs:
        for status in msg.status:
            if status.name == node:
                values = {kv.key: kv.value for kv in status.values}
                rows.append((log_ns, _num(values.get("processing_time_p50_ms")), _num(values.get("processing_time_p99_ms")),
                             _num(values.get("latency_budget_ms"))))
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        raise NoData(f"no processing times from {node} in /diagnostics")
    t = np.array([(r[0] - rows[0][0]) / 1e9 for r in rows])
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.plot(t, [r[1] for r in rows], "o-", ms=3, label="p50")
    ax.plot(t, [r[2] for r in rows], "s-", ms=3, label="p99")
    budget = rows[-1][3]
    if budget:
        ax.axhline(budget, color="#c8372d", ls="--", label=f"budget {budget:g} ms")
    ax.set_xlabel("time (s, recording)")
    ax.set_ylabel("processing (ms)")
    ax.legend(fontsize=7)
    return _png(fig)


def picture_health(spec: dict, sources: dict) -> str:
    msgs = read_messages(sources["recording"], spec["topic"])
    names: list[tuple[str, str]] = []
    for _, m in msgs:
        for e in m.entries:
            if (e.kind, e.name) not in names:
                names.append((e.kind, e.name))
    t0 = msgs[0][0]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.2))
    for row, key in enumerate(names):
        times, levels = [], []
        for log_ns, m in msgs:
            level = next((e.level for e in m.entries if (e.kind, e.name) == key), None)
            if level is not None:
                times.append((log_ns - t0) / 1e9)
                levels.append(level)
        ends = times[1:] + [times[-1] + 1.0]
        for start, end, level in zip(times, ends, levels):
            ax.barh(row, end - start, left=start, color=LEVEL_COLORS[level], height=0.8, linewidth=0)
    ax.set_yticks(range(len(names)), [f"{k} {n}" for k, n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time (s, recording)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in LEVEL_COLORS]
    ax.legend(handles, LEVEL_NAMES, fontsize=7, ncols=4, loc="lower right", bbox_to_anchor=(1, 1))
    return _png(fig)


PICTURES: dict[str, Callable[[dict, dict], str]] = {
    "camera": picture_camera, "cloud_bev": picture_cloud_bev, "trajectory": picture_trajectory,
    "image_frames": picture_image_frames, "occupancy_grids": picture_occupancy_grids,
    "anomaly_score": picture_anomaly_score, "processing": picture_processing, "health": picture_health,
}


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _num(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# ---- the page ------------------------------------------------------------------------------------------
def render_pictures(specs: list[dict], sources: dict) -> list[dict]:
    """[{title, src} | {title, missing}] for each picture spec."""
    out = []
    for spec in specs:
        title = spec.get("title") or spec["kind"]
        try:
            out.append({"title": title, "src": PICTURES[spec["kind"]](spec, sources)})
        except NoData as exc:
            out.append({"title": title, "missing": str(exc)})
        except Exception as exc:  # a broken picture must not cost the report: say what happened
            out.append({"title": title, "missing": f"could not draw: {type(exc).__name__}: {exc}"})
            plt.close("all")
    return out


CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1300px}
h1{font-size:1.6em} h2{margin-top:1.6em;border-bottom:2px solid #ddd;padding-bottom:.2em}
.pass{color:#2d7d3f;font-weight:600} .fail{color:#b3261e;font-weight:600}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} .pics{display:flex;flex-wrap:wrap;gap:1em;margin-top:.6em}
figure{margin:0;border:1px solid #ddd;padding:.4em;background:#fafafa} figcaption{font-size:.85em;color:#444;max-width:520px}
figure img{max-width:520px;display:block} .missing{color:#8a5a00;font-style:italic}
ul.checks{font-size:.9em} .lvl-ok{color:#2d7d3f} .lvl-degraded{color:#9a6b00} .lvl-unreliable{color:#b3261e}
.lvl-unknown{color:#777}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _pct(values: dict | None) -> str:
    if not values or values.get("p50") is None:
        return "n/a"
    return f"{values['p50']} / {values['p99']}"


def _stage_html(s: dict, pictures: list[dict]) -> str:
    node = s["node"]
    budget = s.get("diagnostics", {}).get("latency_budget_ms", "none")
    rows = [f"<tr><td>{_e(t)}</td><td>input</td><td>{v['published']}</td><td>{v['seen']}</td><td></td></tr>"
            for t, v in s["inputs"].items()]
    rows += [f"<tr><td>{_e(t)}</td><td>output</td><td></td><td>{v['seen']}</td><td>{v['recorded']}</td></tr>"
             for t, v in s["outputs"].items()]
    drops = ", ".join(f"{_e(r)}: {n}" for r, n in sorted(node["drops"].items())) or "none"
    checks = "".join(f"<li class='{'pass' if c['ok'] else 'fail'}'>{'ok' if c['ok'] else 'FAILED'}: "
                     f"{_e(c['name'])} <span style='color:#555;font-weight:normal'>({_e(c['detail'])})</span></li>"
                     for c in s["checks"])
    values = ", ".join(f"<code>{_e(k)}</code> {_e(v)}" for k, v in s.get("method_values", {}).items())
    return (f"<h2 id='{_e(s['name'])}'>{_e(s['name'])} <span class='{'pass' if s['passed'] else 'fail'}'>"
            f"{'pass' if s['passed'] else 'FAIL'}</span></h2><p>{_e(s['description'])}</p>"
            f"<p>Bag <code>{_e(s['bag'])}</code> → graph <code>{_e(s['graph'])}</code> · accounting "
            f"<code>{_e(s['accounting'])}</code> · {s['wall_s']} s</p>"
            f"<table><tr><th>topic</th><th>role</th><th>published</th><th>seen</th><th>recorded</th></tr>"
            f"{''.join(rows)}</table>"
            f"<table><tr><th>node</th><th>inputs</th><th>processed</th><th>drops</th><th>processing p50 / p99 ms</th>"
            f"<th>budget ms</th><th>end-to-end p50 / p99 ms</th><th>status</th></tr><tr><td>{_e(node['name'])}</td>"
            f"<td>{node['inputs']}</td><td>{node['processed']}</td><td>{node['drops_total']} ({drops})</td>"
            f"<td>{_pct(node['processing_time_ms'])}</td><td>{_e(budget)}</td><td>{_pct(s['end_to_end_latency_ms'])}</td>"
            f"<td>{_e(node['message'])}</td></tr></table>"
            + (f"<p>Method values: {values}</p>" if values else "")
            + f"<ul class='checks'>{checks}</ul>" + _pictures_html(pictures))


def _pictures_html(pictures: list[dict]) -> str:
    figures = []
    for p in pictures:
        if "src" in p:
            figures.append(f"<figure><img alt='{_e(p['title'])}' src='{p['src']}'><figcaption>{_e(p['title'])}"
                           "</figcaption></figure>")
        else:
            figures.append(f"<figure><figcaption>{_e(p['title'])}: <span class='missing'>not drawn: "
                           f"{_e(p['missing'])}</span></figcaption></figure>")
    return f"<div class='pics'>{''.join(figures)}</div>"


def _suite_html(s: dict, pictures: list[dict]) -> str:
    checks = "".join(f"<li class='{'pass' if c['ok'] else 'fail'}'>{'ok' if c['ok'] else 'FAILED'}: "
                     f"{_e(c['name'])} <span style='color:#555;font-weight:normal'>({_e(c['detail'])})</span></li>"
                     for c in s["checks"])
    health = "".join(f"<tr><td>{_e(e['kind'])}</td><td>{_e(e['name'])}</td><td>{_e(e['topic'])}</td>"
                     f"<td class='lvl-{e['level']}'>{_e(e['level'])}</td><td>{_e((e['reasons'] or [''])[0])}</td></tr>"
                     for e in s.get("health", []))
    query = s.get("query") or {}
    sources = "".join(f"<tr><td>{_e(q['name'])}</td><td>{q['points']}</td><td>{q['answered']}</td>"
                      f"<td class='lvl-{q['health']}'>{_e(q['health'])}</td><td>{_e(q['message'])}</td></tr>"
                      for q in query.get("sources", []))
    return (f"<h2 id='{_e(s['name'])}'>suite {_e(s['name'])} <span class='{'pass' if s['passed'] else 'fail'}'>"
            f"{'pass' if s['passed'] else 'FAIL'}</span></h2><p>{_e(s['description'])}</p>"
            f"<p>Graph <code>{_e(s['graph'])}</code>, one process per node, brought up by the lifecycle manager "
            f"({_e(s['manager'].get('message', 'no status'))}); bags {_e(', '.join(s['bags']))} replayed together; "
            f"{s['messages_replayed']} messages; {s['wall_s']} s. Its member stages' books follow as "
            f"<code>{_e(s['name'])}/&lt;stage&gt;</code>.</p><ul class='checks'>{checks}</ul>"
            + (f"<h3>Health {_e(s.get('health_when', 'at the end'))}</h3><table><tr><th>kind</th><th>name</th><th>topic</th><th>level</th>"
               f"<th>reason</th></tr>{health}</table>" if health else "")
            + (f"<h3>Planner query</h3><p>asked {_e(query.get('asked', 'after the replay'))}: {_e(query.get('message'))}</p><table><tr><th>source</th><th>points</th>"
               f"<th>answered</th><th>health</th><th>message</th></tr>{sources}</table>" if query else "")
            + _pictures_html(pictures))


def render_html(report: dict, picture_config: dict, repo: Path) -> str:
    stage_pictures = picture_config.get("stages") or {}
    suite_pictures = picture_config.get("suites") or {}
    body = []
    rows = "".join(f"<tr><td><a href='#{_e(s['name'])}'>{_e(s['name'])}</a></td><td class='"
                   f"{'pass' if s['passed'] else 'fail'}'>{'pass' if s['passed'] else 'FAIL'}</td>"
                   f"<td>{s['messages_replayed']}</td><td>{s['node']['drops_total']}</td>"
                   f"<td>{_pct(s['node']['processing_time_ms'])}</td>"
                   f"<td>{_e(s.get('diagnostics', {}).get('latency_budget_ms', 'none'))}</td></tr>"
                   for s in report["stages"])
    for s in report["stages"]:
        stage = s["name"].rsplit("/", 1)[-1]
        sources = {"recording": Path(s["recording"]), "bag": repo / s["bag"]}
        specs = list(stage_pictures.get(stage) or [])
        specs.append({"kind": "processing", "node": s["node"]["name"],
                      "title": f"{s['node']['name']}: processing time over the run (from /diagnostics)"})
        body.append(_stage_html(s, render_pictures(specs, sources)))
    for s in report.get("suites") or []:
        sources = {"recording": Path(s["recording"])}
        body.append(_suite_html(s, render_pictures(list(suite_pictures.get(s["name"]) or []), sources)))
    verdict = "PASS" if report["passed"] else "FAIL"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Fovea demo report</title>"
            f"<style>{CSS}</style></head><body><h1>Fovea demo report <span class='{'pass' if report['passed'] else 'fail'}'>"
            f"{verdict}</span></h1><p>{len(report['stages'])} stage section(s), replay rate {report['rate']}, "
            f"wall time {report['wall_s']} s. Tables and checks as in report.md; pictures drawn from each stage's "
            f"recording.</p><table><tr><th>stage</th><th>result</th><th>replayed</th><th>counted drops</th>"
            f"<th>processing p50 / p99 ms</th><th>budget ms</th></tr>{rows}</table>{''.join(body)}</body></html>\n")


def write_html_report(out: Path, report: dict, config: Path | None) -> Path:
    path = (config / REPORT_CONFIG) if config is not None else None
    picture_config = yaml.safe_load(path.read_text()) if path is not None and path.is_file() else {}
    target = Path(out) / "report.html"
    target.write_text(render_html(report, picture_config or {}, repo_root()), encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    """Re-render report.html from an existing out/demo (report.json and the recordings)."""
    import argparse
    import json

    from fovea_ros.parameters import config_dir

    parser = argparse.ArgumentParser(prog="python -m fovea_ros.demo.report_html", description=main.__doc__)
    parser.add_argument("out", nargs="?", default="out/demo")
    args = parser.parse_args(argv)
    report = json.loads((Path(args.out) / "report.json").read_text())
    print(write_html_report(Path(args.out), report, config_dir()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

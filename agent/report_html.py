"""A report as one self-contained HTML page: inline CSS and SVG, no script,
no font or image fetched from anywhere, so it opens the same offline, in
a mail, years later.

* a stacked bar chart of each day's active time by project;
* a timeline of each day's sessions, one lane per scope (as
  ActivityWatch draws its timeline);
* the report's table.

Every bar and piece carries ``data-`` attributes (day, project, scope,
seconds) so that a test -- or a curious user -- can read the figures off
the page as well as see them.
"""

from __future__ import annotations

from html import escape
from typing import Any

from agent.report_text import hours

__all__ = ["report_html"]

# A palette that stays apart for the colour-blind (Okabe and Ito), then greys.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
OTHER = "#999999"
CHART_HEIGHT = 220
BAR_WIDTH = 28
GAP = 10
LANE_HEIGHT = 14
TIMELINE_WIDTH = 720

_STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.range { color: #555; margin-bottom: 16px; }
.totals span { margin-right: 18px; }
.legend span { display: inline-block; margin: 0 14px 4px 0; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 5px; vertical-align: middle; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
table { border-collapse: collapse; } th, td { padding: 3px 12px 3px 0; text-align: left; }
td.n { text-align: right; } tr.inner td:first-child { padding-left: 18px; }
th { border-bottom: 1px solid #ccc; }
.running { color: #D55E00; }
"""


def _colours(days: list[dict[str, Any]]) -> dict[str, str]:
    """A colour per project, the most worked first; the rest share grey."""
    totals: dict[str, float] = {}
    for day in days:
        for project in day["projects"]:
            totals[project["key"]] = totals.get(project["key"], 0.0) + project["active_seconds"]
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    return {key: PALETTE[n] if n < len(PALETTE) else OTHER for n, key in enumerate(ranked)}


def _chart(days: list[dict[str, Any]], colours: dict[str, str]) -> str:
    most = max((sum(p["active_seconds"] for p in d["projects"]) for d in days), default=0.0) or 1.0
    width = len(days) * (BAR_WIDTH + GAP) + 60
    parts = [
        f'<svg id="active-by-day" width="{width}" height="{CHART_HEIGHT + 40}" '
        f'viewBox="0 0 {width} {CHART_HEIGHT + 40}" role="img" aria-label="Active time per day by project">'
    ]
    top = most / 3600
    step = max(1, round(top / 4)) if top >= 1 else None
    if step:
        for h in range(0, int(top) + 1, step):
            y = CHART_HEIGHT - h * 3600 / most * CHART_HEIGHT + 10
            parts.append(f'<line x1="40" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
            parts.append(f'<text x="34" y="{y + 4:.1f}" text-anchor="end">{h}h</text>')
    for n, day in enumerate(days):
        x = 50 + n * (BAR_WIDTH + GAP)
        y = CHART_HEIGHT + 10
        for project in sorted(day["projects"], key=lambda p: p["key"]):
            seconds = project["active_seconds"]
            if seconds <= 0:
                continue
            height = seconds / most * CHART_HEIGHT
            y -= height
            parts.append(
                f'<rect class="bar" x="{x}" y="{y:.2f}" width="{BAR_WIDTH}" height="{height:.2f}" '
                f'fill="{colours.get(project["key"], OTHER)}" data-day="{escape(day["day"])}" '
                f'data-project="{escape(project["key"])}" data-seconds="{seconds:g}">'
                f"<title>{escape(day['day'])}: {escape(project['key'])}, {hours(seconds)} active</title>"
                "</rect>"
            )
        label = day["day"][5:]
        parts.append(
            f'<text x="{x + BAR_WIDTH / 2}" y="{CHART_HEIGHT + 26}" text-anchor="middle">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _timeline(days: list[dict[str, Any]], colours: dict[str, str]) -> str:
    rows = []
    for day in days:
        scopes = sorted({p["scope"] for p in day["pieces"]})
        if not scopes:
            continue
        length = day["day_seconds"] or 86400
        height = len(scopes) * (LANE_HEIGHT + 4) + 22
        parts = [
            f'<svg class="day" data-day="{escape(day["day"])}" width="{TIMELINE_WIDTH + 130}" '
            f'height="{height}" viewBox="0 0 {TIMELINE_WIDTH + 130} {height}">'
            f'<text x="0" y="12" font-weight="bold">{escape(day["day"])}</text>'
        ]
        for hour in range(0, 25, 3):
            x = 120 + hour * 3600 / length * TIMELINE_WIDTH
            if x <= 120 + TIMELINE_WIDTH:
                parts.append(f'<text x="{x:.1f}" y="12" text-anchor="middle" fill="#999">{hour:02d}</text>')
        for lane, scope in enumerate(scopes):
            y = 18 + lane * (LANE_HEIGHT + 4)
            parts.append(f'<text x="0" y="{y + 11}">{escape(scope[:18])}</text>')
            parts.append(
                f'<rect x="120" y="{y}" width="{TIMELINE_WIDTH}" height="{LANE_HEIGHT}" fill="#f4f4f4"/>'
            )
            for piece in (p for p in day["pieces"] if p["scope"] == scope):
                x = 120 + piece["offset_seconds"] / length * TIMELINE_WIDTH
                w = max(1.0, piece["seconds"] / length * TIMELINE_WIDTH)
                project = piece["project"] or "(no project)"
                parts.append(
                    f'<rect class="piece" x="{x:.2f}" y="{y}" width="{w:.2f}" height="{LANE_HEIGHT}" '
                    f'fill="{colours.get(project, OTHER)}" data-scope="{escape(scope)}" '
                    f'data-project="{escape(project)}" data-seconds="{piece["seconds"]:g}">'
                    f"<title>{escape(scope)}: {escape(project)}, {hours(piece['seconds'])}"
                    f"{' (running)' if piece['running'] else ''}</title></rect>"
                )
        parts.append("</svg>")
        rows.append("".join(parts))
    return "\n".join(rows) or "<p>No session ran in this range.</p>"


def _table(report: dict[str, Any]) -> str:
    by = report["by"]
    head = f"<tr><th>{escape(' / '.join(by))}</th><th>wall</th><th>active</th><th>sessions</th></tr>"
    rows = [head]
    for group in report["groups"]:
        rows.append(_table_row(group, ""))
        rows.extend(_table_row(child, "inner") for child in group.get("groups", []))
    total = report["total"]
    rows.append(_table_row({"key": "total", **total}, "total"))
    return f'<table id="groups">{"".join(rows)}</table>'


def _table_row(group: dict[str, Any], kind: str) -> str:
    running = ' <span class="running" title="still running">●</span>' if group["running"] else ""
    return (
        f'<tr class="{kind}"><td>{escape(group["key"])}{running}</td>'
        f'<td class="n">{hours(group["wall_seconds"])}</td>'
        f'<td class="n">{hours(group["active_seconds"])}</td>'
        f'<td class="n">{group["sessions"]}</td></tr>'
    )


def report_html(report: dict[str, Any], title: str) -> str:
    """The page for ``report`` (built with ``timeline``); ``title`` says
    its range for people."""
    days = report["timeline"]["days"]
    colours = _colours(days)
    total = report["total"]
    legend = "".join(f'<span><i style="background:{c}"></i>{escape(k)}</span>' for k, c in colours.items())
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>session-agent report: {escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>Where the time went</h1><div class="range">{escape(title)}</div>'
        f'<div class="totals"><span>wall <b id="total-wall">{hours(total["wall_seconds"])}</b></span>'
        f'<span>active <b id="total-active">{hours(total["active_seconds"])}</b></span>'
        f'<span>sessions <b id="total-sessions">{total["sessions"]}</b></span></div>'
        f'<h2>Active time per day, by project</h2><div class="legend">{legend}</div>{_chart(days, colours)}'
        f"<h2>Each day's sessions, by scope</h2>{_timeline(days, colours)}"
        f"<h2>By {escape(', '.join(report['by']))}</h2>{_table(report)}"
        "</body></html>\n"
    )

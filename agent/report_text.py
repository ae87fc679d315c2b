"""A report (``agent.report``) for people -- a table with bars, drawn by
``rich`` (colour only on a terminal, ``NO_COLOR`` respected) -- and for
spreadsheets, as CSV. Imported by ``report`` alone: never on the hot
commands' path."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from agent.export import spreadsheet_text

__all__ = ["hours", "report_csv", "report_table"]

BAR_WIDTH = 24
_RUNNING = "●"


def hours(seconds: float) -> str:
    """A report's time: hours and minutes however long (``49h12m``, ``45m``,
    ``20s``): days of work read as hours, as every time tracker shows them."""
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m" if m else f"{s}s"


def _bar(seconds: float, most: float) -> str:
    if most <= 0 or seconds <= 0:
        return ""
    cells = seconds / most * BAR_WIDTH
    full = int(cells)
    return "█" * full + ("▌" if cells - full >= 0.5 else "")


def _local(moment: str, zone: str) -> str:
    from agent.periods import zone_by_name

    return datetime.fromisoformat(moment).astimezone(zone_by_name(zone)).strftime("%a %Y-%m-%d %H:%M")


def report_table(report: dict[str, Any], *, color: bool | None = None, width: int | None = None) -> str:
    """The report as a table: a row per group (indented under its parent for
    two levels), wall and active time, sessions, and a bar of active time."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    by = report["by"]
    title = (
        f"{_local(report['since'], report['zone'])} → {_local(report['until'], report['zone'])} "
        f"({report['zone']}), by {', '.join(by)}"
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(" / ".join(by))
    table.add_column("wall", justify="right")
    table.add_column("active", justify="right")
    table.add_column("sessions", justify="right")
    table.add_column("active time", no_wrap=True)
    groups = report["groups"]
    most = max((g["active_seconds"] for g in groups), default=0.0)
    for group in groups:
        _row(table, group, most, "", "bold")
        children = group.get("groups", [])
        inner = max((c["active_seconds"] for c in children), default=0.0)
        for child in children:
            _row(table, child, inner, "  ", "")
    total = report["total"]
    hosts = report.get("hosts")
    if hosts:
        table.add_section()
        most_on_host = max((h["active_seconds"] for h in hosts), default=0.0)
        for host in hosts:
            _row(table, {"key": f"host {host['host'] or '(this host)'}", **host}, most_on_host, "", "")
    table.add_section()
    _row(table, {"key": "total", **total}, 0.0, "", "bold")
    notes = []
    if hosts and len(hosts) > 1:
        notes.append(
            f"time on several machines at once is counted once: {hours(total['covered_wall_seconds'])} "
            f"wall, {hours(total['covered_active_seconds'])} active"
        )
    if total["covered_wall_seconds"] < total["wall_seconds"]:
        notes.append(
            f"sessions ran side by side: at least one ran for {hours(total['covered_wall_seconds'])} "
            f"(active {hours(total['covered_active_seconds'])})"
        )
    if any(g["running"] for g in groups) or total["running"]:
        notes.append(f"{_RUNNING} still running: counted up to now")
    if "tag" in by:
        notes.append("a session with several tags counts under each")
    if total["unknown_active_sessions"]:
        notes.append(f"{total['unknown_active_sessions']} session(s) recorded before active time was kept")
    if not groups:
        notes.append("no session ran in this range")
    out = io.StringIO()
    console = Console(
        file=out,
        width=width or 100,
        force_terminal=color,
        no_color=not color if color is not None else None,
        highlight=False,
        emoji=False,
    )
    console.print(title, style="bold")
    console.print(table)
    for line in notes:
        console.print(line, style="dim")
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip("\n").splitlines())


def _row(table: Any, group: dict[str, Any], most: float, indent: str, style: str) -> None:
    from rich.text import Text

    key = indent + group["key"] + (f" {_RUNNING}" if group["running"] else "")
    table.add_row(
        Text(key, style=style),
        hours(group["wall_seconds"]),
        hours(group["active_seconds"]),
        str(group["sessions"]),
        Text(_bar(group["active_seconds"], most), style="green"),
    )


def report_csv(report: dict[str, Any]) -> str:
    """One row per innermost group: its key(s), wall and active seconds,
    sessions, whether one still runs. A header row; no total row (a
    spreadsheet sums; by tag, groups overlap)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    by = report["by"]
    writer.writerow([*by, "wall_seconds", "active_seconds", "sessions", "running"])
    for group in report["groups"]:
        if len(by) == 1:
            writer.writerow(_csv_row([group["key"]], group))
        else:
            for child in group.get("groups", []):
                writer.writerow(_csv_row([group["key"], child["key"]], child))
    return out.getvalue()


def _csv_row(keys: list[str], group: dict[str, Any]) -> list[object]:
    return [
        *map(spreadsheet_text, keys),
        f"{group['wall_seconds']:.3f}",
        f"{group['active_seconds']:.3f}",
        group["sessions"],
        "yes" if group["running"] else "no",
    ]

"""Sessions out, one at a time (constant memory, however many): JSON lines,
CSV, iCalendar, and Timewarrior's ``timew export`` form.

* ``jsonl``: each session exactly as ``show --json`` gives it (every field);
  ``session-agent import --from jsonl`` reads it back.
* ``csv``: a header row, then a row per session with its fields flattened
  (tags joined by spaces, labels as JSON); a text cell a spreadsheet would
  take for a formula starts with ``'``.
* ``ical``: an iCalendar (RFC 5545) event per ended session: the title, or
  the project, or the scope as its summary; tags as categories.
* ``timewarrior``: the JSON array ``timew export`` writes (field for field,
  checked against the real ``timew``), for the tools that read Timewarrior's
  data: the project and the tags as tags, the title as the annotation.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from agent.session import Session

__all__ = ["FORMATS", "export_lines", "spreadsheet_text"]

FORMATS = ("jsonl", "csv", "ical", "timewarrior")

CSV_COLUMNS = (
    "id", "scope", "status", "started_at", "ended_at", "end_reason", "wall_seconds", "active_seconds",
    "project", "tags", "title", "tool", "external_id", "parent", "cwd", "git_root", "git_branch",
    "git_commit", "git_worktree", "host", "labels", "memory_count", "last_activity_at", "owner_pid",
    "idle_timeout",
)  # fmt: skip


def export_lines(sessions: Iterable[Session], form: str, now: datetime) -> Iterator[str]:
    """``sessions`` in the format ``form``, as pieces of text to write in turn."""
    if form == "jsonl":
        for session in sessions:
            yield json.dumps(session.to_dict(), ensure_ascii=False) + "\n"
    elif form == "csv":
        yield _csv_line(CSV_COLUMNS)
        for session in sessions:
            yield _csv_line(_csv_row(session, now))
    elif form == "ical":
        yield from _ical(sessions, now)
    elif form == "timewarrior":
        yield from _timewarrior(sessions)
    else:
        raise ValueError(f"unknown export format {form!r}")


def _csv_line(cells: Iterable[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue()


def spreadsheet_text(text: str | None) -> str:
    """A text cell a spreadsheet shows as text: never a formula (OWASP's
    rule: a leading ``=``, ``+``, ``-``, ``@``, tab or carriage return gets
    a ``'`` before it)."""
    if text is None:
        return ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_row(session: Session, now: datetime) -> list[object]:
    d = session.details
    end = session.ended_at or now
    active = session.active_seconds
    return [
        session.id,
        session.scope,
        session.status.value,
        session.started_at.isoformat(),
        session.ended_at.isoformat() if session.ended_at else "",
        session.end_reason.value if session.end_reason else "",
        f"{max(0.0, (end - session.started_at).total_seconds()):.3f}",
        "" if active is None else f"{active:.3f}",
        spreadsheet_text(d.project),
        spreadsheet_text(" ".join(d.tags)),
        spreadsheet_text(d.title),
        spreadsheet_text(d.tool),
        spreadsheet_text(d.external_id),
        d.parent or "",
        spreadsheet_text(d.cwd),
        spreadsheet_text(d.git.root if d.git else None),
        spreadsheet_text(d.git.branch if d.git else None),
        d.git.commit or "" if d.git else "",
        ("yes" if d.git.worktree else "no") if d.git else "",
        spreadsheet_text(d.host.hostname if d.host else None),
        json.dumps(dict(d.labels), ensure_ascii=False) if d.labels else "",
        session.memory_count,
        session.last_activity_at.isoformat(),
        session.owner_pid or "",
        session.idle_timeout or "",
    ]


# --- iCalendar ------------------------------------------------------------------------


def _ical_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _ical_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _fold(line: str) -> str:
    """RFC 5545 3.1: lines of at most 75 octets, continued with a space."""
    raw = line.encode("utf-8")
    if len(raw) <= 75:
        return line + "\r\n"
    pieces: list[bytes] = []
    current = b""
    for char in line:
        encoded = char.encode("utf-8")
        if len(current) + len(encoded) > (75 if not pieces else 74):
            pieces.append(current)
            current = b""
        current += encoded
    pieces.append(current)
    return "\r\n ".join(p.decode("utf-8") for p in pieces) + "\r\n"


def _ical(sessions: Iterable[Session], now: datetime) -> Iterator[str]:
    from agent import __version__

    yield from map(
        _fold,
        (
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            f"PRODID:-//session-agent//{__version__}//EN",
            "CALSCALE:GREGORIAN",
        ),
    )
    stamp = _ical_time(now)
    for session in sessions:
        if session.ended_at is None:
            continue  # a calendar holds what happened: a running session has no end yet
        d = session.details
        summary = d.title or d.project or session.scope
        about = [f"scope: {session.scope}", f"status: {session.status.value}"]
        if session.end_reason:
            about.append(f"ended: {session.end_reason.value}")
        if session.active_seconds is not None:
            about.append(f"active: {round(session.active_seconds)} s")
        for name, value in (("project", d.project), ("tool", d.tool), ("directory", d.cwd)):
            if value:
                about.append(f"{name}: {value}")
        lines = [
            "BEGIN:VEVENT",
            f"UID:{session.id}@session-agent",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{_ical_time(session.started_at)}",
            f"DTEND:{_ical_time(session.ended_at)}",
            f"SUMMARY:{_ical_text(summary)}",
            f"DESCRIPTION:{_ical_text(chr(10).join(about))}",
        ]
        if d.tags:
            lines.append("CATEGORIES:" + ",".join(_ical_text(t) for t in d.tags))
        lines.append("END:VEVENT")
        yield from map(_fold, lines)
    yield _fold("END:VCALENDAR")


# --- Timewarrior ----------------------------------------------------------------------


def _timew_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _timewarrior(sessions: Iterable[Session]) -> Iterator[str]:
    yield "["
    first = True
    for n, session in enumerate(sessions, start=1):
        d = session.details
        interval: dict[str, object] = {"id": n, "start": _timew_time(session.started_at)}
        if session.ended_at is not None:
            interval["end"] = _timew_time(session.ended_at)
        tags = ([d.project] if d.project else []) + [t for t in d.tags if t != d.project]
        if tags:
            interval["tags"] = tags
        if d.title:
            interval["annotation"] = d.title
        yield ("" if first else ",") + "\n" + json.dumps(interval, ensure_ascii=False)
        first = False
    yield "\n]\n"

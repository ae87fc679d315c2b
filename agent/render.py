"""Sessions as text for people and as JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from agent.session import Session
from agent.timespec import format_duration, format_local

__all__ = ["session_detail", "session_table", "to_json"]


def to_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _duration(session: Session, now: datetime) -> str:
    end = session.ended_at or now
    text = format_duration(end - session.started_at)
    return text if session.ended_at else text + " so far"


def session_detail(session: Session, now: datetime) -> str:
    rows = [
        ("id", session.id),
        ("status", session.status.value),
        ("started", format_local(session.started_at)),
        ("ended", format_local(session.ended_at) if session.ended_at else "-"),
        ("duration", _duration(session, now)),
        ("last activity", format_local(session.last_activity_at)),
        ("memories", str(session.memory_count)),
    ]
    return "\n".join(f"{name + ':':<15}{value}" for name, value in rows)


def session_table(sessions: Iterable[Session], now: datetime) -> str:
    lines = [f"{'ID':<36}  {'STATUS':<9}  {'STARTED':<19}  DURATION"]
    for s in sessions:
        lines.append(
            f"{s.id:<36}  {s.status.value:<9}  {format_local(s.started_at):<19}  {_duration(s, now)}"
        )
    return "\n".join(lines)

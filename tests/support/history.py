"""A known history for the tests that read it back (reports, exports):
ended sessions at exact wall-clock times, written straight into the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.activity import Activity
from agent.details import Details
from agent.session import EndReason, Session, SessionStatus
from agent.session_id import derived_session_id

from .commands import open_manager

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: ZoneInfo = BERLIN) -> datetime:
    """A wall-clock time in ``zone``, as an aware UTC time."""
    return datetime.fromisoformat(text).replace(tzinfo=zone).astimezone(UTC)


def micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def ended(
    start: str,
    end: str,
    *,
    project: str | None = None,
    tags: tuple[str, ...] = (),
    tool: str | None = None,
    scope: str = "default",
    active: list[tuple[str, str]] | None = None,
    zone: ZoneInfo = BERLIN,
) -> Session:
    """A completed session between two wall-clock times of ``zone``;
    ``active``: its activity spans (default: none beyond its start). Its
    id has the start's time, as every session's id has."""
    began, finished = at(start, zone), at(end, zone)
    spans = tuple((micros(at(a, zone)), micros(at(b, zone))) for a, b in active or [(start, start)])
    return Session(
        id=derived_session_id(began, f"{start} {end} {project} {scope}".encode()),
        started_at=began,
        ended_at=finished,
        status=SessionStatus.COMPLETED,
        memory_count=0,
        last_activity_at=finished,
        end_reason=EndReason.CLI,
        scope=scope,
        details=Details(project=project, tags=tags, tool=tool),
        activity=Activity(900, spans),
    )


def store_sessions(data_dir: Path, *sessions: Session) -> None:
    manager = open_manager(data_dir)
    try:
        manager.store.commit(sessions)
    finally:
        manager.close()

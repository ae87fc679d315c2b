"""What ``sync status`` (and ``status``'s sync line, ``agent.render``) says: this machine's
shipping -- as which host, how many events it is behind -- and, for each
other host, its newest segment, the segments not taken in yet, and what
was passed over in its folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agent.remote_view import HostIntake
from agent.session import parse_time
from agent.store import SessionStore
from agent.sync_intake import list_hosts
from agent.sync_settings import SyncSettings
from agent.sync_ship import own_host, ship_state

__all__ = ["sync_status"]


def sync_status(
    store: SessionStore,
    sync: SyncSettings,
    now: datetime,
    ship_problem: str | None = None,
    intake_problems: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    state = ship_state(store)
    own = own_host(store, sync)
    last = store.events.last_seq
    cursor = None if state is None else state.cursor
    ship = {
        "cursor": cursor,
        "last_event": last,
        "behind": None if cursor is None else max(0, last - cursor),
        "segment": None if state is None else state.segment or None,
        "written_at": None if state is None else state.written_at,
        "problem": ship_problem,
    }
    folders, notes = list_hosts(sync, own)
    intakes = store.remote.intakes()
    hosts = []
    for folder in folders:
        intake = intakes.pop(folder.host, HostIntake())
        pending = [n for n in folder.segments if not intake.has(n)]
        hosts.append(
            _host(folder.host, intake, now)
            | {
                "folder": str(folder.path),
                "segments": len(folder.segments),
                "pending": len(pending),
                "conflict_copies": folder.conflicts,
                "stray_files": folder.strays,
                "problems": list((intake_problems or {}).get(folder.host, ())),
            }
        )
    for host, intake in sorted(intakes.items()):  # taken in before, its folder gone now
        hosts.append(_host(host, intake, now) | {"folder": None, "segments": 0, "pending": 0})
    return {
        "dir": str(sync.dir),
        "host": own,
        "omit": sorted(sync.omit),
        "ship": ship,
        "hosts": hosts,
        "notes": notes,
    }


def _host(host: str, intake: HostIntake, now: datetime) -> dict[str, Any]:
    newest = intake.newest or {}
    written = newest.get("written_at")
    age = None
    if isinstance(written, str):
        try:
            age = round(max(0.0, (now - parse_time(written)).total_seconds()), 3)
        except ValueError:
            age = None
    return {
        "host": host,
        "taken_in": intake.segments,
        "newest_segment": newest.get("segment"),
        "newest_written_at": written,
        "newest_age_seconds": age,
        "taken_at": intake.taken_at,
        "claimed_elsewhere": intake.claimed_elsewhere,
    }

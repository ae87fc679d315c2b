"""Helpers for tests and benchmarks (as ``click.testing`` is for click): not
used by the agent itself."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from agent.database import open_db
from agent.details import Details, GitState, Host
from agent.session import EndReason, Session, utc_now
from agent.session_id import derived_session_id
from agent.store import SessionStore

__all__ = ["fill_store"]


def _places() -> list[Details]:
    """What realistic sessions say of themselves: a dozen projects, each
    with its directory and branch, three tools, two tags, this host."""
    host = Host("workstation", "0" * 32)
    tools = ("nvim", "claude-code", "cli")
    places = []
    for n in range(12):
        root = f"/home/ada/src/project-{n:02d}"
        git = GitState(root, f"feature/topic-{n % 5}", None, worktree=False)
        places.append(
            Details(
                cwd=root,
                project=f"project-{n:02d}",
                git=git,
                tool=tools[n % 3],
                tags=("review", "work"),
                host=host,
            )
        )
    return places


def fill_store(
    data_dir: Path, count: int, *, batch_size: int = 20_000, spacing: timedelta = timedelta(minutes=1)
) -> None:
    """Write ``count`` completed sessions, one every ``spacing`` back from now (each
    30 s long, with a heartbeat), with realistic metadata (a project, its
    directory and branch, a tool, an external id of the tool's, two tags,
    the host), straight into the store of ``data_dir``. No daemon may run
    on it; the directory is created if missing.

    Each id carries its session's start, as a real session's does: ids made
    with ``new_session_id`` only move forward within a process, so a second
    fill going back in time would get ids bunched at "now" (packing better
    on disk than real ones, and out of start order)."""
    data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    store = SessionStore(open_db(data_dir / "db"))
    places = _places()
    try:
        now = utc_now()
        batch: list[Session] = []
        for i in range(count, 0, -1):
            began = now - spacing * i
            ended = began + timedelta(seconds=30)
            details = places[i % len(places)].replace(
                external_id=f"{i:08x}-{(i * 2654435761) % (1 << 32):08x}"
            )
            session = Session.begin(began, details=details).with_activity(began + timedelta(seconds=20))
            session = session.replace(id=derived_session_id(began, b"fill %d" % i))
            batch.append(session.completed(EndReason.CLI, ended))
            if len(batch) == batch_size:
                store.commit(tuple(batch))
                batch.clear()
        store.commit(tuple(batch))
    finally:
        store.close()

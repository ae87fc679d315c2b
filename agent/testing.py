"""Helpers for tests and benchmarks (as ``click.testing`` is for click): not
used by the agent itself."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from agent.database import open_db
from agent.session import EndReason, Session, utc_now
from agent.store import SessionStore

__all__ = ["fill_store"]


def fill_store(data_dir: Path, count: int, *, batch_size: int = 20_000) -> None:
    """Write ``count`` completed sessions, one a minute back from now (each
    30 s long), straight into the store of ``data_dir``. No daemon may run
    on it; the directory is created if missing."""
    data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    store = SessionStore(open_db(data_dir / "db"))
    try:
        now = utc_now()
        batch: list[Session] = []
        for i in range(count, 0, -1):
            began = now - timedelta(minutes=i)
            ended = began + timedelta(seconds=30)
            batch.append(Session.begin(began).completed(EndReason.CLI, ended))
            if len(batch) == batch_size:
                store.commit(tuple(batch))
                batch.clear()
        store.commit(tuple(batch))
    finally:
        store.close()

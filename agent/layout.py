"""The data dir's layout: the name of everything in it, spelled once.

::

    <data dir>/
      db/                     the store (agent.store, agent.database)
      db.lock                 held by whoever has the store open
      current_session         the default scope's current file
      scopes/<name>/current_session   another scope's
      snapshots/<UTC time>/   checkpoints of the store (agent.snapshots)
      config.toml             the user's settings (agent.config)
      daemon.pid              the running daemon's instance lock (agent.instance)

Constants and path arithmetic only: the click-free fast path imports it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # the fast path imports this module: no typing, no pathlib
if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CONFIG_NAME",
    "CURRENT_FILE_NAME",
    "DB_NAME",
    "DEFAULT_SCOPE",
    "PIDFILE_NAME",
    "SCOPES_DIR",
    "SNAPSHOTS_DIR",
    "scope_dir",
]

DB_NAME = "db"
CURRENT_FILE_NAME = "current_session"
SCOPES_DIR = "scopes"
SNAPSHOTS_DIR = "snapshots"
CONFIG_NAME = "config.toml"
PIDFILE_NAME = "daemon.pid"
DEFAULT_SCOPE = "default"  # the scope whose file is the data dir's own (agent.scope)


def scope_dir(data_dir: Path, scope: str) -> Path:
    """The directory of ``scope``'s current file."""
    return data_dir if scope == DEFAULT_SCOPE else data_dir / SCOPES_DIR / scope

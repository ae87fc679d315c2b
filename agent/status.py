"""The ``status`` report, assembled in one place.

The daemon fills in its own part (pid, resources, socket); an embedded
command says that none runs. The sessions part -- the default scope's
session as ``current`` (as before scopes) and every scope's under
``scopes`` -- and the paths are the same whoever answers. The CLI narrows
it to one scope (``for_scope``) and renders it (``agent.render``).
"""

from __future__ import annotations

from typing import Any

from agent.changes import ActiveSession
from agent.clock import Clock
from agent.layout import DEFAULT_SCOPE
from agent.paths import Paths

__all__ = ["NOT_RUNNING", "for_scope", "status_report"]

NOT_RUNNING: dict[str, Any] = {"running": False, "pid": None}


def status_report(
    daemon: dict[str, Any],
    paths: Paths,
    actives: dict[str, ActiveSession],
    clock: Clock,
    **extra: Any,
) -> dict[str, Any]:
    """The report: ``daemon``'s part, where the files are, the active
    sessions (``actives``, the default scope first) with the seconds until
    their idle timeouts could end them; ``extra`` keys after ``daemon``."""
    default = actives.get(DEFAULT_SCOPE)
    return {
        "daemon": daemon,
        **extra,
        "paths": paths.describe(),
        "current": default.session.to_dict() if default else None,
        "idle_ends_in_seconds": default.seconds_to_idle_end(clock) if default else None,
        "scopes": [
            {
                "scope": scope,
                "current": state.session.to_dict(),
                "idle_ends_in_seconds": state.seconds_to_idle_end(clock),
            }
            for scope, state in actives.items()
        ],
    }


def for_scope(report: dict[str, Any], scope: str, paths: Paths) -> dict[str, Any]:
    """``report`` with ``scope``'s session as ``current`` (the report's own
    is the default scope's) and its current file among the paths."""
    if scope == DEFAULT_SCOPE:
        return report
    entries: list[dict[str, Any]] = report.get("scopes") or []
    entry = next((e for e in entries if e.get("scope") == scope), {})
    narrowed = report | {
        "current": entry.get("current"),
        "idle_ends_in_seconds": entry.get("idle_ends_in_seconds"),
    }
    narrowed["paths"] = {**report.get("paths", {}), "current_file": str(paths.current_file_of(scope))}
    return narrowed

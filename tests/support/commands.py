"""What tests call: the installed program, a clean environment, a manager
on a data dir, and small steps many tests share."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from agent import SessionManager, open_db
from agent.environment import FAULTS_ENV
from agent.lifecycle import Tracking
from agent.scope import DEFAULT_SCOPE
from agent.session import Session
from agent.store_keys import ScopeKeys

__all__ = [
    "CLI_TIMEOUT",
    "SESSION_AGENT",
    "SLEEP",
    "Cli",
    "backdate_active",
    "clean_env",
    "open_manager",
    "start_session",
]

SESSION_AGENT = Path(sys.executable).with_name("session-agent")
SLEEP = shutil.which("sleep") or "/bin/sleep"
CLI_TIMEOUT = 30

Cli = Callable[..., subprocess.CompletedProcess[str]]


def open_manager(data_dir: Path) -> SessionManager:
    return SessionManager(open_db(data_dir / "db"), data_dir)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose home and XDG dirs are in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AGENT_")}
    env.pop(FAULTS_ENV, None)
    home = tmp_path / "home"
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_RUNTIME_DIR=str(tmp_path / "no-runtime-dir"),
        TZ="UTC",
    )
    env.update(extra)
    return env


def start_session(cli: Cli) -> str:
    done = cli("start")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def backdate_active(manager: SessionManager, seconds: float, scope: str = DEFAULT_SCOPE) -> Session:
    """Move the active session's start and last activity into the past, so a
    heartbeat test needs no waiting for the one-second rate limit."""
    active = manager.reconcile(scope)
    assert active is not None
    earlier = active.started_at - timedelta(seconds=seconds)
    moved = active.replace(started_at=earlier, last_activity_at=earlier)
    state = manager.active_state(scope)
    assert state is not None
    tracking = state.tracking
    assert tracking is not None
    then = Tracking(
        tracking.session_id,
        tracking.boot_id,
        tracking.activity_boot - seconds,
        tracking.owner_ticks,
        tracking.owner_seen_at,
    )
    manager.store.commit((moved,), {ScopeKeys(scope).tracking: then.encode()})
    return moved

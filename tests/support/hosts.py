"""Finding and watching the real programs the integrations are tested with:
Debian's (editors, shells, git) and the npm packages scripts/test installs
(the AI hosts), and what their tests share."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from agent.control.client import DaemonClient

from .commands import CLI_TIMEOUT

__all__ = [
    "NPM_TOOLS",
    "alive",
    "completed_in_scope",
    "git_repository",
    "npm_program",
    "program",
    "read_or_empty",
]

ROOT = Path(__file__).resolve().parents[2]
# The npm packages scripts/test installs (the real AI hosts).
NPM_TOOLS = Path(os.environ.get("SESSION_AGENT_TEST_NPM_TOOLS", ROOT / ".venv" / "npm-tools"))


def program(*names: str) -> str:
    """The first of ``names`` on PATH (a Debian package's program)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(f"{names[0]} is missing: scripts/test installs it (Debian packages)")


def npm_program(name: str) -> str:
    path = NPM_TOOLS / "node_modules" / ".bin" / name
    if not path.exists():
        raise AssertionError(f"{name} is missing from {NPM_TOOLS}: scripts/test installs it (npm)")
    return str(path)


def git_repository(where: Path, branch: str) -> None:
    subprocess.run([program("git"), "init", "-q", "-b", branch, str(where)], check=True, timeout=CLI_TIMEOUT)


def read_or_empty(path: Path) -> str:
    """A file's text, or "" where it is missing or not text (yet)."""
    try:
        return path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def completed_in_scope(client: DaemonClient, scope: str) -> list[dict[str, Any]]:
    """The scope's completed sessions, newest first (a host's conversation)."""
    listed = client.request("list", limit=10, scope=scope)["sessions"]
    return [s for s in listed if s["status"] == "completed"]

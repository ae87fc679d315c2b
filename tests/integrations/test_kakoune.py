"""Kakoune (Debian's ``kakoune``) with the block ``session-agent integrate
kakoune`` puts in its kakrc, run in a real terminal (a tmux pane) and driven
by keys: KakBegin starts a session bound to the Kakoune server, a write is
a heartbeat, ``:q`` ends it, ``kill -9`` abandons it."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.control.client import DaemonClient

from ..support.commands import SESSION_AGENT, clean_env
from ..support.daemon_process import connected, run_daemon, wait_for
from ..support.hosts import git_repository, program, read_or_empty

KAK_TIMEOUT = 30


class Terminal:
    """A tmux server of the test's own, each Kakoune in a window of it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.tmux = [program("tmux"), "-L", f"kak-{uuid.uuid4().hex[:12]}", "-f", "/dev/null"]

    def open(self, name: str, folder: Path) -> None:
        """Kakoune on a file in ``folder``, in a window called ``name``."""
        kak = f"exec {program('kak')} notes.txt"
        verb = ["new-window"] if self.windows() else ["new-session", "-d", "-x", "100", "-y", "20"]
        self._tmux(*verb, "-n", name, "-c", str(folder), kak)

    def keys(self, name: str, *keys: str) -> None:
        self._tmux("send-keys", "-t", f":={name}", *keys)

    def windows(self) -> list[str]:
        done = subprocess.run(
            [*self.tmux, "list-windows", "-F", "#W"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.split() if done.returncode == 0 else []

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], env=self.env, capture_output=True, check=False)

    def _tmux(self, *args: str) -> None:
        subprocess.run(
            [*self.tmux, *args], env=self.env, check=True, capture_output=True, timeout=KAK_TIMEOUT
        )


@contextmanager
def _kakoune(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> Iterator[tuple[DaemonClient, Terminal, Path]]:
    """A daemon, the kakrc block in place (a user config of the test's own),
    and a terminal to open Kakounes in: (client, terminal, project)."""
    project = tmp_path / "webshop"
    project.mkdir()
    git_repository(project, branch="checkout-flow")
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir), XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("TMUX", None)
    done = subprocess.run(
        [str(SESSION_AGENT), "integrate", "kakoune"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "config" / "kak" / "kakrc").exists()
    terminal = Terminal(env)
    with run_daemon(tmp_path, data_dir, runtime_dir), connected(data_dir, runtime_dir) as client:
        try:
            yield client, terminal, project
        finally:
            terminal.close()


def _sessions(client: DaemonClient, data_dir: Path) -> dict[int, dict[str, Any]]:
    """The active Kakoune sessions, by the pid their scope is named after."""
    found = {}
    for current in (data_dir / "scopes").glob("kak-*/current_session"):
        sid = read_or_empty(current).strip()
        if len(sid) == 36:
            found[int(current.parent.name.removeprefix("kak-"))] = client.request("get", id=sid)
    return found


def _get(client: DaemonClient, sid: str) -> dict[str, Any]:
    found: dict[str, Any] = client.request("get", id=sid)
    return found


def test_kakoune_starts_heartbeats_and_ends_a_session(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    with _kakoune(tmp_path, data_dir, runtime_dir) as (client, terminal, project):
        terminal.open("one", project)
        wait_for(lambda: len(_sessions(client, data_dir)) == 1, KAK_TIMEOUT)
        [(pid, session)] = _sessions(client, data_dir).items()
        assert (session["scope"], session["owner_pid"]) == (f"kak-{pid}", pid)
        assert (session["tool"], session["cwd"], session["project"]) == ("kakoune", str(project), "webshop")
        assert session["git"]["branch"] == "checkout-flow"
        started = datetime.fromisoformat(session["started_at"])
        # A heartbeat counts once a second has passed since the start.
        wait_for(lambda: datetime.now(started.tzinfo) > started + timedelta(seconds=1.1), timeout=5)
        terminal.keys("one", ":write", "Enter")
        wait_for(
            lambda: _get(client, session["id"])["last_activity_at"] != session["started_at"], KAK_TIMEOUT
        )
        assert (project / "notes.txt").exists()
        terminal.keys("one", ":q", "Enter")
        wait_for(lambda: _get(client, session["id"])["status"] == "completed", KAK_TIMEOUT)
        assert _get(client, session["id"])["end_reason"] == "file"


def test_a_kakoune_killed_ends_its_session_and_its_neighbour_goes_on(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    with _kakoune(tmp_path, data_dir, runtime_dir) as (client, terminal, project):
        terminal.open("one", project)
        terminal.open("two", project)
        wait_for(lambda: len(_sessions(client, data_dir)) == 2, KAK_TIMEOUT)
        sessions = _sessions(client, data_dir)
        killed, survivor = sorted(sessions)
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: _get(client, sessions[killed]["id"])["status"] == "abandoned", KAK_TIMEOUT)
        assert _get(client, sessions[killed]["id"])["end_reason"] == "owner_exited"
        assert _get(client, sessions[survivor]["id"])["status"] == "active"
        for window in terminal.windows():
            terminal.keys(window, ":q", "Enter")
        wait_for(lambda: _get(client, sessions[survivor]["id"])["status"] == "completed", KAK_TIMEOUT)

"""What only a daemon watching the current files does: heartbeats by touch,
storms and bursts of edits, its own writes, long loops. (Each row of the
table, applied by the daemon and by a command alike, is in
``test_file_protocol.py``.)

No command runs between the edit and the check of its effect (``current``
would apply the edit itself): the tests wait for what the daemon does to
the file, for its log, or ask with ``show``, which reads the store without
looking at the file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from ..support.commands import Cli, start_session
from ..support.daemon_process import DaemonProcess, run_daemon, wait_for

UUID_LINE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n$")


@pytest.fixture
def daemon(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> Iterator[DaemonProcess]:
    with run_daemon(tmp_path, data_dir, runtime_dir) as running:
        yield running


@pytest.fixture
def current(data_dir: Path) -> Path:
    return data_dir / "current_session"


def _show(cli: Cli, sid: str) -> dict[str, object]:
    done = cli("show", sid, "--json")
    assert done.returncode == 0, done.stderr
    obj: dict[str, object] = json.loads(done.stdout)
    return obj


def _sessions(cli: Cli) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = json.loads(cli("list", "--json", "--limit", "0").stdout)
    return listed


def _content(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return None


def _holds_an_id(path: Path) -> bool:
    return bool(UUID_LINE.match(_content(path) or ""))


@pytest.mark.parametrize("edit", ["touch", "rewrite"])
def test_a_touch_or_rewrite_of_the_id_is_a_heartbeat(
    daemon: DaemonProcess, cli: Cli, current: Path, edit: str
) -> None:
    sid = start_session(cli)
    started = datetime.fromisoformat(str(_show(cli, sid)["started_at"]))
    # Heartbeats are recorded at most once a second: let one second pass.
    wait_for(lambda: time.time() - started.timestamp() > 1.1, timeout=3)
    if edit == "touch":
        os.utime(current)
    else:
        current.write_text(sid.upper())

    def recorded() -> bool:
        return datetime.fromisoformat(str(_show(cli, sid)["last_activity_at"])) > started

    wait_for(recorded, timeout=5)
    assert current.read_text() == f"{sid}\n"
    assert _show(cli, sid)["status"] == "active"


def test_a_storm_of_touches_is_not_a_storm_of_writes(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, current: Path
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir, debug=True) as daemon:
        sid = start_session(cli)
        began = time.monotonic()
        touches = 0
        while time.monotonic() - began < 2.5:
            os.utime(current)
            touches += 1
        lasted = time.monotonic() - began
        daemon.send(signal.SIGHUP)  # the last burst is looked at before this is logged
        wait_for(lambda: "received SIGHUP" in daemon.log())
        recorded = daemon.log().count(f"heartbeat recorded for session {sid}")
        assert touches > 1000
        assert 1 <= recorded <= int(lasted) + 1  # at most one durable write a second
        assert _show(cli, sid)["status"] == "active"


def test_a_burst_of_edits_settles_on_the_last_one(daemon: DaemonProcess, cli: Cli, current: Path) -> None:
    for i in range(60):
        current.write_text("start\n" if i % 2 else "end\n")
    current.write_text("start\n")
    wait_for(lambda: _holds_an_id(current))
    sid = current.read_text().strip()
    daemon.send(signal.SIGHUP)
    wait_for(lambda: daemon.log().count("received SIGHUP") == 1)
    active = [s["id"] for s in _sessions(cli) if s["status"] == "active"]
    assert active == [sid]


def test_the_daemons_own_writes_never_trigger_actions(daemon: DaemonProcess, cli: Cli, current: Path) -> None:
    ids = []
    for _ in range(10):
        ids.append(start_session(cli))
        assert cli("end").returncode == 0
    sid = start_session(cli)
    # Let the watcher see every one of those writes (SIGHUP is applied in
    # order with the events already queued) before looking at the log.
    daemon.send(signal.SIGHUP)
    wait_for(lambda: "received SIGHUP" in daemon.log())
    time_of_check = daemon.log()
    assert "current file says" not in time_of_check
    assert "ignored an edit" not in time_of_check
    sessions = _sessions(cli)
    assert [s["id"] for s in sessions] == [sid, *reversed(ids)]
    assert all(s["status"] == "completed" for s in sessions[1:])


@pytest.mark.parametrize(
    "rounds", [40, pytest.param(1000, marks=[pytest.mark.slow, pytest.mark.timeout(900)])], ids=["40", "1000"]
)
def test_start_end_loop_against_the_daemon(
    daemon: DaemonProcess, cli: Cli, current: Path, rounds: int
) -> None:
    seen = set()
    for _ in range(rounds):
        current.write_text("start\n")
        wait_for(lambda: _holds_an_id(current), timeout=5)
        seen.add(current.read_text())
        current.write_text("end\n")
        wait_for(lambda: not current.exists(), timeout=5)
    assert len(seen) == rounds
    sessions = _sessions(cli)
    assert len(sessions) == rounds
    assert all(s["status"] == "completed" for s in sessions)

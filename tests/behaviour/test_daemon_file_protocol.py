"""Each row of the file-protocol table with the daemon reacting by itself.

No command runs between the edit and the check of its effect (``current``
would apply the edit itself): the tests wait for what the daemon does to
the file, for its ``STATUS=`` notifications, or ask with ``show``, which
reads the store without looking at the file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
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


def test_deleting_the_file_completes_the_session(daemon: DaemonProcess, cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.unlink()
    wait_for(lambda: _show(cli, sid)["status"] != "active", timeout=5)  # (STATUS= would match start-up's)
    assert _show(cli, sid)["status"] == "completed"
    assert not current.exists()


@pytest.mark.parametrize("content", ["", "  \n", "end", " End\n"], ids=["empty", "blank", "end", "End"])
def test_empty_blank_or_end_completes_the_session(
    daemon: DaemonProcess, cli: Cli, current: Path, content: str
) -> None:
    sid = start_session(cli)
    current.write_text(content)
    wait_for(lambda: not current.exists())
    assert _show(cli, sid)["status"] == "completed"


def test_abandon_abandons_the_session(daemon: DaemonProcess, cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.write_text("ABANDON\n")
    wait_for(lambda: not current.exists())
    assert _show(cli, sid)["status"] == "abandoned"


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic-rename", "in-place"])
def test_start_starts_a_session_and_the_file_gets_its_id(
    daemon: DaemonProcess, cli: Cli, current: Path, atomic: bool
) -> None:
    if atomic:
        temp = current.with_name("editor.tmp")
        temp.write_text("start\n")
        temp.rename(current)
    else:
        current.write_text("start\n")
    wait_for(lambda: _holds_an_id(current))
    sid = current.read_text().strip()
    assert _show(cli, sid)["status"] == "active"


def test_start_while_active_keeps_the_session(daemon: DaemonProcess, cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.write_text("start")
    wait_for(lambda: current.read_text() == f"{sid}\n")
    wait_for(lambda: "is already active" in daemon.log())
    assert [s["id"] for s in _sessions(cli)] == [sid]


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


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"garbage\n", "neither a keyword nor a session id"),
        (b"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\n", "is not the active session"),
        (b"\xff\xfe\xfd", "not valid UTF-8"),
        (b"x" * 5000, "more than 4096 bytes"),
    ],
    ids=["garbage", "unknown-id", "invalid-utf8", "5000-bytes"],
)
@pytest.mark.parametrize("active", [True, False], ids=["active", "none-active"])
def test_anything_else_is_rejected_logged_and_the_file_restored(
    daemon: DaemonProcess, cli: Cli, current: Path, content: bytes, reason: str, active: bool
) -> None:
    sid = start_session(cli) if active else None
    current.write_bytes(content)
    if sid:
        wait_for(lambda: current.read_text(errors="replace") == f"{sid}\n")
    else:
        wait_for(lambda: not current.exists())
    wait_for(lambda: reason in daemon.log())
    assert [s["id"] for s in _sessions(cli) if s["status"] == "active"] == ([sid] if sid else [])


def test_the_id_of_an_ended_session_is_rejected(daemon: DaemonProcess, cli: Cli, current: Path) -> None:
    old = start_session(cli)
    assert cli("end").returncode == 0
    new = start_session(cli)
    current.write_text(old)
    wait_for(lambda: current.read_text() == f"{new}\n")
    wait_for(lambda: f"{old} is not the active session" in daemon.log())
    assert _show(cli, old)["status"] == "completed"


def test_a_symlink_is_replaced_and_never_followed(
    daemon: DaemonProcess, cli: Cli, current: Path, tmp_path: Path
) -> None:
    sid = start_session(cli)
    victim = tmp_path / "victim"
    victim.write_text("end\n")
    current.unlink()
    current.symlink_to(victim)
    wait_for(lambda: not current.is_symlink() and current.is_file())
    assert current.read_text() == f"{sid}\n"
    assert victim.read_text() == "end\n"
    assert "symlink" in daemon.log()


def test_a_fifo_is_replaced_without_blocking(daemon: DaemonProcess, cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.unlink()
    os.mkfifo(current)
    wait_for(lambda: current.is_file() and not current.is_fifo())
    assert current.read_text() == f"{sid}\n"
    assert cli("status").returncode == 0  # the daemon did not block on the FIFO


def test_a_socket_is_replaced(daemon: DaemonProcess, cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(current))
        wait_for(current.is_file)
    assert current.read_text() == f"{sid}\n"


def test_a_directory_is_reported_and_left_alone(daemon: DaemonProcess, cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.unlink()
    current.mkdir()
    (current / "keep").write_text("x")
    wait_for(lambda: "is a directory; remove it" in daemon.log())
    assert (current / "keep").read_text() == "x"
    assert _show(cli, sid)["status"] == "active"
    (current / "keep").unlink()
    current.rmdir()
    # Now the file is simply missing, after we had written it: a deletion.
    # (Not waited for on STATUS=: the start-up's "no active session" matches too.)
    wait_for(lambda: _show(cli, sid)["status"] != "active", timeout=5)
    assert _show(cli, sid)["status"] == "completed"


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

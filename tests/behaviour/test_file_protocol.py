"""Each row of the file-protocol table, applied by the CLI (embedded) after an
external edit, and the crash-repair rule with real crashes injected."""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.faults import CRASH_EXIT_CODE

from ..support.commands import Cli, backdate_active, open_manager, start_session


@pytest.fixture
def current(data_dir: Path) -> Path:
    return data_dir / "current_session"


def _status_of(cli: Cli, sid: str) -> str:
    done = cli("show", sid, "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["status"])


def _active_ids(cli: Cli) -> list[str]:
    return [s["id"] for s in json.loads(cli("list", "--json", "--status", "active", "--limit", "0").stdout)]


def test_deleting_the_file_completes_the_session(cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.unlink()
    assert cli("current").returncode == 1
    assert _status_of(cli, sid) == "completed"
    assert not current.exists()


@pytest.mark.parametrize("content", ["", "   \n", "end", " END\n"])
def test_empty_whitespace_or_end_completes_the_session(cli: Cli, current: Path, content: str) -> None:
    sid = start_session(cli)
    current.write_text(content)
    assert cli("current").returncode == 1
    assert _status_of(cli, sid) == "completed"
    assert not current.exists()


def test_abandon_abandons_the_session(cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.write_text("Abandon\n")
    assert cli("current").returncode == 1
    assert _status_of(cli, sid) == "abandoned"
    assert not current.exists()


def test_start_starts_a_session_and_the_file_holds_its_id(cli: Cli, current: Path) -> None:
    current.write_text("start\n")
    done = cli("current")
    assert done.returncode == 0
    sid = done.stdout.strip()
    assert current.read_text() == f"{sid}\n"
    assert _status_of(cli, sid) == "active"


def test_start_while_active_keeps_the_session_and_restores_its_id(cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.write_text("START")
    assert cli("current").stdout == f"{sid}\n"
    assert current.read_text() == f"{sid}\n"
    assert _active_ids(cli) == [sid]


@pytest.mark.parametrize("edit", ["touch", "rewrite"])
def test_a_touch_or_a_rewrite_of_the_active_id_is_a_heartbeat(
    cli: Cli, current: Path, data_dir: Path, edit: str
) -> None:
    sid = start_session(cli)
    with open_manager(data_dir) as manager:
        before = backdate_active(manager, 3600)
    if edit == "touch":
        os.utime(current)
    else:
        current.write_text(sid.upper())
    obj = json.loads(cli("show", sid, "--json").stdout)
    after = datetime.fromisoformat(obj["last_activity_at"])
    assert after > before.last_activity_at + timedelta(minutes=59)
    assert obj["status"] == "active"
    assert current.read_text() == f"{sid}\n"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"garbage\n", "neither a keyword nor a session id"),
        (b"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\n", "is not the active session"),
        (b"\xff\xfe\xfd", "not valid UTF-8"),
        (os.urandom(100_000), "more than 4096 bytes"),
    ],
    ids=["garbage", "unknown-id", "invalid-utf8", "100KB-junk"],
)
@pytest.mark.parametrize("active", [True, False], ids=["active", "none-active"])
def test_anything_else_is_rejected_and_the_file_restored(
    cli: Cli, current: Path, content: bytes, reason: str, active: bool
) -> None:
    sid = start_session(cli) if active else None
    current.write_bytes(content)
    done = cli("current")
    assert reason in done.stderr
    assert done.stderr.count("\n") <= 2
    if sid:
        assert (done.returncode, done.stdout) == (0, f"{sid}\n")
        assert current.read_text() == f"{sid}\n"
        assert _status_of(cli, sid) == "active"
    else:
        assert done.returncode == 1
        assert not current.exists()
        assert _active_ids(cli) == []


def test_the_id_of_an_ended_session_is_rejected(cli: Cli, current: Path) -> None:
    old = start_session(cli)
    cli("end")
    new = start_session(cli)
    current.write_text(old)
    done = cli("current")
    assert done.stdout == f"{new}\n"
    assert "is not the active session" in done.stderr
    assert _status_of(cli, old) == "completed"
    assert current.read_text() == f"{new}\n"


def test_a_symlink_is_replaced_by_the_truth_and_its_target_untouched(
    cli: Cli, current: Path, tmp_path: Path
) -> None:
    sid = start_session(cli)
    victim = tmp_path / "victim"
    victim.write_text("end\n")
    current.unlink()
    current.symlink_to(victim)
    done = cli("current")
    assert (done.returncode, done.stdout) == (0, f"{sid}\n")
    assert "symlink" in done.stderr
    assert not current.is_symlink()
    assert current.read_text() == f"{sid}\n"
    assert victim.read_text() == "end\n"


def test_a_fifo_is_replaced_without_blocking(cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.unlink()
    os.mkfifo(current)
    done = cli("current")  # the runner's timeout fails this test if the CLI blocks
    assert (done.returncode, done.stdout) == (0, f"{sid}\n")
    assert "FIFO" in done.stderr
    assert current.read_text() == f"{sid}\n"


def test_a_socket_is_replaced(cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(current))
        done = cli("current")
    assert (done.returncode, done.stdout) == (0, f"{sid}\n")
    assert current.read_text() == f"{sid}\n"


def test_a_directory_is_reported_and_left_alone(cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.unlink()
    current.mkdir()
    (current / "keep").write_text("x")
    done = cli("current")
    assert (done.returncode, done.stdout) == (0, f"{sid}\n")
    assert "is a directory; remove it" in done.stderr
    assert (current / "keep").read_text() == "x"
    assert _status_of(cli, sid) == "active"
    assert cli("end").returncode == 0
    assert _status_of(cli, sid) == "completed"
    current.joinpath("keep").unlink()
    current.rmdir()
    assert cli("start").returncode == 0
    assert current.is_file()


# --- crash repair: a missing file ends the session only if we finished writing it


def test_a_crash_between_store_write_and_file_write_is_repaired_on_start(cli: Cli, current: Path) -> None:
    crashed = cli("start", env={"SESSION_AGENT_FAULTS": "manager.after_store=crash"})
    assert crashed.returncode == CRASH_EXIT_CODE
    assert not current.exists()  # the store has the session, the file never came
    done = cli("current")
    assert done.returncode == 0
    sid = done.stdout.strip()
    assert current.read_text() == f"{sid}\n"
    assert _status_of(cli, sid) == "active"


@pytest.mark.parametrize("point", ["file.before_fsync", "file.before_rename", "manager.after_file"])
def test_a_crash_inside_the_file_write_is_repaired(
    cli: Cli, current: Path, data_dir: Path, point: str
) -> None:
    assert cli("start", env={"SESSION_AGENT_FAULTS": f"{point}=crash"}).returncode == CRASH_EXIT_CODE
    done = cli("current")
    assert done.returncode == 0
    sid = done.stdout.strip()
    assert current.read_text() == f"{sid}\n"
    left = sorted(p.name for p in data_dir.iterdir())
    assert left == ["current_session", "db", "db.lock", "snapshots"]  # no temporary file left
    # And once repaired, deleting the file is again a user's "end".
    current.unlink()
    assert cli("current").returncode == 1
    assert _status_of(cli, sid) == "completed"


def test_a_crash_after_ending_in_the_store_removes_the_stale_file(cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    assert cli("end", env={"SESSION_AGENT_FAULTS": "manager.after_store=crash"}).returncode == CRASH_EXIT_CODE
    assert current.read_text() == f"{sid}\n"  # stale: the store says completed
    assert cli("current").returncode == 1
    assert not current.exists()
    assert _status_of(cli, sid) == "completed"


def test_a_crash_while_applying_a_start_edit_starts_exactly_one_session(cli: Cli, current: Path) -> None:
    current.write_text("start\n")
    crashed = cli("current", env={"SESSION_AGENT_FAULTS": "manager.after_store=crash"})
    assert crashed.returncode == CRASH_EXIT_CODE
    assert current.read_text() == "start\n"  # applied in the store, file not yet rewritten
    done = cli("current")
    sid = done.stdout.strip()
    assert current.read_text() == f"{sid}\n"
    assert _active_ids(cli) == [sid]
    assert len(json.loads(cli("list", "--json").stdout)) == 1


def test_an_io_error_on_the_file_is_exit_5_and_the_session_is_repaired_later(cli: Cli, current: Path) -> None:
    failed = cli("start", env={"SESSION_AGENT_FAULTS": "file.before_rename=enospc"})
    assert failed.returncode == 5
    assert "No space left on device" in failed.stderr
    done = cli("current")
    assert done.returncode == 0
    assert current.read_text() == done.stdout


def test_an_io_error_on_the_store_is_exit_5_and_changes_nothing(cli: Cli, current: Path) -> None:
    failed = cli("start", env={"SESSION_AGENT_FAULTS": "store.commit=eio"})
    assert failed.returncode == 5
    assert "Input/output error" in failed.stderr
    assert cli("current").returncode == 1
    assert not current.exists()
    assert json.loads(cli("list", "--json").stdout) == []

"""Each row of the file-protocol table, applied both ways it is in use: by a
command without a daemon (embedded: ``current`` applies the edit as it
answers) and by the daemon by itself, no command run between the edit and
the check of its effect. Then what only one of them does: crash repair
(embedded, with real crashes injected) and what a watching daemon does with
bursts of edits (``test_file_watch.py``)."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.faults import CRASH_EXIT_CODE

from ..support.commands import Cli, backdate_active, open_manager, start_session
from ..support.daemon_process import DaemonProcess, run_daemon, wait_for

UUID_LINE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n$")


class Applier:
    """Who applies an edit of the current file: a command, or the daemon."""

    def __init__(self, cli: Cli, daemon: DaemonProcess | None) -> None:
        self.cli = cli
        self.daemon = daemon

    def applied(
        self, done: Callable[[], object], saying: str | None = None, *, logged: str | None = None
    ) -> None:
        """Have the edit applied, until ``done`` holds and (if given) ``saying``
        was said about it: on the command's stderr, or in the daemon's log.
        ``logged``: a line at info level, which the daemon's log has and a
        command does not print."""
        if self.daemon is None:
            told = self.cli("current")
            assert done()
            if saying is not None:
                assert saying in told.stderr
                assert told.stderr.count("\n") <= 2  # one line about it, no more
            return
        wait_for(done)
        for line in (saying, logged):
            if line is not None:
                self._wait_for_line(self.daemon, line)

    @staticmethod
    def _wait_for_line(daemon: DaemonProcess, line: str) -> None:
        wait_for(lambda: line in daemon.log())


@pytest.fixture(params=["embedded", "daemon"])
def applier(
    request: pytest.FixtureRequest, tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> Iterator[Applier]:
    if request.param == "embedded":
        yield Applier(cli, None)
        return
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        yield Applier(cli, daemon)


@pytest.fixture
def current(data_dir: Path) -> Path:
    return data_dir / "current_session"


def _put(current: Path, content: bytes) -> None:
    """Replace the file in one step (written beside it, renamed over it): an
    in-place write is an empty file first -- an end -- for a reader that
    comes between its truncation and its write, as a loaded machine allows."""
    beside = current.with_name(".edit-test")
    beside.write_bytes(content)
    beside.rename(current)


def _status_of(cli: Cli, sid: str) -> str:
    done = cli("show", sid, "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["status"])


def _active_ids(cli: Cli) -> list[str]:
    return [s["id"] for s in json.loads(cli("list", "--json", "--status", "active", "--limit", "0").stdout)]


def _holds_an_id(path: Path) -> bool:
    try:
        return bool(UUID_LINE.match(path.read_text(errors="replace")))
    except (FileNotFoundError, IsADirectoryError):
        return False


# --- the table, both ways ------------------------------------------------------------


def test_deleting_the_file_completes_the_session(applier: Applier, cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.unlink()
    applier.applied(lambda: _status_of(cli, sid) == "completed")
    assert not current.exists()


@pytest.mark.parametrize("content", ["", "   \n", "end", " END\n"], ids=["empty", "blank", "end", "END"])
def test_empty_blank_or_end_completes_the_session(
    applier: Applier, cli: Cli, current: Path, content: str
) -> None:
    sid = start_session(cli)
    current.write_text(content)
    applier.applied(lambda: not current.exists())
    assert _status_of(cli, sid) == "completed"


def test_abandon_abandons_the_session(applier: Applier, cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.write_text("Abandon\n")
    applier.applied(lambda: not current.exists())
    assert _status_of(cli, sid) == "abandoned"


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic-rename", "in-place"])
def test_start_starts_a_session_and_the_file_gets_its_id(
    applier: Applier, cli: Cli, current: Path, atomic: bool
) -> None:
    if atomic:
        temp = current.with_name("editor.tmp")
        temp.write_text("start\n")
        temp.rename(current)
    else:
        current.write_text("start\n")
    applier.applied(lambda: _holds_an_id(current))
    sid = current.read_text().strip()
    assert _status_of(cli, sid) == "active"
    assert _active_ids(cli) == [sid]


def test_start_while_active_keeps_the_session_and_restores_its_id(
    applier: Applier, cli: Cli, current: Path
) -> None:
    sid = start_session(cli)
    _put(current, b"START")
    applier.applied(lambda: current.read_text() == f"{sid}\n", logged="is already active")
    assert _active_ids(cli) == [sid]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"garbage\n", "neither a keyword nor a session id"),
        (b"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\n", "is not the active session"),
        (b"\xff\xfe\xfd", "not valid UTF-8"),
        (b"x" * 5000, "more than 4096 bytes"),
        (os.urandom(100_000), "more than 4096 bytes"),
    ],
    ids=["garbage", "unknown-id", "invalid-utf8", "5000-bytes", "100KB-junk"],
)
@pytest.mark.parametrize("active", [True, False], ids=["active", "none-active"])
def test_anything_else_is_rejected_said_and_the_file_restored(
    applier: Applier, cli: Cli, current: Path, content: bytes, reason: str, active: bool
) -> None:
    sid = start_session(cli) if active else None
    _put(current, content)
    if sid:
        applier.applied(lambda: current.read_text(errors="replace") == f"{sid}\n", saying=reason)
        assert _status_of(cli, sid) == "active"
    else:
        applier.applied(lambda: not current.exists(), saying=reason)
    assert _active_ids(cli) == ([sid] if sid else [])


def test_the_id_of_an_ended_session_is_rejected(applier: Applier, cli: Cli, current: Path) -> None:
    old = start_session(cli)
    assert cli("end").returncode == 0
    new = start_session(cli)
    current.write_text(old)
    applier.applied(lambda: current.read_text() == f"{new}\n", saying=f"{old} is not the active session")
    assert _status_of(cli, old) == "completed"


def test_a_symlink_is_replaced_by_the_truth_and_never_followed(
    applier: Applier, cli: Cli, current: Path, tmp_path: Path
) -> None:
    sid = start_session(cli)
    victim = tmp_path / "victim"
    victim.write_text("end\n")
    current.unlink()
    current.symlink_to(victim)
    applier.applied(lambda: not current.is_symlink() and current.is_file(), saying="symlink")
    assert current.read_text() == f"{sid}\n"
    assert victim.read_text() == "end\n"


def test_a_fifo_is_replaced_without_blocking(applier: Applier, cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    # Put in place in one step (made beside it, renamed over it): a deletion
    # seen alone would be an `end` -- under load the watcher can see the
    # unlink and the mkfifo in two batches.
    beside = current.with_name(".fifo")
    os.mkfifo(beside)
    beside.rename(current)
    # A command that blocked would fail on the runner's timeout; a daemon
    # that blocked would not answer `status`.
    applier.applied(lambda: current.is_file() and not current.is_fifo(), saying="FIFO")
    assert current.read_text() == f"{sid}\n"
    assert cli("current").returncode == 0


def test_a_socket_is_replaced(applier: Applier, cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    beside = current.with_name(".socket")  # put in place in one step, as the FIFO above
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(beside))
        beside.rename(current)
        applier.applied(current.is_file)
    assert current.read_text() == f"{sid}\n"


def test_a_directory_is_reported_and_left_alone(applier: Applier, cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.unlink()
    current.mkdir()
    (current / "keep").write_text("x")
    applier.applied(lambda: (current / "keep").read_text() == "x", saying="is a directory; remove it")
    assert _status_of(cli, sid) == "active"
    (current / "keep").unlink()
    current.rmdir()
    # Now the file is simply missing, after we had written it: a deletion.
    applier.applied(lambda: _status_of(cli, sid) == "completed")


# --- what a command does besides -----------------------------------------------------


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


def test_commands_go_on_while_a_directory_is_in_the_way(cli: Cli, current: Path) -> None:
    sid = start_session(cli)
    current.unlink()
    current.mkdir()
    assert cli("end").returncode == 0
    assert _status_of(cli, sid) == "completed"
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

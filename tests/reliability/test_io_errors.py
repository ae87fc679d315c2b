"""I/O error suite: ENOSPC, EIO and EACCES on each write path.

The caller gets exit 5 and the reason, the daemon keeps running, nothing is
left half-done for good: once the fault is lifted, the daemon settles by
itself (the embedded CLI at its next command) and the store and the file
agree again.
"""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.environment import FAULTS_ENV as ENV_VAR
from agent.environment import FAULTS_FILE_ENV as FILE_ENV_VAR

from ..support.commands import Cli, start_session
from ..support.daemon_process import DaemonProcess, run_daemon, wait_for

pytestmark = pytest.mark.reliability

ERRORS = {"enospc": "No space left on device", "eio": "Input/output error", "eacces": "Permission denied"}

# Each write step, and a command whose path goes through it.
WRITE_PATHS = [
    ("store.commit", "start"),
    ("file.before_fsync", "start"),
    ("file.after_fsync", "start"),
    ("file.before_rename", "start"),
    ("file.before_dir_fsync", "start"),
    ("store.commit", "end"),
    ("file.after_move_aside", "end"),
    ("file.before_dir_fsync", "end"),
]
IDS = [f"{op}-{point}" for point, op in WRITE_PATHS]


def consistent(cli: Cli, current_file: Path) -> bool:
    """At most one active session, and the file names it or is absent."""
    listed = cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    active = [s["id"] for s in json.loads(listed.stdout) if s["status"] == "active"]
    assert len(active) <= 1, active
    try:
        content: str | None = current_file.read_text()
    except FileNotFoundError:
        content = None
    return content == (f"{active[0]}\n" if active else None)


def prepare(cli: Cli, op: str) -> None:
    """Bring about the state ``op`` needs: none active for start, one for end."""
    active = cli("current").returncode == 0
    if op == "start" and active:
        assert cli("end").returncode == 0
    if op == "end" and not active:
        start_session(cli)


def assert_clear_failure(done: subprocess.CompletedProcess[str], reason: str) -> None:
    assert done.returncode == 5, done
    assert reason in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback


@pytest.mark.parametrize(("point", "op"), WRITE_PATHS, ids=IDS)
def test_a_failed_write_through_the_daemon_is_exit_5_and_repaired_when_the_fault_goes(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, point: str, op: str
) -> None:
    control = tmp_path / "faults"
    control.write_text("")
    current_file = data_dir / "current_session"
    with run_daemon(tmp_path, data_dir, runtime_dir, env={FILE_ENV_VAR: str(control)}) as daemon:
        for name, reason in ERRORS.items():
            prepare(cli, op)
            control.write_text(f"{point}={name}@1+")
            assert_clear_failure(cli(op), reason)
            assert daemon.proc.poll() is None
            assert cli("status").returncode == 0  # still serving while the fault lasts
            control.write_text("")
            wait_for(lambda: consistent(cli, current_file), timeout=10)
        wait_for(lambda: "is applied again" in daemon.log(), timeout=10)  # its retry succeeded
        assert cli(op).returncode in (0, 3)  # works again (3: a start that had committed)


@pytest.mark.parametrize(("point", "op"), WRITE_PATHS, ids=IDS)
def test_a_failed_embedded_write_is_exit_5_and_repaired_by_the_next_command(
    data_dir: Path, cli: Cli, point: str, op: str
) -> None:
    current_file = data_dir / "current_session"
    for name, reason in ERRORS.items():
        prepare(cli, op)
        assert_clear_failure(cli(op, env={ENV_VAR: f"{point}={name}@1+"}), reason)
        assert consistent(cli, current_file)  # `list` settles first, as every command does


def test_a_committed_start_whose_file_write_fails_says_so(cli: Cli) -> None:
    done = cli("start", env={ENV_VAR: "file.before_rename=enospc@1+"})
    assert_clear_failure(done, "No space left on device")
    started = json.loads(cli("current", "--json").stdout)["id"]
    assert f"session {started} was started, but" in done.stderr


@pytest.mark.parametrize("point", ["store.commit", "file.before_rename"])
def test_an_edit_that_cannot_be_applied_is_applied_once_the_fault_goes(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, point: str
) -> None:
    control = tmp_path / "faults"
    control.write_text(f"{point}=enospc@1+")
    current_file = data_dir / "current_session"
    with run_daemon(tmp_path, data_dir, runtime_dir, env={FILE_ENV_VAR: str(control)}) as daemon:
        current_file.write_text("start\n")
        wait_for(lambda: "retrying in" in daemon.log(), timeout=10)
        assert daemon.proc.poll() is None
        control.write_text("")
        wait_for(lambda: len(current_file.read_text().strip()) == 36, timeout=10)
        wait_for(lambda: "is applied again" in daemon.log())  # logged once the settle returns


def test_a_signal_whose_write_fails_is_logged_and_the_daemon_recovers(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    control = tmp_path / "faults"
    control.write_text("file.before_rename=eio@1+")
    current_file = data_dir / "current_session"
    with run_daemon(tmp_path, data_dir, runtime_dir, env={FILE_ENV_VAR: str(control)}) as daemon:
        daemon.send(signal.SIGUSR1)
        wait_for(lambda: "SIGUSR1 failed" in daemon.log(), timeout=10)
        control.write_text("")
        wait_for(current_file.exists, timeout=10)
        assert consistent(cli, current_file)
        _still_serving(daemon, cli)


def _still_serving(daemon: DaemonProcess, cli: Cli) -> None:
    assert daemon.proc.poll() is None
    assert cli("current").returncode == 0


@pytest.mark.parametrize("rule", ["owner", "idle"])
def test_an_end_by_a_rule_that_cannot_be_recorded_keeps_its_moment(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, rule: str, owner: subprocess.Popen[bytes]
) -> None:
    """The disk is full when the owner exits (or the idle timeout passes):
    the daemon retries by itself, and the end it records once it can is
    dated at the exit (the last activity), not at the retry."""
    control = tmp_path / "faults"
    control.write_text("")
    with run_daemon(tmp_path, data_dir, runtime_dir, env={FILE_ENV_VAR: str(control)}) as daemon:
        args = ["--owner-pid", str(owner.pid)] if rule == "owner" else ["--idle-timeout", "1s"]
        session = json.loads(cli("start", *args, "--json").stdout)
        control.write_text("store.commit=enospc@1+")
        before = datetime.now(UTC)
        if rule == "owner":
            owner.kill()
            owner.wait()
        after = datetime.now(UTC)
        wait_for(lambda: "retrying in" in daemon.log(), timeout=10)
        assert json.loads(cli("show", session["id"], "--json").stdout)["status"] == "active"
        wait_for(lambda: daemon.log().count("retrying in") >= 2, timeout=10)  # it failed again, later
        control.write_text("")
        wait_for(lambda: "is applied again" in daemon.log(), timeout=15)
        ended = json.loads(cli("show", session["id"], "--json").stdout)
    ended_at = datetime.fromisoformat(ended["ended_at"])
    if rule == "owner":
        assert ended["end_reason"] == "owner_exited"
        assert before <= ended_at <= after + timedelta(seconds=1)
    else:
        assert ended["end_reason"] == "idle"
        assert ended_at == datetime.fromisoformat(session["last_activity_at"])

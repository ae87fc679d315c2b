"""Every end reason from a real scenario, through the real daemon (and the
embedded CLI): a real owner process killed, a real idle period shortened by
``config.toml``, a suspend and a clock jump simulated on the daemon's
clocks (``SESSION_AGENT_TEST_CLOCK``), restarts in between."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.environment import IDLE_RECHECK_ENV, TEST_CLOCK_ENV
from agent.session import Session

from ..support.commands import SLEEP, Cli, open_manager, start_session
from ..support.daemon_process import run_daemon, wait_for


def _show(cli: Cli, sid: str) -> dict[str, object]:
    done = cli("show", sid, "--json")
    assert done.returncode == 0, done.stderr
    shown: dict[str, object] = json.loads(done.stdout)
    return shown


def _time(value: object) -> datetime:
    assert isinstance(value, str)
    return datetime.fromisoformat(value)


def _ended(cli: Cli, sid: str, timeout: float = 15.0) -> dict[str, object]:
    """Wait until ``sid`` has ended; return it."""
    found: dict[str, object] = {}

    def ended() -> bool:
        found.update(_show(cli, sid))
        return found["status"] != "active"

    wait_for(ended, timeout, interval=0.05)
    return found


@pytest.fixture
def clock_file(tmp_path: Path) -> Path:
    path = tmp_path / "clock.json"
    path.write_text("{}")
    return path


def _set_clock(path: Path, **offsets: float) -> None:
    """Move the daemon's simulated clocks (atomically: it may read at any time)."""
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(offsets))
    temp.replace(path)


# --- cli, file, signal ----------------------------------------------------------


def test_each_way_of_ending_by_hand_records_its_reason(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    current = data_dir / "current_session"
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        by_cli = start_session(cli)
        assert cli("end").returncode == 0
        abandoned_by_cli = start_session(cli)
        assert cli("abandon").returncode == 0
        by_keyword = start_session(cli)
        current.write_text("end\n")
        _ended(cli, by_keyword)
        by_delete = start_session(cli)
        current.unlink()
        _ended(cli, by_delete)
        by_signal = start_session(cli)
        daemon.send(signal.SIGUSR2)
        _ended(cli, by_signal)
    expected = {
        by_cli: ("completed", "cli"),
        abandoned_by_cli: ("abandoned", "cli"),
        by_keyword: ("completed", "file"),
        by_delete: ("completed", "file"),
        by_signal: ("completed", "signal"),
    }
    for sid, (status, reason) in expected.items():
        shown = _show(cli, sid)  # embedded now: the daemon stopped
        assert (shown["status"], shown["end_reason"]) == (status, reason), sid
    table = cli("list").stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "SCOPE", "STATUS", "REASON"]
    rows = {line.split()[0]: line.split()[3] for line in table[1:]}
    assert rows == {sid: reason for sid, (_, reason) in expected.items()}
    detail = cli("show", by_signal).stdout
    assert "end reason:    signal" in detail


# --- owners ---------------------------------------------------------------------


def test_a_killed_owner_ends_its_session_at_its_exit(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, owner: subprocess.Popen[bytes]
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir):
        done = cli("start", "--owner-pid", str(owner.pid), "--json")
        assert done.returncode == 0, done.stderr
        session = json.loads(done.stdout)
        assert session["owner_pid"] == owner.pid
        assert _show(cli, session["id"])["status"] == "active"
        before_kill = datetime.now(UTC)
        owner.kill()
        ended = _ended(cli, session["id"])
        seen_ended = datetime.now(UTC)
        owner.wait()
        assert (ended["status"], ended["end_reason"]) == ("abandoned", "owner_exited")
        ended_at = _time(ended["ended_at"])
        # Dated at the exit, as the daemon's pidfd saw it: not at a later look.
        assert before_kill <= ended_at <= seen_ended
        assert ended_at - before_kill < timedelta(seconds=2)
        assert not (data_dir / "current_session").exists()
        assert cli("current").returncode == 1


def test_an_owner_named_in_the_file_is_watched_too(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, owner: subprocess.Popen[bytes]
) -> None:
    current = data_dir / "current_session"
    with run_daemon(tmp_path, data_dir, runtime_dir):
        current.write_text(f"start owner={owner.pid}\n")
        wait_for(
            lambda: current.exists() and current.read_text().strip() not in ("", f"start owner={owner.pid}")
        )
        sid = current.read_text().strip()
        assert _show(cli, sid)["owner_pid"] == owner.pid
        owner.kill()
        assert _ended(cli, sid)["end_reason"] == "owner_exited"


def test_an_owner_that_exits_while_no_daemon_runs_ends_at_the_last_sight_of_it(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, owner: subprocess.Popen[bytes]
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        sid = json.loads(cli("start", "--owner-pid", str(owner.pid), "--json").stdout)["id"]
        before_stop = datetime.now(UTC)
        assert daemon.stop() == 0  # it notes that the owner lives, as it stops
    after_stop = datetime.now(UTC)
    owner.kill()
    owner.wait()
    with run_daemon(tmp_path, data_dir, runtime_dir):
        ended = _show(cli, sid)
    assert (ended["status"], ended["end_reason"]) == ("abandoned", "owner_exited")
    assert before_stop <= _time(ended["ended_at"]) <= after_stop


def test_the_rules_survive_restarts(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, owner: subprocess.Popen[bytes]
) -> None:
    """Restored after a clean stop and after kill -9: still bound to its
    owner (the new daemon watches it), still with its idle timeout."""
    with run_daemon(tmp_path, data_dir, runtime_dir) as first:
        done = cli("start", "--owner-pid", str(owner.pid), "--idle-timeout", "2h", "--json")
        sid = json.loads(done.stdout)["id"]
        first.kill()
    with run_daemon(tmp_path, data_dir, runtime_dir):
        pass
    with run_daemon(tmp_path, data_dir, runtime_dir):
        restored = _show(cli, sid)
        assert (restored["status"], restored["owner_pid"], restored["idle_timeout"]) == (
            "active",
            owner.pid,
            7200,
        )
        owner.kill()
        assert _ended(cli, sid)["end_reason"] == "owner_exited"


def test_embedded_commands_apply_the_owner_rule(cli: Cli, owner: subprocess.Popen[bytes]) -> None:
    sid = json.loads(cli("start", "--owner-pid", str(owner.pid), "--json").stdout)["id"]
    assert cli("current").stdout.strip() == sid
    owner.kill()
    owner.wait()
    assert cli("current").returncode == 1
    assert _show(cli, sid)["end_reason"] == "owner_exited"


@pytest.mark.parametrize("through_daemon", [True, False])
def test_bad_start_options_are_usage_errors(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, through_daemon: bool
) -> None:
    gone = subprocess.Popen([SLEEP, "0"])
    gone.wait()
    cases = [
        (["--owner-pid", str(gone.pid)], f"no process {gone.pid} is running"),
        (["--owner-pid", "0"], "0 is not in the range"),
        (["--idle-timeout", "soon"], "not a duration"),
        (["--idle-timeout", "1m", "--idle-grace", "2m"], "cannot be longer than the idle timeout"),
        (["--idle-timeout", "400d"], "between 0 and 366 days"),
        (["--idle-grace", "1m"], "an idle grace needs an idle timeout"),
    ]
    with run_daemon(tmp_path, data_dir, runtime_dir) if through_daemon else _nothing():
        for args, message in cases:
            done = cli("start", *args)
            assert done.returncode == 2, (args, done.stderr)
            assert message in done.stderr, (args, done.stderr)
        assert cli("current").returncode == 1  # nothing started


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- idle -------------------------------------------------------------------------


def test_an_idle_session_ends_by_itself_at_its_last_activity_plus_grace(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    (data_dir / "config.toml").write_text('[sessions]\nidle_timeout = "2s"\nidle_grace = "1s"\n')
    with run_daemon(tmp_path, data_dir, runtime_dir):
        session = json.loads(cli("start", "--json").stdout)
        assert (session["idle_timeout"], session["idle_grace"]) == (2, 1)
        ended = _ended(cli, session["id"])
        assert (ended["status"], ended["end_reason"]) == ("abandoned", "idle")
        assert _time(ended["ended_at"]) == _time(session["started_at"]) + timedelta(seconds=1)
        assert not (data_dir / "current_session").exists()


def test_heartbeats_hold_the_idle_timeout_off(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    current = data_dir / "current_session"
    with run_daemon(tmp_path, data_dir, runtime_dir):
        session = json.loads(cli("start", "--idle-timeout", "3s", "--json").stdout)
        deadline = time.monotonic() + 4.5  # half as long again as the timeout
        while time.monotonic() < deadline:
            os.utime(current)  # an editor saving, every half second
            time.sleep(0.5)
        alive = _show(cli, session["id"])
        assert alive["status"] == "active"
        assert _time(alive["last_activity_at"]) > _time(session["started_at"]) + timedelta(seconds=3)
        ended = _ended(cli, session["id"])
    assert ended["end_reason"] == "idle"
    assert ended["ended_at"] == ended["last_activity_at"]


def test_the_idle_timeout_from_the_environment_reaches_the_daemon_and_embedded(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    env = {"SESSION_AGENT_IDLE_TIMEOUT": "45m", "SESSION_AGENT_IDLE_GRACE": "30s"}
    embedded = json.loads(cli("start", "--json", env=env).stdout)
    assert (embedded["idle_timeout"], embedded["idle_grace"]) == (2700, 30)
    with run_daemon(tmp_path, data_dir, runtime_dir):
        through = json.loads(cli("start", "--replace", "--json", env=env).stdout)
        assert (through["idle_timeout"], through["idle_grace"]) == (2700, 30)
        plain = json.loads(cli("start", "--replace", "--json").stdout)
        assert plain["idle_timeout"] is None


def test_a_simulated_suspend_ends_an_idle_session_before_the_sleep(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, clock_file: Path
) -> None:
    """The machine sleeps two hours with a 30-minute timeout: the daemon,
    woken by its recheck, ends the session dated before the sleep."""
    env = {TEST_CLOCK_ENV: str(clock_file), IDLE_RECHECK_ENV: "0.2"}
    with run_daemon(tmp_path, data_dir, runtime_dir, env=env):
        session = json.loads(cli("start", "--idle-timeout", "30m", "--idle-grace", "1m", "--json").stdout)
        _set_clock(clock_file, wall=7200, boot=7200)
        ended = _ended(cli, session["id"])
    assert (ended["status"], ended["end_reason"]) == ("abandoned", "idle")
    assert _time(ended["ended_at"]) == _time(session["started_at"]) + timedelta(minutes=1)


def test_a_wall_clock_jump_is_not_idleness(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, clock_file: Path
) -> None:
    env = {TEST_CLOCK_ENV: str(clock_file), IDLE_RECHECK_ENV: "0.2"}
    with run_daemon(tmp_path, data_dir, runtime_dir, env=env) as daemon:
        session = json.loads(cli("start", "--idle-timeout", "30m", "--json").stdout)
        _set_clock(clock_file, wall=7200)  # the clock is set two hours forward
        daemon.send(signal.SIGHUP)  # a settle now (the recheck would do it too)
        assert cli("current").stdout.strip() == session["id"]
        assert _show(cli, session["id"])["status"] == "active"
        _set_clock(clock_file, wall=7200, boot=1500)  # 25 minutes really pass
        touched = time.time_ns() + 7200 * 10**9  # an editor saves: the file's mtime is on the set clock
        os.utime(data_dir / "current_session", ns=(touched, touched))
        assert cli("current").stdout.strip() == session["id"]
        _set_clock(clock_file, wall=7200, boot=1500 + 1799)  # 29:59 after that touch
        assert cli("current").stdout.strip() == session["id"]
        _set_clock(clock_file, wall=7200, boot=1500 + 1800)
        ended = _ended(cli, session["id"])
    assert ended["end_reason"] == "idle"


def test_a_timeout_that_expired_while_the_daemon_was_down_fires_at_start_up(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, clock_file: Path
) -> None:
    env = {TEST_CLOCK_ENV: str(clock_file)}
    with run_daemon(tmp_path, data_dir, runtime_dir, env=env):
        session = json.loads(cli("start", "--idle-timeout", "30m", "--idle-grace", "10s", "--json").stdout)
    _set_clock(clock_file, wall=5 * 3600, boot=5 * 3600)  # five hours pass (asleep, or just off)
    with run_daemon(tmp_path, data_dir, runtime_dir, env=env):
        ended = _show(cli, session["id"])
        assert cli("current").returncode == 1
    assert (ended["status"], ended["end_reason"]) == ("abandoned", "idle")
    assert _time(ended["ended_at"]) == _time(session["started_at"]) + timedelta(seconds=10)


# --- replace, crash recovery -------------------------------------------------------


def test_start_replace_through_the_daemon_and_the_file(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    current = data_dir / "current_session"
    with run_daemon(tmp_path, data_dir, runtime_dir):
        first = start_session(cli)
        assert cli("start").returncode == 3
        second = json.loads(cli("start", "--replace", "--json").stdout)
        replaced = _show(cli, first)
        assert (replaced["status"], replaced["end_reason"]) == ("abandoned", "replaced")
        assert replaced["ended_at"] == second["started_at"]
        assert current.read_text() == f"{second['id']}\n"
        current.write_text("start replace\n")
        wait_for(lambda: current.read_text().strip() not in ("start replace", second["id"]))
        third = current.read_text().strip()
        assert _show(cli, second["id"])["end_reason"] == "replaced"
        assert _show(cli, third)["status"] == "active"
        assert cli("current").stdout.strip() == third


def test_a_stray_active_record_is_recovered_at_start_up(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    with open_manager(data_dir) as manager:
        stray = Session.begin(datetime.now(UTC) - timedelta(hours=1))
        manager.store.commit((stray,))  # active, but not the active session
        active = manager.start()
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        recovered = _show(cli, stray.id)
        assert cli("current").stdout.strip() == active.id
    assert (recovered["status"], recovered["end_reason"]) == ("abandoned", "crash_recovery")
    assert recovered["ended_at"] == recovered["last_activity_at"]
    assert "was active beside the active one" in daemon.log()

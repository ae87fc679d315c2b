"""The daemon as a real subprocess: life cycle, restore, single instance,
signals, systemd notifications and the CLI going through it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.faults import CRASH_EXIT_CODE
from agent.paths import Paths

from ..support.commands import Cli, start_session
from ..support.daemon_process import DaemonProcess, daemon_env, run_daemon, spawn_daemon, wait_for, wait_ready


@pytest.fixture
def daemon(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> Iterator[DaemonProcess]:
    with run_daemon(tmp_path, data_dir, runtime_dir) as running:
        yield running


Spawn = Callable[..., DaemonProcess]


@pytest.fixture
def spawn(tmp_path: Path, runtime_dir: Path) -> Iterator[Spawn]:
    """Start daemons that a test expects to fail or crash; all cleaned up after."""
    started: list[DaemonProcess] = []

    def start(
        data_dir: Path, *args: str, env: dict[str, str] | None = None, runtime: Path = runtime_dir
    ) -> DaemonProcess:
        daemon = spawn_daemon(tmp_path, data_dir, runtime, *args, env=env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


def _socket(data_dir: Path, runtime_dir: Path) -> Path:
    return Paths.resolve(data_dir, runtime_dir).socket


def _session(cli: Cli, sid: str) -> dict[str, object]:
    done = cli("show", sid, "--json")
    assert done.returncode == 0, done.stderr
    obj: dict[str, object] = json.loads(done.stdout)
    return obj


def _current(cli: Cli) -> str | None:
    done = cli("current")
    assert done.returncode in (0, 1), done.stderr
    return done.stdout.strip() or None


# --- life cycle -------------------------------------------------------------------


def test_ready_means_the_cli_already_goes_through_the_daemon(
    daemon: DaemonProcess, cli: Cli, data_dir: Path, runtime_dir: Path
) -> None:
    sock = _socket(data_dir, runtime_dir)
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    done = cli("status", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["daemon"]["running"] is True
    assert report["daemon"]["pid"] == daemon.pid
    assert report["paths"]["socket"] == str(sock)
    assert report["watcher"] == {"step_ms": 30, "debounce_ms": 200}
    assert report["current"] is None


def test_commands_go_through_the_daemon(daemon: DaemonProcess, cli: Cli, data_dir: Path) -> None:
    # The daemon holds the store for its whole life, so a command that
    # succeeds now cannot have opened it itself.
    sid = start_session(cli)
    assert cli("start").returncode == 3
    assert _current(cli) == sid
    assert (data_dir / "current_session").read_text() == f"{sid}\n"
    assert _session(cli, sid)["status"] == "active"
    assert cli("end").returncode == 0
    assert _session(cli, sid)["status"] == "completed"
    assert not (data_dir / "current_session").exists()
    listed = json.loads(cli("list", "--json").stdout)
    assert [s["id"] for s in listed] == [sid]
    assert "deleted: completing session" not in daemon.log()  # its own writes were not taken for edits
    assert f"control socket: completed session {sid}" in daemon.log()  # what the client asked for is


def test_status_text_names_the_pid_and_the_session(daemon: DaemonProcess, cli: Cli) -> None:
    sid = start_session(cli)
    done = cli("status")
    assert done.returncode == 0
    assert f"running (pid {daemon.pid}" in done.stdout
    assert f"{sid} (active for" in done.stdout
    assert "ends:" not in done.stdout  # no rules: it ends when told


def test_status_says_how_the_current_session_will_end(daemon: DaemonProcess, cli: Cli) -> None:
    started = cli("start", "--owner-pid", str(daemon.pid), "--idle-timeout", "2h")
    assert started.returncode == 0, started.stderr
    done = cli("status")
    assert f"ends:         when process {daemon.pid} exits; if still idle in 1h59m" in done.stdout
    report = json.loads(cli("status", "--json").stdout)
    assert 7100 < report["idle_ends_in_seconds"] <= 7200


def test_sigterm_exits_0_keeps_the_session_and_the_next_start_restores_it(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    sock = _socket(data_dir, runtime_dir)
    with run_daemon(tmp_path, data_dir, runtime_dir) as first:
        sid = start_session(cli)
        assert first.stop(signal.SIGTERM) == 0
    assert not sock.exists()
    assert (data_dir / "current_session").read_text() == f"{sid}\n"
    assert "stopped" in first.log()
    with run_daemon(tmp_path, data_dir, runtime_dir) as second:
        assert _current(cli) == sid
        assert f"restored session {sid}" in second.log()


def test_sigint_exits_0_too(daemon: DaemonProcess) -> None:
    assert daemon.stop(signal.SIGINT) == 0


def test_kill_9_leaves_nothing_that_blocks_the_next_start(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    sock = _socket(data_dir, runtime_dir)
    with run_daemon(tmp_path, data_dir, runtime_dir) as first:
        sid = start_session(cli)
        first.kill()
    assert sock.exists()  # stale: nobody listens
    assert (data_dir / "daemon.pid").read_text().strip() == str(first.pid)
    # Without a daemon the CLI sees the stale socket for what it is.
    assert _current(cli) == sid
    with run_daemon(tmp_path, data_dir, runtime_dir) as second:
        assert _current(cli) == sid
        assert (data_dir / "daemon.pid").read_text().strip() == str(second.pid)
        assert cli("end").returncode == 0
    assert _session(cli, sid)["status"] == "completed"


def test_edits_made_while_no_daemon_ran_are_applied_at_start_up(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir):
        sid = start_session(cli)
    (data_dir / "current_session").write_text("abandon\n")
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        assert not (data_dir / "current_session").exists()
        assert _session(cli, sid)["status"] == "abandoned"
        assert "current file says abandon" in daemon.log()
    (data_dir / "current_session").write_text("start\n")
    with run_daemon(tmp_path, data_dir, runtime_dir):
        new = (data_dir / "current_session").read_text().strip()
        assert new != "start"
        assert _current(cli) == new


def test_a_deletion_while_down_ends_the_session(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir):
        sid = start_session(cli)
    (data_dir / "current_session").unlink()
    with run_daemon(tmp_path, data_dir, runtime_dir):
        assert _current(cli) is None
        assert _session(cli, sid)["status"] == "completed"


def test_a_crash_between_store_and_file_is_repaired_not_taken_for_a_deletion(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, spawn: Spawn
) -> None:
    crashing = spawn(data_dir, env={"SESSION_AGENT_FAULTS": "manager.after_store=crash"})
    wait_ready(crashing)
    done = cli("start")
    assert done.returncode == 5  # never acknowledged
    assert "closed the connection before answering" in done.stderr
    assert crashing.proc.wait(timeout=10) == CRASH_EXIT_CODE
    assert not (data_dir / "current_session").exists()
    with run_daemon(tmp_path, data_dir, runtime_dir):
        sid = _current(cli)
        assert sid is not None  # the store had it: the session is restored
        assert (data_dir / "current_session").read_text() == f"{sid}\n"


# --- single instance ----------------------------------------------------------------


def test_a_second_daemon_exits_6_naming_the_first(
    daemon: DaemonProcess, data_dir: Path, runtime_dir: Path, cli: Cli, spawn: Spawn
) -> None:
    second = spawn(data_dir)
    assert second.proc.wait(timeout=15) == 6
    assert f"a daemon (pid {daemon.pid}) already runs on {data_dir}" in second.log()
    # It says that and nothing else: it never started, so it does not stop.
    assert second.log().splitlines() == [line for line in second.log().splitlines() if "already runs" in line]
    # The first one was not disturbed: same socket, still answering.
    assert cli("status").returncode == 0
    assert _socket(data_dir, runtime_dir).exists()


def test_two_data_dirs_two_daemons(
    daemon: DaemonProcess, tmp_path: Path, runtime_dir: Path, cli: Cli
) -> None:
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    with run_daemon(tmp_path, other, runtime_dir) as second:
        assert _socket(other, runtime_dir) != _socket(tmp_path / "data", runtime_dir)
        first_id = start_session(cli)
        other_id = cli("start", data=other).stdout.strip()
        assert first_id != other_id
        reports = [json.loads(cli("status", "--json", data=d).stdout) for d in (tmp_path / "data", other)]
        assert [r["daemon"]["pid"] for r in reports] == [daemon.pid, second.pid]
        assert [r["current"]["id"] for r in reports] == [first_id, other_id]


# --- signals --------------------------------------------------------------------------


def test_sigusr1_starts_a_session_only_if_none_is_active(daemon: DaemonProcess, data_dir: Path) -> None:
    current = data_dir / "current_session"
    daemon.send(signal.SIGUSR1)
    wait_for(current.exists)
    sid = current.read_text()
    daemon.send(signal.SIGUSR1)
    wait_for(lambda: daemon.log().count("SIGUSR1:") == 2)
    assert "SIGUSR1: session" in daemon.log()
    assert "is already active" in daemon.log()
    assert current.read_text() == sid


def test_sigusr2_ends_the_active_session(daemon: DaemonProcess, cli: Cli, data_dir: Path) -> None:
    sid = start_session(cli)
    daemon.send(signal.SIGUSR2)
    wait_for(lambda: not (data_dir / "current_session").exists())
    assert _session(cli, sid)["status"] == "completed"
    daemon.send(signal.SIGUSR2)  # nothing active: a no-op, not an error
    wait_for(lambda: "SIGUSR2: no active session" in daemon.log())


def test_sighup_applies_the_file_at_once(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> None:
    # With a one-second watcher step, the watcher needs at least a second to
    # see the edit; SIGHUP must apply it well before that.
    with run_daemon(tmp_path, data_dir, runtime_dir, "--watch-step", "1000") as daemon:
        current = data_dir / "current_session"
        current.write_text("start\n")
        sent = time.monotonic()
        daemon.send(signal.SIGHUP)
        wait_for(lambda: current.read_text() != "start\n", timeout=0.9)
        assert time.monotonic() - sent < 1.0
        log = daemon.log()
        assert log.index("received SIGHUP") < log.index("current file says start")


# --- systemd notifications ------------------------------------------------------------------


def test_notify_ready_status_and_stopping(daemon: DaemonProcess, cli: Cli) -> None:
    ready = daemon.notify.wait_for("READY", "1")
    assert ready["STATUS"] == "no active session"
    assert ready["MAINPID"] == str(daemon.pid)
    sid = start_session(cli)
    daemon.notify.wait_for("STATUS", f"session {sid} active")
    assert cli("end").returncode == 0
    wait_for(lambda: [m["STATUS"] for m in daemon.notify.poll() if "STATUS" in m][-1] == "no active session")
    assert daemon.stop() == 0
    daemon.notify.wait_for("STOPPING", "1")


def test_watchdog_pings_at_half_the_interval(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir, env={"WATCHDOG_USEC": "400000"}) as daemon:
        first = time.monotonic()
        wait_for(lambda: sum("WATCHDOG" in m for m in daemon.notify.poll()) >= 4, timeout=5)
        # 4 pings at 0.2 s intervals (one at READY): about 0.6 s, not 1.2 s or more.
        assert time.monotonic() - first < 1.2


def test_no_watchdog_pings_without_watchdog_usec(daemon: DaemonProcess, cli: Cli) -> None:
    start_session(cli)  # some activity, and enough time for pings to show
    assert not any("WATCHDOG" in m for m in daemon.notify.poll())


# --- the CLI and a daemon that does not answer ------------------------------------------------


def test_a_stopped_daemon_gets_exit_6_within_5_seconds(daemon: DaemonProcess, cli: Cli) -> None:
    daemon.send(signal.SIGSTOP)
    try:
        began = time.monotonic()
        done = cli("current")
        took = time.monotonic() - began
    finally:
        daemon.send(signal.SIGCONT)
    assert done.returncode == 6
    assert f"pid {daemon.pid}" in done.stderr
    assert took < 5.0
    assert cli("status").returncode == 0  # and it recovers


def test_no_daemon_means_embedded_and_status_7(cli: Cli) -> None:
    sid = start_session(cli)
    done = cli("status")
    assert done.returncode == 7
    assert sid in done.stdout


# --- the data dir moving under the daemon -------------------------------------------------------


def test_data_dir_moved_away_and_back_is_watched_again(
    daemon: DaemonProcess, data_dir: Path, cli: Cli
) -> None:
    aside = data_dir.with_name("aside")
    data_dir.rename(aside)
    wait_for(lambda: "vanished" in daemon.log())
    done = cli("start")
    assert done.returncode == 5
    assert "moved or deleted" in done.stderr
    aside.rename(data_dir)
    wait_for(lambda: "is back" in daemon.log())
    (data_dir / "current_session").write_text("start\n")
    wait_for(lambda: (data_dir / "current_session").read_text() != "start\n")
    assert _current(cli) is not None


@pytest.mark.parametrize("with_session", [False, True])
def test_data_dir_replaced_stops_the_daemon_with_75(
    daemon: DaemonProcess, data_dir: Path, cli: Cli, with_session: bool
) -> None:
    # With a session written, closing the store (its log gone) failed, and
    # the daemon exited 5 instead of the documented 75.
    if with_session:
        start_session(cli)
    shutil.rmtree(data_dir)
    data_dir.mkdir(mode=0o700)
    assert daemon.proc.wait(timeout=15) == 75
    assert "was replaced by another directory" in daemon.log()


def test_daemon_rejects_a_bad_watch_setting(data_dir: Path, spawn: Spawn) -> None:
    bad = spawn(data_dir, env={"SESSION_AGENT_WATCH_STEP_MS": "fast"})
    assert bad.proc.wait(timeout=15) == 2
    assert "SESSION_AGENT_WATCH_STEP_MS='fast' is not a whole number" in bad.log()
    assert "Traceback" not in bad.log()


def test_daemon_refuses_a_socket_path_that_is_too_long(tmp_path: Path, data_dir: Path, spawn: Spawn) -> None:
    deep = tmp_path / ("r" * 100)
    deep.mkdir(mode=0o700)
    bad = spawn(data_dir, runtime=deep)
    assert bad.proc.wait(timeout=15) == 5
    assert "longer than 107 bytes" in bad.log()


@pytest.mark.parametrize(
    ("command", "never"),
    [
        # The hot commands take the fast path (agent/fast_cli.py): not even click,
        # nor anything else a reply does not need (each costs milliseconds).
        ("current", {"click", "platformdirs", "logging", "secrets", "tempfile", "dataclasses", "datetime"}),
        ("list", {"platformdirs", "logging", "secrets", "tempfile"}),  # through click
    ],
)
def test_the_client_path_imports_nothing_heavy(
    daemon: DaemonProcess, data_dir: Path, runtime_dir: Path, tmp_path: Path, command: str, never: set[str]
) -> None:
    env = daemon_env(tmp_path, runtime_dir)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "agent", "--data-dir", str(data_dir), command],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr  # answered by the daemon
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "_socket" in imported  # it did talk to the daemon
    assert not imported & {"rocksdict", "watchfiles", "psutil", "asyncio"}
    assert not imported & never


def test_a_failed_reconcile_is_retried_by_itself(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    faults = {"SESSION_AGENT_FAULTS": "file.before_rename=enospc@1"}
    with run_daemon(tmp_path, data_dir, runtime_dir, env=faults) as daemon:
        current = data_dir / "current_session"
        current.write_text("start\n")
        wait_for(lambda: "No space left on device" in daemon.log())
        assert "retrying in 0.1 s" in daemon.log()
        wait_for(lambda: current.read_text() != "start\n")  # the retry wrote it
        sid = current.read_text().strip()
        listed = json.loads(cli("list", "--json").stdout)
        assert [(s["id"], s["status"]) for s in listed] == [(sid, "active")]
        wait_for(lambda: "the current file is applied again" in daemon.log())


def test_status_cpu_is_what_the_daemon_costs_since_start_up(daemon: DaemonProcess, cli: Cli) -> None:
    # Start-up (imports, opening the store) is most of a young daemon's CPU
    # time: averaged over its uptime it read "25 % CPU" right after start.
    # The figure excludes it and says over which span it was measured.
    report = json.loads(cli("status", "--json").stdout)["daemon"]
    assert 0 < report["cpu_percent_span_seconds"] <= report["uptime_seconds"]
    since_start = 100 * report["cpu_seconds"] / report["uptime_seconds"]
    assert report["cpu_percent"] < since_start  # start-up's share is left out
    assert re.search(r"\d+\.\d\d% CPU over the \d+s since start-up\)", cli("status").stdout)


def test_every_transition_a_client_asks_for_is_in_the_log(daemon: DaemonProcess, cli: Cli) -> None:
    first = start_session(cli)
    cli("end")
    second = cli("start", "--scope", "nvim-7").stdout.strip()
    cli("abandon", "--scope", "nvim-7")
    cli("end")
    log = daemon.log()
    assert f"control socket: started session {first}\n" in log
    assert f"control socket: completed session {first}\n" in log
    assert f"control socket: started session {second} in scope nvim-7\n" in log
    assert f"control socket: abandoned session {second} in scope nvim-7\n" in log
    assert "control socket: end: no active session, nothing to do\n" in log


def test_a_storm_of_signals_coalesces_and_never_hangs_the_daemon(daemon: DaemonProcess, cli: Cli) -> None:
    # Before: ~50,000 SIGHUP/USR1/USR2 from the user's own processes gave
    # thousands of "Exception ignored ... wakeup fd" tracebacks, then a
    # deadlock: SIGTERM ignored, every client exit 6 forever.
    storm = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
    for n in range(50_000):
        os.kill(daemon.pid, storm[n % 3])
    done = cli("status")
    assert done.returncode == 0, done.stderr  # answering
    assert "wakeup fd" not in daemon.log()
    listed = json.loads(cli("list", "--limit", "0", "--json").stdout)
    assert sum(s["status"] == "active" for s in listed) <= 1
    assert len(listed) < 1000  # coalesced: far fewer sessions than signals
    assert daemon.stop() == 0


def test_out_of_file_descriptors_is_said_once_and_clients_are_told_why(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    # Before: with the open-file limit reached, a traceback per failed
    # accept (402,000 lines in 22 s, 55 % of a core), and clients told the
    # daemon "may be stopped or hung".
    prlimit = shutil.which("prlimit")
    assert prlimit is not None, "util-linux is installed by scripts/test"
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        subprocess.run([prlimit, f"--pid={daemon.pid}", "--nofile=48"], check=True, timeout=30)
        sock_path = Paths.resolve(data_dir, runtime_dir).socket
        hogs = []
        try:
            for _ in range(80):  # more than it may hold: the kernel queues the rest
                hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                hog.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    hog.connect(str(sock_path))
                hogs.append(hog)
            wait_for(lambda: "cannot accept control connections" in daemon.log())
            told = cli("current")
            assert told.returncode == 6
            assert "it has used all 48 of the file descriptors it may open" in told.stderr
            log = daemon.log()
            assert log.count("cannot accept control connections") == 1
            assert "the open-file limit is 48" in log
            assert "Traceback" not in log
        finally:
            for hog in hogs:
                hog.close()
        wait_for(lambda: cli("current").returncode == 1)  # answering again

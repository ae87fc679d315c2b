"""systemd integration: sd_notify, the journal, socket activation, the unit
files (checked by systemd-analyze) and ``service install``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agent.paths import Paths
from agent.service import SERVICE_UNIT, SOCKET_UNIT, ServicePlan, render_service, render_socket
from agent.systemd import Notifier, listen_fds, under_journal

from ..support.commands import SESSION_AGENT, Cli, clean_env, start_session
from ..support.daemon_process import NotifyListener, wait_for

REPO = Path(__file__).resolve().parents[2]


# --- the notifier ---------------------------------------------------------------------


def test_notifier_is_silent_without_notify_socket() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog_interval is None


def test_notifier_sends_key_value_lines() -> None:
    listener = NotifyListener()
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(listener.path)})
        assert notifier.ready("no active session")
        assert notifier.status("session x active")
        assert notifier.stopping()
        messages = listener.poll()
    finally:
        listener.close()
    assert messages[0]["READY"] == "1"
    assert messages[0]["STATUS"] == "no active session"
    assert messages[1] == {"STATUS": "session x active"}
    assert messages[2]["STOPPING"] == "1"


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"session-agent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert receiver.recv(100) == b"WATCHDOG=1"


def test_notifier_never_blocks_on_a_receiver_that_does_not_read() -> None:
    listener = NotifyListener()
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(listener.path)})
        results = [notifier.status(f"status {i}") for i in range(5000)]
    finally:
        listener.close()
    assert results[0] is True
    assert results.count(False) > 0  # dropped once the queue was full, instead of hanging


def test_notifier_survives_a_missing_socket(runtime_dir: Path) -> None:
    assert Notifier({"NOTIFY_SOCKET": str(runtime_dir / "nothing-here")}).ready("x") is False


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}, 0.2),
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str], interval: float | None) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/x", **env}).watchdog_interval == interval


def test_listen_fds_ignores_fds_meant_for_another_process() -> None:
    assert listen_fds({"LISTEN_FDS": "1", "LISTEN_PID": "1"}) == []
    assert listen_fds({}) == []


def test_under_journal_only_when_stderr_is_that_stream() -> None:
    st = os.fstat(2)
    os.environ.pop("JOURNAL_STREAM", None)
    assert under_journal() is False
    os.environ["JOURNAL_STREAM"] = "1:1"
    try:
        assert under_journal() is False
        if stat.S_ISSOCK(st.st_mode):
            os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            assert under_journal() is True
    finally:
        os.environ.pop("JOURNAL_STREAM", None)


def test_under_the_journal_the_daemon_logs_priorities_without_timestamps(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    journal, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    st = os.fstat(ours.fileno())
    env = clean_env(
        tmp_path, SESSION_AGENT_RUNTIME_DIR=str(runtime_dir), JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}"
    )
    with journal, ours:
        proc = subprocess.Popen(
            [str(SESSION_AGENT), "--data-dir", str(data_dir), "daemon"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=ours.fileno(),
            env=env,
        )
        ours.close()
        received = b""
        journal.settimeout(20)
        try:
            while b"ready:" not in received:
                chunk = journal.recv(4096)
                assert chunk, received
                received += chunk
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
    first = received.decode().splitlines()[0]
    assert first.startswith("<6>session-agent ")
    assert not first[3].isdigit()  # no timestamp: the journal adds its own


# --- socket activation ------------------------------------------------------------------


def test_socket_activation_starts_the_daemon_on_first_use(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    activate = shutil.which("systemd-socket-activate")
    assert activate, "systemd-socket-activate is missing: scripts/test installs the systemd package"
    sock = Paths.resolve(data_dir, runtime_dir).socket
    sock.parent.mkdir(mode=0o700, parents=True)
    notify = NotifyListener()
    log = tmp_path / "activate.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                activate,
                "-l",
                str(sock),
                "--fdname=control",
                "-E",
                f"NOTIFY_SOCKET={notify.path}",
                str(SESSION_AGENT),
                "--data-dir",
                str(data_dir),
                "--runtime-dir",
                str(runtime_dir),
                "daemon",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=clean_env(tmp_path),
        )
    try:
        wait_for(sock.exists)
        assert not notify.poll()  # nothing runs yet: systemd-socket-activate only listens
        sid = start_session(cli)  # this connection starts the daemon
        notify.wait_for("READY", "1")
        report = json.loads(cli("status", "--json").stdout)
        assert report["daemon"]["socket_activated"] is True
        assert report["daemon"]["pid"] == proc.pid  # it exec'd in place
        assert report["current"]["id"] == sid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    assert "using the control socket passed by systemd" in log.read_text()
    assert sock.exists()  # systemd's socket: not ours to remove


# --- the unit files ------------------------------------------------------------------------


def _verify(tmp_path: Path, units: dict[str, str]) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/test installs the systemd package"
    unit_dir = tmp_path / "units"
    unit_dir.mkdir(exist_ok=True)
    for name, text in units.items():
        (unit_dir / name).write_text(text)
    # Short: %t expands into socket paths (107 bytes at most), and a test
    # worker's tmp_path is longer than that allows.
    runtime = Path(tempfile.mkdtemp(prefix="sa-rt-", dir="/tmp"))
    try:
        return subprocess.run(
            [analyze, "--user", "verify", *(str(unit_dir / name) for name in units)],
            capture_output=True,
            text=True,
            env={**clean_env(tmp_path), "XDG_RUNTIME_DIR": str(runtime)},
            timeout=60,
            check=False,
        )
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def test_the_rendered_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    plan = ServicePlan.for_this_python(["--data-dir", "/home/a b/100% data"], "%t/session-agent/control.sock")
    done = _verify(tmp_path, plan.units())
    assert (done.returncode, done.stderr) == (0, ""), done.stderr


def test_systemd_analyze_catches_a_bad_unit(tmp_path: Path) -> None:
    # The check above can fail: an unknown key is reported on stderr.
    bad = render_service([sys.executable, "-m", "agent", "daemon"]).replace("UMask=", "Bogus=1\nUMask=")
    done = _verify(tmp_path, {SERVICE_UNIT: bad})
    assert "Bogus" in done.stderr


def test_exec_start_quotes_paths_and_escapes_specifiers() -> None:
    text = render_service(["/opt/my python/bin/python", "--data-dir", "/d/100%", "$HOME", "daemon"])
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert line == 'ExecStart="/opt/my python/bin/python" --data-dir /d/100%% $$HOME daemon'


def test_the_repository_units_are_current() -> None:
    # systemd/ holds the units for a `pip install --user` (session-agent in
    # ~/.local/bin); `service install` renders the same text for its Python.
    service = render_service(["/__BIN__/session-agent", "daemon"]).replace("/__BIN__", "%h/.local/bin")
    assert (REPO / "systemd" / SERVICE_UNIT).read_text() == service
    assert (REPO / "systemd" / SOCKET_UNIT).read_text() == render_socket()


# --- service install / uninstall ---------------------------------------------------------------


def _service_env(tmp_path: Path, path: str) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": path}


def _plain_cli(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI with no data or runtime dir given: the defaults a user has."""
    return subprocess.run(
        [str(SESSION_AGENT), *args],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path, **env),
        timeout=60,
        check=False,
    )


def test_install_without_systemctl_writes_the_units_and_says_what_to_run(tmp_path: Path) -> None:
    env = _service_env(tmp_path, str(Path(sys.executable).parent))  # no systemctl on this PATH
    done = _plain_cli(tmp_path, "service", "install", "--socket-activation", env=env)
    assert done.returncode == 0, done.stderr
    unit_dir = tmp_path / "config/systemd/user"
    service = (unit_dir / SERVICE_UNIT).read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    interpreter = exec_start.removeprefix("ExecStart=").split()[0]
    assert Path(interpreter).parent == Path(sys.executable).parent  # the Python that ran install
    assert exec_start.endswith(" -m agent daemon")
    assert "ListenStream=%t/session-agent/control.sock" in (unit_dir / SOCKET_UNIT).read_text()
    assert "systemctl was not found" in done.stdout
    assert "systemctl --user enable --now session-agent.socket" in done.stdout
    removed = _plain_cli(tmp_path, "service", "uninstall", env=env)
    assert removed.returncode == 0
    assert not list(unit_dir.iterdir())


@pytest.mark.parametrize("no_enable", [False, True])
def test_install_without_a_user_manager_writes_the_units_and_says_what_to_do(
    tmp_path: Path, no_enable: bool
) -> None:
    # The real systemctl, and no user manager (as in a container, or an SSH
    # session without lingering): the units are written, and that is a
    # warning with the way forward, not a failure.
    systemctl = shutil.which("systemctl")
    assert systemctl is not None, "scripts/test installs systemd"
    env = _service_env(tmp_path, f"{Path(systemctl).parent}:{Path(sys.executable).parent}")
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "no-bus-here")
    done = _plain_cli(tmp_path, "service", "install", *(["--no-enable"] if no_enable else []), env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "config/systemd/user" / SERVICE_UNIT).is_file()
    assert f"wrote {tmp_path / 'config/systemd/user' / SERVICE_UNIT}" in done.stdout
    assert "warning: no systemd user manager runs for you (Failed to connect to bus" in done.stdout
    if not no_enable:
        assert "loginctl enable-linger" in done.stdout
        assert "systemctl --user enable --now session-agent.service" in done.stdout
        assert "session-agent daemon" in done.stdout


def test_install_with_systemctl_enables_and_starts(
    tmp_path: Path, cli: Cli, data_dir: Path, runtime_dir: Path
) -> None:
    # A stand-in systemctl that records its arguments: no systemd runs here.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    env = _service_env(tmp_path, f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    done = cli("service", "install", env=env)  # given dirs are baked into ExecStart
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        "--user daemon-reload",
        "--user enable --now session-agent.service",
    ]
    service = (tmp_path / "config/systemd/user" / SERVICE_UNIT).read_text()
    assert f"-m agent --data-dir {data_dir} --runtime-dir {runtime_dir} daemon" in service
    calls.unlink()
    assert cli("service", "uninstall", env=env).returncode == 0
    assert calls.read_text().splitlines() == [
        "--user disable --now session-agent.service",
        "--user daemon-reload",
    ]


def test_a_failing_systemctl_is_a_clear_error(tmp_path: Path, cli: Cli) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    # A user manager that runs and fails (no real one runs here: a stand-in).
    fake.write_text('#!/bin/sh\necho "Failed to reload daemon: Access denied" >&2\nexit 1\n')
    fake.chmod(0o755)
    env = _service_env(tmp_path, f"{bin_dir}:/usr/bin:/bin")
    done = cli("service", "install", env=env, data=None)
    assert done.returncode == 5
    assert (
        "the units are written, but `systemctl --user daemon-reload` failed: "
        "Failed to reload daemon: Access denied" in done.stderr
    )

"""``run_daemon``: the real daemon as a subprocess, ready when systemd would
think so (it waits for ``READY=1`` on a notify socket of its own)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agent.control.client import DaemonClient
from agent.paths import Paths

from .commands import SESSION_AGENT, clean_env

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.005) -> None:
    """Poll ``predicate`` until it is true; fail with its last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate!r} (last: {value!r})")
        time.sleep(interval)


@dataclass
class NotifyListener:
    """An ``AF_UNIX`` datagram socket standing in for systemd's ``NOTIFY_SOCKET``,
    in a short temporary directory of its own (removed by ``close``)."""

    path: Path = field(init=False)
    sock: socket.socket = field(init=False)
    messages: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="sa-notify-", dir="/tmp")) / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def poll(self) -> list[dict[str, str]]:
        """Collect what arrived so far (non-blocking)."""
        self.sock.setblocking(False)
        while True:
            try:
                raw = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            fields = dict(line.split("=", 1) for line in raw.decode().splitlines() if "=" in line)
            self.messages.append(fields)

    def wait_for(self, key: str, value: str | None = None, timeout: float = READY_TIMEOUT) -> dict[str, str]:
        """The first message (old or new) with ``key`` (set to ``value``, if given)."""
        found: list[dict[str, str]] = []

        def seen() -> bool:
            found[:] = [m for m in self.poll() if key in m and (value is None or m[key] == value)]
            return bool(found)

        wait_for(seen, timeout)
        return found[0]

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.path.parent, ignore_errors=True)


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    notify: NotifyListener

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit code."""
        if self.proc.poll() is None:
            self.send(sig)
        return self.proc.wait(timeout=STOP_TIMEOUT)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT)

    def close(self) -> None:
        """Stop it if it still runs (SIGTERM, then SIGKILL) and free the notify socket."""
        if self.proc.poll() is None:
            self.send(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self.notify.close()


def daemon_env(tmp_path: Path, runtime_dir: Path, **extra: str) -> dict[str, str]:
    return clean_env(tmp_path, SESSION_AGENT_RUNTIME_DIR=str(runtime_dir), **extra)


def spawn_daemon(
    tmp_path: Path,
    data_dir: Path,
    runtime_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    debug: bool = False,
    executable: Path = SESSION_AGENT,
) -> DaemonProcess:
    """Start the daemon (``executable``: another installation's); do not
    wait for it (``wait_ready`` does)."""
    notify = NotifyListener()
    index = len(list(tmp_path.glob("daemon-*.log")))
    log_path = tmp_path / f"daemon-{index}.log"
    full_env = daemon_env(tmp_path, runtime_dir, NOTIFY_SOCKET=str(notify.path), **(env or {}))
    argv = [str(executable), "--data-dir", str(data_dir), *(["--debug"] if debug else []), "daemon", *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=full_env)
    return DaemonProcess(proc, log_path, notify)


def refused_daemon(tmp_path: Path, data_dir: Path, runtime_dir: Path, exit_code: int) -> str:
    """Start a daemon that must refuse to run: check its exit code, return its log."""
    daemon = spawn_daemon(tmp_path, data_dir, runtime_dir)
    try:
        assert daemon.proc.wait(timeout=READY_TIMEOUT) == exit_code, daemon.log()
        return daemon.log()
    finally:
        daemon.close()


def wait_ready(daemon: DaemonProcess) -> None:
    def ready_or_dead() -> bool:
        if daemon.proc.poll() is not None:
            raise AssertionError(f"the daemon exited with {daemon.proc.returncode}:\n{daemon.log()}")
        return any(m.get("READY") == "1" for m in daemon.notify.poll())

    wait_for(ready_or_dead, READY_TIMEOUT)


@contextmanager
def run_daemon(
    tmp_path: Path,
    data_dir: Path,
    runtime_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    debug: bool = False,
    executable: Path = SESSION_AGENT,
) -> Iterator[DaemonProcess]:
    """A running daemon, stopped (and checked for tracebacks) at the end."""
    daemon = spawn_daemon(tmp_path, data_dir, runtime_dir, *args, env=env, debug=debug, executable=executable)
    try:
        wait_ready(daemon)
        yield daemon
    finally:
        daemon.close()
    assert "Traceback" not in daemon.log(), daemon.log()


@contextmanager
def connected(data_dir: Path, runtime_dir: Path) -> Iterator[DaemonClient]:
    """A client of the running daemon of ``data_dir``, closed after the block."""
    client = DaemonClient.connect(Paths(data_dir, runtime_dir).socket, data_dir)
    assert client is not None, "the daemon does not answer"
    try:
        yield client
    finally:
        client.close()

"""What every benchmark needs: a private home, a real daemon, statistics.

Each benchmark runs against a home of its own in a temp dir, with
``XDG_DATA_HOME`` and ``XDG_RUNTIME_DIR`` pointing into it, so that the
agent runs on its *default* data dir, as a user's does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SESSION_AGENT = Path(sys.executable).with_name("session-agent")
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Home:
    root: Path
    env: dict[str, str]

    @property
    def data_dir(self) -> Path:
        return self.root / "share" / "session-agent"

    @property
    def current_file(self) -> Path:
        return self.data_dir / "current_session"

    @property
    def socket(self) -> Path:
        """Where the daemon listens: the default data dir's socket is in the runtime dir."""
        return self.root / "run" / "session-agent" / "control.sock"


@contextlib.contextmanager
def private_home(name: str) -> Iterator[Home]:
    root = Path(tempfile.mkdtemp(prefix=f"sa-bench-{name}-", dir="/tmp"))
    (root / "run").mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AGENT_")}
    env.update(HOME=str(root), XDG_DATA_HOME=str(root / "share"), XDG_RUNTIME_DIR=str(root / "run"))
    try:
        yield Home(root, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class RunningDaemon:
    proc: subprocess.Popen[bytes]
    notify: socket.socket
    ready_after: float  # seconds from spawn to READY=1

    def wait_status(self, prefix: bytes, timeout: float = 10.0) -> None:
        """Until a ``STATUS=`` line starting with ``prefix`` arrives (sent
        after each change is committed)."""
        self.notify.settimeout(timeout)
        while not any(line.startswith(prefix) for line in self.notify.recv(4096).splitlines()):
            pass

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


@contextlib.contextmanager
def daemon(home: Home, *args: str) -> Iterator[RunningDaemon]:
    """A real daemon on ``home``'s default data dir, ready (READY=1)."""
    notify_path = home.root / f"notify-{time.monotonic_ns()}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(READY_TIMEOUT)
    began = time.perf_counter()
    proc = subprocess.Popen(
        [str(SESSION_AGENT), "daemon", *args],
        env={**home.env, "NOTIFY_SOCKET": str(notify_path)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while b"READY=1" not in notify.recv(4096).split(b"\n"):
            pass
        yield RunningDaemon(proc, notify, time.perf_counter() - began)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        notify.close()
        notify_path.unlink(missing_ok=True)


def wall(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    """Seconds ``argv`` took, start to exit; fails on an unexpected exit code."""
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    took = time.perf_counter() - began
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode().strip()}")
    return took


def summary(samples: list[float], scale: float = 1000.0) -> dict[str, float]:
    """Median and p99 (nearest rank), in ms by default."""
    ordered = sorted(samples)
    p99 = ordered[max(0, round(0.99 * len(ordered)) - 1)]
    return {
        "median": round(scale * statistics.median(ordered), 2),
        "p99": round(scale * p99, 2),
        "n": len(ordered),
    }

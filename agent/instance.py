"""One daemon per data dir: a lock held for the daemon's lifetime.

``<data_dir>/daemon.pid`` is locked with ``flock`` before the daemon does
anything else, and holds its pid while it runs. The lock, not the pid, says
whether a daemon runs: the kernel drops it when the process dies however it
dies, so a pidfile left by ``kill -9`` never blocks the next start. The pid is
there for people and error messages; ``live_daemon_pid`` checks it against
the process table (start time and command line) before naming it, because
pids are reused.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from agent.errors import DaemonRunningError, SessionIOError
from agent.layout import PIDFILE_NAME

__all__ = ["InstanceLock", "live_daemon_pid", "read_pid"]


class InstanceLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> InstanceLock:
        """Lock ``data_dir`` for this process; ``DaemonRunningError`` names the holder."""
        path = data_dir / PIDFILE_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            reason = "it is a symlink" if exc.errno == errno.ELOOP else exc.strerror
            raise SessionIOError(f"cannot open {path}: {reason}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            os.close(fd)
            raise DaemonRunningError(data_dir, pid) from None
        except OSError as exc:
            os.close(fd)
            raise SessionIOError(f"cannot lock {path}: {exc.strerror}") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise SessionIOError(f"cannot write {path}: {exc.strerror}") from None
        return cls(path, fd)

    def release(self) -> None:
        """Empty the pidfile and drop the lock (closing the fd drops it)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # the lock goes anyway; a stale pid is checked before use
        finally:
            os.close(fd)


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        pid = int(text)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return pid if pid > 0 else None


def read_pid(data_dir: Path) -> int | None:
    """The pid in the pidfile, unchecked (it may be stale)."""
    try:
        fd = os.open(data_dir / PIDFILE_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _pid_in(fd)
    finally:
        os.close(fd)


def live_daemon_pid(data_dir: Path) -> int | None:
    """The pidfile's pid if that process is alive and is a session-agent
    daemon started before the pidfile was written; ``None`` if stale."""
    import psutil

    path = data_dir / PIDFILE_NAME
    pid = read_pid(data_dir)
    if pid is None:
        return None
    try:
        written = os.stat(path, follow_symlinks=False).st_mtime
        process = psutil.Process(pid)
        with process.oneshot():
            created = process.create_time()
            status = process.status()
            cmdline = process.cmdline()
    except (OSError, psutil.Error):
        return None
    # A process started after the pidfile was written got a reused pid.
    if status == psutil.STATUS_ZOMBIE or created > written + 0.05:
        return None
    if not any("session-agent" in part or part == "agent" for part in cmdline) or "daemon" not in cmdline:
        return None
    return pid

"""The CLI's side of the control socket: small, blocking, no asyncio.

``DaemonClient.connect`` returns ``None`` when no daemon listens (no socket
file, or a stale one), which is the CLI's cue to work embedded. Once
connected, every request must be answered within ``ANSWER_TIMEOUT``
seconds: a daemon that is stopped (SIGSTOP) or hung still accepts
connections (the kernel queues them), so only a deadline protects the
editor hook that called us.
"""

from __future__ import annotations

import _socket  # not `socket`: its enums and selectors cost the fast path 3 ms, for nothing it uses
import errno
import os
import stat  # loaded with os already: costs nothing here
import sys
import time

from agent.control.protocol import MAX_REPLY, decode_reply, encode_request
from agent.errors import DaemonError, DaemonNotAnsweringError, SessionIOError

TYPE_CHECKING = False  # typing costs the CLI's fast path milliseconds
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from socket import socket
    from typing import Any

__all__ = ["ANSWER_TIMEOUT", "MAX_SOCKET_PATH", "ConnectionLostError", "DaemonClient"]

ANSWER_TIMEOUT = 4.0
MAX_SOCKET_PATH = 107  # bytes of sun_path
_PEERCRED_SIZE = 12  # struct ucred: pid, uid, gid as C ints
_NO_LISTENER = (errno.ENOENT, errno.ECONNREFUSED)


class ConnectionLostError(DaemonError):
    """The daemon closed the connection before answering: the request may or
    may not have been carried out (the daemon was stopped or crashed)."""

    def __init__(self, op: str) -> None:
        super().__init__(
            f"the daemon closed the connection before answering {op!r}; it may have stopped or "
            "crashed, so check the outcome with `session-agent current` or `session-agent status`",
            exit_code=5,
        )


class DaemonClient:
    def __init__(self, sock: socket | _socket.socket, data_dir: str | Path) -> None:
        self._sock = sock
        self._data_dir = data_dir
        self._buffer = b""

    @classmethod
    def connect(cls, socket_path: str | Path, data_dir: str | Path) -> DaemonClient | None:
        if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
            return None  # no daemon can listen there (it refuses to start, saying why)
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
            sock.settimeout(ANSWER_TIMEOUT)
            try:
                sock.connect(os.fspath(socket_path))
                if not _served_by_us(sock, socket_path):
                    sock.close()
                    return None  # planted in a directory not ours: not our daemon; run embedded
                return cls(sock, data_dir)
            except BlockingIOError:
                # The listen backlog is full: the daemon is busy accepting.
                sock.close()
                if time.monotonic() >= deadline:
                    raise _not_answering(data_dir) from None
                time.sleep(0.01)
            except OSError as exc:
                sock.close()
                if exc.errno in _NO_LISTENER or not _ours(os.path.dirname(socket_path)):
                    return None  # no daemon of ours listens there: the command runs embedded
                if isinstance(exc, TimeoutError):
                    raise _not_answering(data_dir) from None
                reason = exc.strerror or str(exc)
                raise SessionIOError(f"cannot connect to the daemon at {socket_path}: {reason}") from None
            except BaseException:
                sock.close()
                raise

    def request(self, op: str, **args: Any) -> Any:
        """Send one request and return its result, or raise the error it carries."""
        return self.request_within(ANSWER_TIMEOUT, op, **args)

    def request_within(self, timeout: float, op: str, **args: Any) -> Any:
        """``request``, waiting up to ``timeout`` seconds for the answer."""
        deadline = time.monotonic() + timeout
        try:
            self._sock.sendall(encode_request(op, **args))
            line = self._read_line(deadline)
        except TimeoutError:
            raise _not_answering(self._data_dir) from None
        except (ConnectionError, EOFError):
            raise ConnectionLostError(op) from None
        return decode_reply(line)

    def lines(self) -> Iterator[bytes]:
        """The lines the daemon sends from now on, as they come, without a
        deadline (a subscription's stream), until it closes the connection."""
        self._sock.settimeout(None)
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
                yield line
                continue
            if len(self._buffer) > MAX_REPLY:
                raise DaemonError(f"the daemon sent a line longer than {MAX_REPLY} bytes")
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                return
            self._buffer += chunk

    def _read_line(self, deadline: float) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
                return line
            if len(self._buffer) > MAX_REPLY:
                raise DaemonError(f"the daemon's reply is longer than {MAX_REPLY} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._sock.settimeout(remaining)
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise EOFError
            self._buffer += chunk

    def close(self) -> None:
        self._sock.close()


def _ours(directory: str) -> bool:
    """Whether ``directory`` is a directory of ours: in the shared temp dir
    (the runtime dir's fallback) another user may have planted anything."""
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    return info.st_uid == os.getuid() and stat.S_ISDIR(info.st_mode)


def _served_by_us(sock: socket | _socket.socket, socket_path: str | Path) -> bool:
    """Talk only to a daemon of our own user. Another user's socket in a
    directory of ours means a misconfigured runtime dir (an error); in a
    directory not ours it was planted there, and is ignored."""
    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _PEERCRED_SIZE)
    uid = int.from_bytes(raw[4:8], sys.byteorder)  # not struct: one import less on the fast path
    if uid == os.getuid():
        return True
    if not _ours(os.path.dirname(os.fspath(socket_path))):
        return False
    raise SessionIOError(f"{socket_path} is served by uid {uid}, not by you; refusing to use it")


def _not_answering(data_dir: str | Path) -> DaemonNotAnsweringError:
    pid = _daemon_pid(data_dir)
    return DaemonNotAnsweringError(pid, ANSWER_TIMEOUT, _out_of_files(pid) if pid else None)


def _out_of_files(pid: int) -> str | None:
    """Why a daemon of ours does not answer, when /proc tells: it has used
    every file descriptor it may open, so it cannot accept connections."""
    try:
        used = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/limits", encoding="ascii") as limits:
            line = next(x for x in limits if x.startswith("Max open files"))
        soft = int(line.split()[3])
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    if used < soft - 2:
        return None
    return (
        f"it has used all {soft} of the file descriptors it may open, so it cannot accept "
        "connections: it answers again as some close; raise its limit (LimitNOFILE=) if this lasts"
    )


def _daemon_pid(data_dir: str | Path) -> int | None:
    from pathlib import Path

    from agent.instance import live_daemon_pid, read_pid

    return live_daemon_pid(Path(data_dir)) or read_pid(Path(data_dir))

"""A subscriber on the daemon's socket, as a consumer would write one."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from agent.paths import Paths

__all__ = ["Subscription", "socket_path"]


def socket_path(data_dir: Path, runtime_dir: Path) -> str:
    return str(Paths.resolve(data_dir, runtime_dir).socket)


class Subscription:
    """``subscribe`` sent; ``reply`` is the daemon's answer, ``next`` the
    following lines."""

    def __init__(self, data_dir: Path, runtime_dir: Path, **args: Any) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(socket_path(data_dir, runtime_dir))
        self.sock.sendall(json.dumps({"v": 1, "op": "subscribe", "args": args}).encode() + b"\n")
        self._buffer = b""
        self.reply = json.loads(self._line(10.0))

    def _line(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line within {timeout} s (buffer {self._buffer[-200:]!r})")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"the daemon closed the subscription (buffer {self._buffer[-200:]!r})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self._line(timeout))
        return result

    def take(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return [self.next(timeout) for _ in range(count)]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

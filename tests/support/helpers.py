"""Helpers for tests: a second real process, a raw socket client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rocksdict import Rdict, WriteOptions

from agent.control.protocol import decode_reply, encode_request
from agent.database import CF_SESSIONS

HOLD_STORE = """
import sys
from agent import close_db, open_db
db = open_db(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
close_db(db)
"""

HOLD_INSTANCE_LOCK = """
import sys
from pathlib import Path
from agent.instance import InstanceLock
lock = InstanceLock.acquire(Path(sys.argv[1]))
print("holding", flush=True)
sys.stdin.readline()
lock.release()
"""


@contextmanager
def held_by_another_process(script: str, path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real second process running ``script`` on ``path``: it takes a lock,
    says "holding", and lets go when the block ends."""
    with subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "holding"
            yield proc
        finally:
            proc.stdin.close()
            proc.wait(timeout=10)


@contextmanager
def store_held_by_another_process(db_path: Path) -> Iterator[subprocess.Popen[str]]:
    with held_by_another_process(HOLD_STORE, db_path) as proc:
        yield proc


class Raw:
    """A client that speaks the wire format by hand."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))  # blocking: waits while the listen backlog is full
        self.sock.settimeout(10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def reply(self) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self.line())
        return obj

    def call(self, op: str, **args: Any) -> Any:
        self.send(encode_request(op, **args))
        return decode_reply(self.line())

    def closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def damage_record(db: Rdict, session_id: str, raw: bytes) -> None:
    """Overwrite a session's record in ``db`` (open, as the store uses it)
    with ``raw``, synced: a record damaged on disk."""
    sync = WriteOptions()
    sync.sync = True
    db.get_column_family(CF_SESSIONS).put(session_id.encode("ascii"), raw, sync)

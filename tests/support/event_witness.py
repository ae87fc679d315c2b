"""The crash suite's witnesses of the event log: a subscriber that resumes
from its last ``seq`` after every crash, and a user hook that writes down
each event it is run for.

What they must have seen once a run is over (``check``):

* the subscriber: every event, 1 to the last, each once, in order -- no
  hole, however often the daemon died under it;
* the hook: every event at least once, and in order (a re-run after a
  crash repeats events from its durable cursor; it never skips one);
* the log and the sessions agree: each session's newest event carries the
  session exactly as the store holds it (invariant 8).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

from agent.paths import Paths

__all__ = ["EventWitness"]


class EventWitness:
    def __init__(self, data_dir: Path, runtime_dir: Path, tmp_path: Path) -> None:
        self._paths = Paths(data_dir, runtime_dir)
        self.hook_log = tmp_path / "hook-runs"
        self.seen: list[int] = []  # what the subscriber was sent, across its reconnections
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        config = data_dir / "config.toml"
        config.write_text(
            f'[[hooks]]\nname = "witness"\nshell = "echo $SESSION_AGENT_SEQ >> {self.hook_log}"\n'
        )
        os.chmod(config, 0o600)

    def follow(self) -> None:
        """Subscribe from the last seq seen, reading until the daemon goes."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(self._paths.socket))
        since = self.seen[-1] if self.seen else 0
        sock.sendall(json.dumps({"v": 1, "op": "subscribe", "args": {"since": since}}).encode() + b"\n")
        self._sock = sock
        self._thread = threading.Thread(target=self._read, args=(sock,), daemon=True)
        self._thread.start()

    def _read(self, sock: socket.socket) -> None:
        buffer = b""
        first = True
        try:
            while chunk := sock.recv(1 << 16):
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    if first:
                        assert message.get("ok") is True, message
                        first = False
                        continue
                    self.seen.append(message["seq"])
        except OSError:
            pass  # the daemon died mid-line: the partial line is not counted

    def stop_following(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "the subscriber did not see its daemon go"
        if self._sock is not None:
            self._sock.close()
        self._thread = self._sock = None

    def check(self, sessions: dict[str, dict[str, Any]], log: list[dict[str, Any]], hooks_cursor: int) -> int:
        """After the last restart: ``log`` is every event (subscribed from 0),
        ``hooks_cursor`` where the hook is done. Returns the events' count."""
        last = log[-1]["seq"] if log else 0
        assert [e["seq"] for e in log] == list(range(1, last + 1)), "the log has a hole"
        assert self.seen == list(range(1, len(self.seen) + 1)), (
            f"the subscriber saw a hole or a repeat: {self.seen}"
        )
        assert hooks_cursor == last
        runs = [int(x) for x in self.hook_log.read_text().split()] if self.hook_log.exists() else []
        first_runs = list(dict.fromkeys(runs))
        assert first_runs == list(range(1, last + 1)), f"the hook missed or reordered events: {runs}"
        newest: dict[str, dict[str, Any]] = {}
        for event in log:
            newest[event["session"]["id"]] = event["session"]
        assert newest.keys() == sessions.keys(), "a session without events, or events without a session"
        for session_id, session in sessions.items():
            assert newest[session_id] == session, f"the log and the store disagree on {session_id}"
        return last

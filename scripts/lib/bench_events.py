"""Event delivery, on a real daemon:

* commit -> subscriber: each event's ``at`` (taken by the daemon just before
  the synced write that commits it) to the moment a subscriber's ``recv``
  returned its line, over every subscriber reading: with 1, and with 100
  connected (all reading, one thread each side of the socket);
* event -> the hook's process started: ``at`` to the first thing a user
  hook does, ``bash -c`` reading ``$EPOCHREALTIME`` (so bash's own start-up
  is counted too);
* 100 idle subscribers: the daemon's idle CPU and RSS with them connected.

Events are ``update`` requests (a title set) spaced by a random pause.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import socket
import threading
import time
from datetime import datetime

from bench_env import Home, daemon, private_home, summary

from agent.control.client import DaemonClient
from agent.events import Event
from agent.follow import read_events

HOOK_LOG = "hook-started"


class _Subscribers(threading.Thread):
    """``count`` subscriptions, read as lines come; each line's receipt time."""

    def __init__(self, home: Home, count: int) -> None:
        super().__init__(daemon=True)
        self.selector = selectors.DefaultSelector()
        self.received: list[tuple[float, bytes]] = []
        self.socks = []
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(home.socket))
            sock.sendall(b'{"v": 1, "op": "subscribe", "args": {"since": "now"}}\n')
            reply = b""
            while not reply.endswith(b"\n"):
                reply += sock.recv(4096)
            assert json.loads(reply)["ok"], reply
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, [b""])
            self.socks.append(sock)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(0.05):
                chunk = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
                now = time.time()
                data = key.data[0] + chunk
                *lines, key.data[0] = data.split(b"\n")
                self.received += [(now, line) for line in lines]

    def close(self) -> None:
        self.stop.set()
        self.join()
        for sock in self.socks:
            sock.close()


def _at(line: bytes) -> float:
    return datetime.fromisoformat(json.loads(line)["at"]).timestamp()


def delivery(events: int, subscribers: int) -> dict[str, float]:
    """Commit -> subscriber latency in ms over ``events`` x ``subscribers``."""
    rng = random.Random(2)
    with private_home("events") as home, daemon(home):
        followers = _Subscribers(home, subscribers)
        followers.start()
        client = DaemonClient.connect(home.socket, home.data_dir)
        assert client is not None
        try:
            client.request("start")
            for n in range(events):
                time.sleep(rng.uniform(0.005, 0.02))
                client.request("update", set={"title": f"t{n}"})
            deadline = time.monotonic() + 30
            while len(followers.received) < (events + 1) * subscribers and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            client.close()
            followers.close()
        return summary([received - _at(line) for received, line in followers.received])


def hook_start(events: int) -> dict[str, float]:
    """Event -> the hook's process running, in ms."""
    rng = random.Random(3)
    with private_home("hooks") as home:
        home.data_dir.mkdir(parents=True, mode=0o700)
        log = home.root / HOOK_LOG
        config = home.data_dir / "config.toml"
        config.write_text(
            '[[hooks]]\nname = "bench"\n'
            f'command = ["/bin/bash", "-c", "echo $EPOCHREALTIME $SESSION_AGENT_SEQ >> {log}"]\n'
        )
        os.chmod(config, 0o600)
        with daemon(home):
            client = DaemonClient.connect(home.socket, home.data_dir)
            assert client is not None
            try:
                sent = [client.request("start")]
                for n in range(events):
                    time.sleep(rng.uniform(0.03, 0.06))  # one run at a time: each a start, not a queue
                    sent.append(client.request("update", set={"title": f"t{n}"}))
            finally:
                client.close()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                not log.exists() or len(log.read_text().splitlines()) < events + 1
            ):
                time.sleep(0.05)
        started = {
            int(seq): float(moment) for moment, seq in (x.split() for x in log.read_text().splitlines())
        }
        # The events' times, read back from the store the daemon wrote.
        stored = read_events(0, data_dir=home.data_dir)
        return summary([started[e.seq] - e.at.timestamp() for e in stored if isinstance(e, Event)])


def idle_with_subscribers(count: int, idle: float) -> dict[str, object]:
    with private_home("idle-subscribers") as home, daemon(home) as running:
        followers = _Subscribers(home, count)
        followers.start()
        try:
            time.sleep(1.0)
            cpu, began = running.cpu_seconds(), time.monotonic()
            time.sleep(idle)
            idle_pct = 100 * (running.cpu_seconds() - cpu) / (time.monotonic() - began)
            rss = running.rss_bytes()
        finally:
            followers.close()
        return {"subscribers": count, "idle_cpu_pct": round(idle_pct, 3), "rss_mb": round(rss / 1e6, 1)}


def measure(events: int, idle: float) -> dict[str, object]:
    return {
        "commit_to_subscriber_ms": {
            "1 subscriber": delivery(events, 1),
            "100 subscribers": delivery(events, 100),
        },
        "event_to_hook_started_ms": hook_start(events // 2),
        "idle_100_subscribers": idle_with_subscribers(100, idle),
    }

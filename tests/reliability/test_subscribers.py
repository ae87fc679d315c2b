"""Subscribers that do not read: the daemon's memory stays bounded, honest
clients and the other subscribers are served as before, and a subscriber
that reads again gets every event, in order, from the store."""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from agent.control.client import DaemonClient
from agent.paths import Paths

from ..support.daemon_process import run_daemon, wait_for
from ..support.events import Subscription

pytestmark = pytest.mark.reliability

SUBSCRIBERS = 1000
EVENTS = 500
TITLE = "t" * 240  # each event carries the session: ~0.8 kB a line


class _Readers(threading.Thread):
    """Reads every line of the reading half of the subscribers, as they come."""

    def __init__(self, subscriptions: list[Subscription]) -> None:
        super().__init__(daemon=True)
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytes] = {}
        self.seqs: dict[socket.socket, list[int]] = {}
        for sub in subscriptions:
            sub.sock.setblocking(False)
            self.selector.register(sub.sock, selectors.EVENT_READ)
            self.buffers[sub.sock] = b""
            self.seqs[sub.sock] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                chunk = sock.recv(1 << 16)
                if not chunk:
                    self.selector.unregister(sock)
                    continue
                data = self.buffers[sock] + chunk
                *lines, self.buffers[sock] = data.split(b"\n")
                self.seqs[sock] += [json.loads(line)["seq"] for line in lines]


def test_a_thousand_subscribers_half_never_reading(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, report: Callable[[str], None]
) -> None:
    paths = Paths.resolve(data_dir, runtime_dir)
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        process = psutil.Process(daemon.pid)
        rss_before = process.memory_info().rss
        subscriptions = [Subscription(data_dir, runtime_dir, since="now") for _ in range(SUBSCRIBERS)]
        wait_for(lambda: len(process.net_connections("unix")) >= SUBSCRIBERS)
        rss_connected = process.memory_info().rss
        readers, idle = subscriptions[::2], subscriptions[1::2]
        reader_thread = _Readers(readers)
        reader_thread.start()
        client = DaemonClient.connect(paths.socket, data_dir)
        assert client is not None
        slowest = 0.0
        try:
            client.request("start")
            for n in range(EVENTS - 1):
                began = time.monotonic()
                client.request("update", set={"title": f"{TITLE}{n}"})
                slowest = max(slowest, time.monotonic() - began)
            wait_for(lambda: all(len(s) == EVENTS for s in reader_thread.seqs.values()), timeout=120)
            rss_flooded = process.memory_info().rss
            began = time.monotonic()
            assert client.request("current")["title"].endswith(str(EVENTS - 2))
            honest = time.monotonic() - began
        finally:
            reader_thread.stop.set()
            reader_thread.join()
            client.close()
        # Every reading subscriber got every event, in order.
        for seqs in reader_thread.seqs.values():
            assert seqs == list(range(1, EVENTS + 1))
        # The daemon did not buffer the ~0.8 MB of events for each of the 500 that never read.
        connected = (rss_connected - rss_before) / (1 << 20)
        grown = (rss_flooded - rss_connected) / (1 << 20)
        unbounded = len(idle) * EVENTS * 800 / (1 << 20)
        assert grown < 100, f"RSS grew by {grown:.0f} MiB"
        assert slowest < 1.0
        assert honest < 1.0
        # A subscriber that reads at last gets everything, from the store.
        late = idle[0]
        assert [late.next()["seq"] for _ in range(EVENTS)] == list(range(1, EVENTS + 1))
        for sub in subscriptions:
            sub.close()
        report(
            f"subscribers: {SUBSCRIBERS} ({len(idle)} never reading), {EVENTS} events of ~0.8 kB: daemon RSS "
            f"+{connected:.0f} MiB connected, +{grown:.0f} MiB more flooded "
            f"(unbounded buffering would be ~{unbounded:.0f} MiB); slowest request "
            f"{slowest * 1000:.0f} ms"
        )

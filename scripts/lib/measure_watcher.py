"""Measure the file watcher: edit -> durable effect latency, and idle CPU,
for each watcher step. Used to choose the defaults (see the README).

Each setting runs a real daemon on a temporary data dir. Latency is timed
from the write of the file (``start``) or its deletion (end) to the daemon's
``STATUS=`` notification, which it sends after the change is committed to
the store. Edits are spaced by a random pause, so they land at random points
of the watcher's cycle. Idle CPU is the daemon's user+system time over a
quiet period.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SESSION_AGENT = Path(sys.executable).with_name("session-agent")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_status(notify: socket.socket, prefix: bytes) -> None:
    while not any(line.startswith(prefix) for line in notify.recv(4096).splitlines()):
        pass


def measure(step: int, edits: int, idle: float) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="sa-measure-", dir="/tmp"))
    data = base / "data"
    data.mkdir(mode=0o700)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(base / "notify"))
    notify.settimeout(10)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(base / "notify"),
        "SESSION_AGENT_RUNTIME_DIR": str(base / "run"),
    }
    daemon = subprocess.Popen(
        [str(SESSION_AGENT), "--data-dir", str(data), "daemon", "--watch-step", str(step)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_status(notify, b"READY=1")
        time.sleep(1.0)  # let start-up work finish before timing idleness
        cpu, began = _cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(idle)
        idle_pct = 100 * (_cpu_seconds(daemon.pid) - cpu) / (time.monotonic() - began)
        current = data / "current_session"
        latencies = []
        for _ in range(edits):
            time.sleep(random.uniform(0.005, 0.1))
            began = time.perf_counter()
            current.write_text("start\n")
            _wait_status(notify, b"STATUS=session")
            latencies.append(time.perf_counter() - began)
            time.sleep(random.uniform(0.005, 0.1))
            began = time.perf_counter()
            current.unlink()
            _wait_status(notify, b"STATUS=no active session")
            latencies.append(time.perf_counter() - began)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
        notify.close()
        shutil.rmtree(base, ignore_errors=True)
    latencies.sort()
    return {
        "step_ms": step,
        "edits": len(latencies),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[max(0, round(0.99 * len(latencies)) - 1)], 1),
        "idle_cpu_pct": round(idle_pct, 2),
        "idle_s": idle,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="10,20,30,40,50", help="watcher steps to try, in ms")
    parser.add_argument("--edits", type=int, default=100, help="starts and deletions per step")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idleness to time")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = parser.parse_args()
    if not args.json:
        print("| step | edit → durable p50 | p99 | idle CPU (one core) |")
        print("| ---: | ---: | ---: | ---: |")
    for step in (int(s) for s in args.steps.split(",")):
        row = measure(step, args.edits, args.idle)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"| {step} ms | {row['p50_ms']} ms | {row['p99_ms']} ms | {row['idle_cpu_pct']} % |",
                flush=True,
            )


if __name__ == "__main__":
    main()

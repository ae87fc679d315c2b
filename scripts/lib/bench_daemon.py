"""What the daemon costs and how fast it reacts, on real daemons.

* file edit -> durable effect: timed from the write of ``start`` (or the
  deletion of the file) to the daemon's ``STATUS=`` notification, which it
  sends once the change is committed to the store; edits are spaced by a
  random pause so that they land anywhere in the watcher's cycle;
* idle CPU (user + system time over a quiet period) and RSS;
* start-up to READY, ``list --limit 20`` and ``report --since 7d`` with a
  small and a large store, filled directly (no daemon) with completed
  sessions ten minutes apart (so that the last seven days hold the same
  ~1,000 sessions in both: the large store's other 999,000 are older);
  bytes per session on disk; ``export`` of the whole store: its rate and
  the exporting process's peak RSS;
* durable throughput: concurrent socket clients each doing start + end.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

from bench_env import SESSION_AGENT, Home, daemon, private_home, summary, wall

from agent.control.client import DaemonClient
from agent.errors import DaemonError
from agent.testing import fill_store


def edits_and_idle(edits: int, idle: float, *watch_args: str) -> dict[str, object]:
    """``edits`` starts and as many deletions, then ``idle`` quiet seconds."""
    rng = random.Random(1)
    with private_home("edits") as home, daemon(home, *watch_args) as running:
        home.current_file.parent.mkdir(parents=True, exist_ok=True)
        latencies = []
        for _ in range(edits):
            time.sleep(rng.uniform(0.005, 0.1))
            began = time.perf_counter()
            home.current_file.write_text("start\n")
            running.wait_status(b"STATUS=session")
            latencies.append(time.perf_counter() - began)
            time.sleep(rng.uniform(0.005, 0.1))
            began = time.perf_counter()
            home.current_file.unlink()
            running.wait_status(b"STATUS=no active session")
            latencies.append(time.perf_counter() - began)
        time.sleep(1.0)  # let the last reaction finish before timing idleness
        cpu, began = running.cpu_seconds(), time.monotonic()
        time.sleep(idle)
        idle_pct = 100 * (running.cpu_seconds() - cpu) / (time.monotonic() - began)
        return {
            "edit_to_durable_ms": summary(latencies),
            "idle_cpu_pct": round(idle_pct, 3),
            "idle_seconds": idle,
            "rss_mb": round(running.rss_bytes() / 1e6, 1),
        }


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def history(count: int, repeats: int) -> dict[str, object]:
    """Start-up to READY, ``list --limit 20`` and ``report --since 7d`` (CLI
    through the daemon) with ``count`` sessions; then an export of them all."""
    with private_home(f"history-{count}") as home:
        began = time.perf_counter()
        fill_store(home.data_dir, count, spacing=timedelta(minutes=10))
        filled_in = time.perf_counter() - began
        startups, listings, reports = [], [], []
        for _ in range(repeats):
            with daemon(home) as running:
                startups.append(running.ready_after)
                for _ in range(3):
                    listings.append(wall([str(SESSION_AGENT), "list", "--limit", "20"], home.env))
                    reports.append(wall([str(SESSION_AGENT), "report", "--since", "7d", "--json"], home.env))
        return {
            "sessions": count,
            "fill_seconds": round(filled_in, 1),
            "startup_to_ready_ms": summary(startups),
            "list_20_ms": summary(listings),
            "report_7d_ms": summary(reports),
            "bytes_per_session": round(_disk_bytes(home.data_dir / "db") / count, 1),
            "export": _export(home, count),
        }


def _export(home: Home, count: int) -> dict[str, object]:
    """``export`` (JSON lines) of every session to /dev/null: its rate and
    its peak RSS. The peak is the process's own ``VmHWM``, read while it
    runs: ``wait4``'s ``ru_maxrss`` would count the bench's own pages,
    which the child holds between its fork and its exec (this process
    has just written a million sessions)."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        [str(SESSION_AGENT), "export"], env=home.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    took = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"export exited {proc.returncode}")
    return {
        "seconds": round(took, 1),
        "sessions_per_second": round(count / took),
        "peak_rss_mb": round(peak / 1024, 1),
    }


def throughput(clients: int, seconds: float) -> dict[str, object]:
    """Clients each looping start + end through the daemon's socket, each in
    a scope of its own (as parallel editors and AI sessions are): every
    start and end is a durable transition. A refused start (exit 3: not
    expected, the scopes are apart) counts as a refusal, not a pair."""
    with private_home("throughput") as home, daemon(home):
        pairs = [0] * clients
        refused = [0] * clients
        deadline = time.monotonic() + seconds

        def client(i: int) -> None:
            connection = DaemonClient.connect(home.socket, home.data_dir)
            assert connection is not None
            try:
                while time.monotonic() < deadline:
                    try:
                        session = connection.request("start", scope=f"bench-{i}")
                    except DaemonError:
                        refused[i] += 1
                        continue
                    connection.request("end", id=session["id"])
                    pairs[i] += 1
            finally:
                connection.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.monotonic() - began
        return {
            "clients": clients,
            "seconds": round(took, 1),
            "pairs_per_second": round(sum(pairs) / took),
            "refused_per_second": round(sum(refused) / took),
        }


def watcher_curve(steps: list[int], edits: int, idle: float) -> list[dict[str, object]]:
    rows = []
    for step in steps:
        row = edits_and_idle(edits, idle, "--watch-step", str(step))
        rows.append({"step_ms": step, **row})
    return rows

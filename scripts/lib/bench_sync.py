"""Sessions from several machines (the sync dir), two machines on this box:

* through two real Syncthings on loopback (``agent.testing_sync``): how
  long a plain file takes from one folder to the other (the engine's own
  latency), and how long a session started on A (``session-agent start``)
  takes to be in B's ``list --all-hosts``: the goal is the engine's latency
  + 1 s, p50 over the sessions;
* taking in ``count`` remote sessions at start-up: A's store filled, its
  baseline shipped (an embedded ``sync status`` ships it), then B's daemon
  started on the folder: from its spawn to every segment taken in (goal:
  ≤ 5 s for 100,000), and B's ``list --all-hosts`` / ``report --all-hosts``
  with them;
* B's daemon idle with the sync dir set: CPU and RSS (the idle goals).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bench_env import SESSION_AGENT, Home, daemon, private_home, summary, wall

from agent.control.client import DaemonClient
from agent.locations import SOCKET_NAME, socket_dir
from agent.testing import fill_store
from agent.testing_sync import syncthing_pair

_POLL = 0.01  # seconds between two looks at the other machine


def _machine(home: Home, name: str, shared: Path) -> tuple[Path, dict[str, str]]:
    data = home.root / name
    data.mkdir(mode=0o700)
    (data / "config.toml").write_text(f'[sync]\ndir = "{shared}"\nhost = "{name}"\n')
    os.chmod(data / "config.toml", 0o600)
    return data, {**home.env, "SESSION_AGENT_DATA_DIR": str(data)}


def _client(data: Path, env: dict[str, str]) -> DaemonClient:
    runtime = Path(env["XDG_RUNTIME_DIR"]) / "session-agent"
    socket_path = Path(socket_dir(str(data), str(runtime))) / SOCKET_NAME
    client = DaemonClient.connect(socket_path, data)
    if client is None:
        raise RuntimeError(f"the daemon of {data} does not answer")
    return client


def _is_listed(client: DaemonClient, session_id: str) -> bool:
    reply = client.request("list", all_scopes=True, hosts="*", limit=5)
    return any(item["id"] == session_id for item in reply["sessions"])


def _is_completed(client: DaemonClient, session_id: str) -> bool:
    reply = client.request("get", id=session_id, hosts="*")
    return reply is not None and reply["status"] == "completed"


def _until(predicate: Callable[[], bool], timeout: float = 60.0) -> float:
    began = time.perf_counter()
    while not predicate():
        if time.perf_counter() - began > timeout:
            raise RuntimeError("the other machine never saw it")
        time.sleep(_POLL)
    return time.perf_counter() - began


def latency(sessions: int, files: int) -> dict[str, object]:
    if shutil.which("syncthing") is None:
        return {"skipped": "syncthing is not installed (Debian package syncthing)"}
    with private_home("sync-latency") as home:
        folder_a, folder_b = home.root / "sync-a", home.root / "sync-b"
        with syncthing_pair(home.root, folder_a, folder_b):
            _, env_a = _machine(home, "alpha", folder_a)
            data_b, env_b = _machine(home, "beta", folder_b)
            with daemon(Home(home.root, env_a)), daemon(Home(home.root, env_b)):
                engine = []
                for n in range(files + 1):
                    (folder_a / f"probe-{n}.txt").write_text("probe")
                    took = _until((folder_b / f"probe-{n}.txt").exists)
                    if n:  # the first waits for the two to connect
                        engine.append(took)
                visible = []
                client = _client(data_b, env_b)  # now: an idle connection is closed by the daemon
                for _ in range(sessions):
                    began = time.perf_counter()
                    done = subprocess.run(
                        [str(SESSION_AGENT), "start"], env=env_a, capture_output=True, text=True, check=True
                    )
                    sid = done.stdout.strip()
                    _until(functools.partial(_is_listed, client, sid))
                    visible.append(time.perf_counter() - began)
                    subprocess.run([str(SESSION_AGENT), "end"], env=env_a, capture_output=True, check=True)
                    _until(functools.partial(_is_completed, client, sid))
                client.close()
    return {
        "engine_file_ms": summary(engine),
        "session_visible_ms": summary(visible),
        "sessions": sessions,
    }


def intake(count: int, idle: float) -> dict[str, object]:
    with private_home("sync-intake") as home:
        shared = home.root / "shared"
        shared.mkdir()
        data_a, env_a = _machine(home, "alpha", shared)
        data_b, env_b = _machine(home, "beta", shared)
        began = time.perf_counter()
        fill_store(data_a, count, spacing=timedelta(minutes=10))
        filled = time.perf_counter() - began
        shipped = wall([str(SESSION_AGENT), "sync", "status"], env_a)  # no daemon: it ships itself
        segments = len(list((shared / "alpha").glob("seg-*.jsonl")))
        began = time.perf_counter()
        with daemon(Home(home.root, env_b)) as running:
            client = _client(data_b, env_b)

            def all_taken_in() -> bool:
                hosts = client.request("status")["sync"]["hosts"]
                return any(h["host"] == "alpha" and h["taken_in"] == segments for h in hosts)

            _until(all_taken_in, timeout=600)
            taken_in = time.perf_counter() - began
            client.close()
            listing = [
                wall([str(SESSION_AGENT), "list", "--all-hosts", "--limit", "20"], env_b) for _ in range(3)
            ]
            report = [
                wall([str(SESSION_AGENT), "report", "--all-hosts", "--since", "7d"], env_b) for _ in range(3)
            ]
            time.sleep(1.0)
            cpu, began = running.cpu_seconds(), time.monotonic()
            time.sleep(idle)
            idle_pct = 100 * (running.cpu_seconds() - cpu) / (time.monotonic() - began)
            rss = running.rss_bytes()
    return {
        "sessions": count,
        "segments": segments,
        "fill_seconds": round(filled, 1),
        "baseline_shipped_ms": round(shipped * 1000, 1),
        "startup_to_taken_in_ms": round(taken_in * 1000, 1),
        "list_all_hosts_ms": summary(listing),
        "report_all_hosts_7d_ms": summary(report),
        "idle_cpu_pct": round(idle_pct, 3),
        "idle_seconds": idle,
        "rss_mb": round(rss / 1e6, 1),
    }

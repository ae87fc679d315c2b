"""Two machines through a real sync engine: two data dirs, two daemons, two
Syncthings (Debian's, on loopback, nothing else on the network).

Sessions started on A -- through the CLI, its current file and an editor
(Neovim with the shipped plugin) -- appear in B's ``list --all-hosts``; B's
``report --all-hosts`` counts A's time; with A's Syncthing stopped A works
on, and when it runs again B catches up with nothing lost or doubled; A's
daemon killed mid-segment ships everything once after its restart; a
conflict copy, a truncated segment and a host folder of garbage planted in
the folder are passed over and named, and change nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.environment import FAULTS_FILE_ENV
from agent.testing_sync import Syncthing, syncthing_pair

from ..support.commands import CLI_TIMEOUT, SESSION_AGENT, clean_env
from ..support.daemon_process import run_daemon, spawn_daemon, wait_for, wait_ready
from ..support.editors import run_editor
from ..support.hosts import git_repository, read_or_empty
from ..support.machines import machine, remote_ids, segments_of

SYNC_TIMEOUT = 60  # Syncthing's first connection; each file after it takes about a second

pytestmark = pytest.mark.skipif(shutil.which("syncthing") is None, reason="syncthing is not installed")


class Machine:
    def __init__(self, tmp_path: Path, data: Path, runtime: Path) -> None:
        self.tmp_path, self.data, self.runtime = tmp_path, data, runtime

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(self.tmp_path, SESSION_AGENT_RUNTIME_DIR=str(self.runtime), **extra)

    def attempt(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SESSION_AGENT), "--data-dir", str(self.data), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=CLI_TIMEOUT,
            check=False,
        )

    def run(self, *args: str) -> str:
        done = self.attempt(*args)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def status_of(self, session_id: str) -> str | None:
        """The status of a session of any host, once it is known here."""
        done = self.attempt("show", session_id, "--all-hosts", "--json")
        return str(json.loads(done.stdout)["status"]) if done.returncode == 0 else None

    def everywhere(self) -> list[str]:
        return remote_ids(self.run("list", "--all-hosts", "--limit", "0", "--json"))

    def sync_status(self) -> dict[str, object]:
        found: dict[str, object] = json.loads(self.run("sync", "status", "--json"))
        return found


def _engine_latency(a: Syncthing, b: Syncthing) -> float:
    """How long a plain file takes from A's folder to B's (for the figures)."""
    began = time.monotonic()
    (a.folder / "probe.txt").write_text("probe")
    wait_for((b.folder / "probe.txt").exists, timeout=SYNC_TIMEOUT)
    return time.monotonic() - began


def _edit_with_neovim(a: Machine, tmp_path: Path) -> str:
    """Neovim with the shipped plugin: a session from its start to its quit."""
    scenario = tmp_path / "engine"
    scenario.mkdir()
    git_repository(scenario, branch="main")
    proc = run_editor("nvim", a.env(SESSION_AGENT_DATA_DIR=str(a.data)), scenario)
    current = a.data / "scopes" / f"nvim-{proc.pid}" / "current_session"
    try:
        wait_for(lambda: len(read_or_empty(current)) == 37, timeout=20)  # the daemon applied its start
        sid = read_or_empty(current).strip()
        (scenario / "go-save").touch()
        wait_for((scenario / "saved").exists, timeout=20)
        (scenario / "go-quit").touch()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    return sid


def test_two_machines_share_their_sessions_through_syncthing(
    tmp_path: Path, runtimes: tuple[Path, Path], report: Callable[[str], None]
) -> None:
    folder_a, folder_b = tmp_path / "sync-a", tmp_path / "sync-b"
    a = Machine(tmp_path, machine(tmp_path, "alpha", folder_a), runtimes[0])
    b = Machine(tmp_path, machine(tmp_path, "beta", folder_b), runtimes[1])
    faults = tmp_path / "faults"
    faults.write_text("")
    with syncthing_pair(tmp_path, folder_a, folder_b) as (sync_a, sync_b):
        daemon_a = spawn_daemon(tmp_path, a.data, a.runtime, env={FAULTS_FILE_ENV: str(faults)})
        try:
            wait_ready(daemon_a)
            with run_daemon(tmp_path, b.data, b.runtime):
                latency = _engine_latency(sync_a, sync_b)
                # --- sessions through the CLI, the file and an editor -------------
                by_cli = a.run("start", "--project", "engine").strip()
                a.run("end")
                (a.data / "current_session").write_text("start\n")
                wait_for(lambda: len(read_or_empty(a.data / "current_session")) == 37)
                by_file = read_or_empty(a.data / "current_session").strip()
                by_editor = _edit_with_neovim(a, tmp_path)
                wait_for(lambda: {by_cli, by_file, by_editor} <= set(b.everywhere()), timeout=SYNC_TIMEOUT)
                shown = json.loads(b.run("show", by_editor, "--all-hosts", "--json"))
                assert (shown["tool"], shown["project"], shown["host"]["hostname"]) == (
                    "nvim",
                    "engine",
                    "alpha",
                )
                a.run("end")
                wait_for(lambda: b.status_of(by_file) == "completed", timeout=SYNC_TIMEOUT)
                built = json.loads(b.run("report", "--all-hosts", "--since", "1h", "--json"))
                (alpha,) = [h for h in built["hosts"] if h["host"] == "alpha"]
                assert alpha["sessions"] == 3
                assert built["total"]["wall_seconds"] >= alpha["wall_seconds"] > 0
                # --- Syncthing stopped while A works, then back --------------------
                sync_a.stop()
                during = []
                for _ in range(3):
                    during.append(a.run("start").strip())
                    a.run("end")
                wait_for(lambda: a.sync_status()["ship"]["behind"] == 0)  # type: ignore[index]
                shipped_while_stopped = {p.name for p in segments_of(folder_a, "alpha")}
                assert not shipped_while_stopped <= {p.name for p in segments_of(folder_b, "alpha")}
                sync_a.start()
                wait_for(lambda: set(during) <= set(b.everywhere()), timeout=SYNC_TIMEOUT)
                # --- A's daemon killed mid-segment --------------------------------
                faults.write_text("sync.after_rename=kill")
                (a.data / "current_session").write_text("start\n")  # a file edit: no reply to race the kill
                assert daemon_a.proc.wait(timeout=CLI_TIMEOUT) == -9
                daemon_a.close()
                faults.write_text("")
                daemon_a = spawn_daemon(tmp_path, a.data, a.runtime)
                wait_ready(daemon_a)
                killed_mid = a.run("current").strip()
                a.run("end")
                wait_for(lambda: b.status_of(killed_mid) == "completed", timeout=SYNC_TIMEOUT)
                everywhere = b.everywhere()
                assert len(everywhere) == len(set(everywhere))  # nothing doubled
                assert set(everywhere) == {by_cli, by_file, by_editor, *during, killed_mid}
                # --- planted: a conflict copy, a truncated segment, garbage ------
                newest = segments_of(folder_a, "alpha")[-1]
                number = int(newest.stem.split("-")[1])
                conflict = newest.with_name(f"{newest.stem}.sync-conflict-20261130-120000-ABCDEFG.jsonl")
                shutil.copy(newest, conflict)
                truncated = newest.with_name(f"seg-{number + 50:012d}.jsonl")
                truncated.write_bytes(newest.read_bytes()[:-30])
                (folder_a / "gamma").mkdir()
                (folder_a / "gamma" / "seg-000000000001.jsonl").write_text("garbage\n")

                def told() -> bool:
                    hosts = {h["host"]: h for h in b.sync_status()["hosts"]}  # type: ignore[attr-defined]
                    seen = hosts.get("alpha", {})
                    return bool(
                        seen.get("conflict_copies")
                        and any(truncated.name in p for p in seen.get("problems", ()))
                        and any("gamma" in p for p in hosts.get("gamma", {}).get("problems", ()))
                    )

                wait_for(told, timeout=SYNC_TIMEOUT)
                assert sorted(b.everywhere()) == sorted(everywhere)  # nothing changed
                assert b.run("list", "--json").strip() == "[]"  # and nothing local on B
        finally:
            daemon_a.close()
    report(f"syncthing: a plain file crossed in {latency:.2f} s")

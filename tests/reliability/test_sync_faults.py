"""Sync under real faults: a sync folder on a disk that fills, a folder that
is unmounted while the machine works, a daemon killed mid-segment. After
each, everything reaches the other machine, in order, nothing twice."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from agent.environment import FAULTS_FILE_ENV
from agent.faults import SYNC_POINTS

from ..support.commands import CLI_TIMEOUT, SESSION_AGENT, clean_env
from ..support.daemon_process import run_daemon, spawn_daemon, wait_for, wait_ready
from ..support.disks import fill, mount_bind, small_tmpfs, unmount
from ..support.machines import machine, segments_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root")


def _cli(tmp_path: Path, data: Path, runtime: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(SESSION_AGENT), "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path, SESSION_AGENT_RUNTIME_DIR=str(runtime)),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (args, done.stderr)
    return done


def _shipped(shared: Path, host: str) -> list[tuple[int, str, str]]:
    """Every record in ``host``'s segments, in order: (seq, id, status)."""
    found = []
    for path in segments_of(shared, host):
        for line in path.read_text().splitlines()[1:]:
            record = json.loads(line)
            found.append((record["seq"], record["session"]["id"], record["session"]["status"]))
    return found


def _each_event_once(records: list[tuple[int, str, str]]) -> None:
    """The events segments, after the baseline, each once and in order."""
    seqs = [seq for seq, _, _ in records]
    events = seqs[1:] if seqs[:1] == [0] else seqs
    assert events == sorted(set(events)), seqs


def _work(tmp_path: Path, data: Path, runtime: Path, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        ids.append(_cli(tmp_path, data, runtime, "start").stdout.strip())
        _cli(tmp_path, data, runtime, "end")
    return ids


def _status(tmp_path: Path, data: Path, runtime: Path) -> dict[str, object]:
    found: dict[str, object] = json.loads(_cli(tmp_path, data, runtime, "sync", "status", "--json").stdout)
    return found


def test_a_full_sync_disk_delays_shipping_and_nothing_is_lost_or_doubled(
    tmp_path: Path, runtimes: tuple[Path, Path]
) -> None:
    runtime, _ = runtimes
    with small_tmpfs("1m") as disk:
        shared = disk / "shared"
        shared.mkdir()
        data = machine(tmp_path, "alpha", shared)
        with run_daemon(tmp_path, data, runtime) as daemon:
            first = _work(tmp_path, data, runtime, 1)
            wait_for(lambda: {i for _, i, _ in _shipped(shared, "alpha")} == set(first))
            filler = fill(disk)
            during = _work(tmp_path, data, runtime, 3)  # the store is elsewhere: the machine works on
            wait_for(lambda: "No space left on device" in str(_status(tmp_path, data, runtime)["ship"]))
            assert "No space left on device" in daemon.log()
            assert not list((shared / "alpha").glob(".*"))  # no temp file left behind
            filler.unlink()
            wait_for(lambda: {i for _, i, _ in _shipped(shared, "alpha")} == {*first, *during}, timeout=30)
            wait_for(lambda: _status(tmp_path, data, runtime)["ship"]["behind"] == 0)  # type: ignore[index]
        records = _shipped(shared, "alpha")
        _each_event_once(records)
        assert [s for _, i, s in records if i == during[-1]][-1] == "completed"


def test_an_unmounted_sync_folder_is_not_written_and_catches_up_when_back(
    tmp_path: Path, runtimes: tuple[Path, Path]
) -> None:
    runtime, _ = runtimes
    real = tmp_path / "real-share"
    real.mkdir()
    shared = tmp_path / "mountpoint"
    shared.mkdir()
    mount_bind(real, shared)
    try:
        data = machine(tmp_path, "alpha", shared)
        with run_daemon(tmp_path, data, runtime):
            first = _work(tmp_path, data, runtime, 1)
            wait_for(lambda: {i for _, i, _ in _shipped(real, "alpha")} == set(first))
            unmount(shared)  # the folder is an empty directory now
            during = _work(tmp_path, data, runtime, 2)
            wait_for(lambda: "mounted" in str(_status(tmp_path, data, runtime)["ship"]["problem"]))  # type: ignore[index]
            assert os.listdir(shared) == []  # nothing written under the mount point
            mount_bind(real, shared)  # back, a week later: no event needed, the rescan finds it
            wait_for(lambda: {i for _, i, _ in _shipped(real, "alpha")} == {*first, *during}, timeout=30)
        _each_event_once(_shipped(real, "alpha"))
    finally:
        unmount(shared, check=False)


@pytest.mark.parametrize("point", SYNC_POINTS)
def test_a_daemon_killed_mid_segment_ships_everything_once_after_its_restart(
    tmp_path: Path, runtimes: tuple[Path, Path], point: str
) -> None:
    runtime, _ = runtimes
    shared = tmp_path / "shared"
    shared.mkdir()
    data = machine(tmp_path, "alpha", shared)
    faults = tmp_path / "faults"
    faults.write_text("")
    env = {FAULTS_FILE_ENV: str(faults)}
    daemon = spawn_daemon(tmp_path, data, runtime, env=env)
    try:
        wait_ready(daemon)
        first = _work(tmp_path, data, runtime, 1)
        wait_for(lambda: {i for _, i, _ in _shipped(shared, "alpha")} == set(first))
        faults.write_text(f"{point}=kill")  # the next segment's write is killed midway
        (data / "current_session").write_text("start\n")  # a file edit: no reply to race with the kill
        assert daemon.proc.wait(timeout=CLI_TIMEOUT) == -9
    finally:
        daemon.close()
    leftovers = [p.name for p in (shared / "alpha").iterdir() if p.name.startswith(".")]
    assert bool(leftovers) == (point == "sync.before_rename")  # killed before the rename: a temp file
    faults.write_text("")
    with run_daemon(tmp_path, data, runtime):
        second = _cli(tmp_path, data, runtime, "current").stdout.strip()  # started before the kill
        assert second not in first
        _cli(tmp_path, data, runtime, "end")
        wait_for(lambda: [(i, s) for _, i, s in _shipped(shared, "alpha")][-1:] == [(second, "completed")])
    assert not [p for p in (shared / "alpha").iterdir() if p.name.startswith(".")]  # the temp file removed
    records = _shipped(shared, "alpha")
    _each_event_once(records)
    assert {i for _, i, _ in records} == {*first, second}

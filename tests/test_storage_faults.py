"""Real storage faults: store files damaged or lost on disk, the store
refused as it is (never recreated, never silently cut back), and what the
user can do about it (``doctor``, ``repair``, snapshots).

Each damage is made the way it happens: files removed, truncated or
overwritten on disk after a ``kill -9`` of the daemon that wrote them.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from .conftest import Cli, start_session
from .daemon_process import run_daemon, spawn_daemon, wait_for

pytestmark = pytest.mark.reliability


def _store_files(data_dir: Path) -> dict[str, int]:
    """The store's data files (not RocksDB's info logs and LOCK) and sizes."""
    db = data_dir / "db"
    kept = ("CURRENT", "MANIFEST-", "OPTIONS-", "IDENTITY")
    return {
        p.name: p.stat().st_size
        for p in db.iterdir()
        if p.name.endswith((".sst", ".log")) or p.name.startswith(kept)
    }


def _history(cli: Cli, ended: int) -> tuple[list[str], str]:
    ids = []
    for _ in range(ended):
        ids.append(start_session(cli))
        assert cli("end").returncode == 0
    return ids, start_session(cli)


def test_a_lost_current_file_of_the_store_is_refused_and_nothing_is_deleted(cli: Cli, data_dir: Path) -> None:
    # Before: the first command exited 5, the second made a new empty store
    # over the old one and RocksDB deleted every old file: six sessions gone.
    _, active = _history(cli, 6)
    (data_dir / "db" / "CURRENT").unlink()
    before = _store_files(data_dir)
    for _ in range(3):
        done = cli("list")
        assert done.returncode == 5
        assert "is damaged and was left as it is: its CURRENT file, which names the rest, is missing" in (
            done.stderr
        )
        assert "session-agent repair" in done.stderr
        assert cli("start").returncode == 5  # a write is refused just the same
    assert _store_files(data_dir) == before  # not one file deleted or rewritten
    assert (data_dir / "current_session").read_text() == f"{active}\n"  # not "restored" away


def _killed_daemon_history(tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, n: int) -> list[str]:
    """``n`` sessions acknowledged through a daemon that is then killed: all
    of them live in the write-ahead log only."""
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        ids, active = _history(cli, n - 1)
        ids.append(active)
        cli("end")
        daemon.send(signal.SIGKILL)
        daemon.proc.wait(timeout=10)
    return ids


def _newest_log(data_dir: Path) -> Path:
    return max((data_dir / "db").glob("*.log"), key=lambda p: int(p.stem))


def test_a_log_damaged_in_its_middle_is_refused(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    # Before: RocksDB's default recovery stopped silently at the damage:
    # 15 of 30 acknowledged sessions gone, a completed one active again.
    _killed_daemon_history(tmp_path, data_dir, runtime_dir, cli, 30)
    log = _newest_log(data_dir)
    raw = bytearray(log.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    log.write_bytes(bytes(raw))
    done = cli("list", "--json")
    assert done.returncode == 5
    assert "is damaged and was left as it is" in done.stderr
    assert "Corruption" in done.stderr
    assert done.stdout == ""


def test_a_torn_last_record_is_what_a_crash_leaves_and_opens(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    # A crash in the middle of a write leaves its record torn: that write
    # was never acknowledged, and the store opens with everything before it.
    ids = _killed_daemon_history(tmp_path, data_dir, runtime_dir, cli, 10)
    log = _newest_log(data_dir)
    with open(log, "ab") as f:
        f.write(b"\x13\x37\x00\x11\x22")  # the first bytes of a record header, no more
    listed = json.loads(cli("list", "--json", "--limit", "0").stdout)
    assert {s["id"] for s in listed} == set(ids)
    assert all(s["status"] == "completed" for s in listed)


def test_a_data_dir_with_leftovers_of_a_failed_first_open_is_still_a_new_store(
    cli: Cli, data_dir: Path
) -> None:
    # RocksDB's info log, its LOCK and rocksdict's config are written before
    # anything else: a first open that died there left no store to protect.
    db = data_dir / "db"
    db.mkdir(mode=0o700)
    for name in ("LOG", "LOCK", "rocksdict-config.json"):
        (db / name).write_text("")
    assert cli("start").returncode == 0


def test_a_log_cut_back_to_a_record_boundary_is_caught_by_the_current_file(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    # The log cut back to an earlier record is a torn tail to RocksDB, and
    # before, the store opened without the newest sessions: the current
    # file naming one of them was "restored" away. The file is the witness.
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        _history(cli, 20)  # ends with a session active, named by the file
        daemon.send(signal.SIGKILL)
        daemon.proc.wait(timeout=10)
    named = (data_dir / "current_session").read_text()
    log = _newest_log(data_dir)
    log.write_bytes(log.read_bytes()[: log.stat().st_size // 2])
    done = cli("current")
    assert done.returncode == 5
    assert f"names session {named.strip()}, newer than any the store holds" in done.stderr
    assert (data_dir / "current_session").read_text() == named  # kept, as the evidence
    refused = spawn_daemon(tmp_path, data_dir, runtime_dir)
    try:
        assert refused.proc.wait(timeout=20) == 5
        assert "writes the store acknowledged are missing" in refused.log()
    finally:
        refused.close()


# --- snapshots, doctor, repair -----------------------------------------------------------------


def _snapshots(data_dir: Path) -> list[Path]:
    directory = data_dir / "snapshots"
    return sorted(p for p in directory.iterdir() if not p.name.startswith(".")) if directory.exists() else []


def test_the_daemon_takes_a_snapshot_at_start_and_as_config_toml_says(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    (data_dir / "config.toml").write_text('[snapshots]\nevery = "1s"\nkeep = 2\n')
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        wait_for(lambda: "took a snapshot of the store" in daemon.log())
        for _ in range(3):
            taken = daemon.log().count("took a snapshot")
            start_session(cli)
            cli("end")
            wait_for(lambda n=taken: daemon.log().count("took a snapshot") > n)  # type: ignore[misc]
    assert len(_snapshots(data_dir)) == 2  # keep = 2: the oldest were removed
    newest = _snapshots(data_dir)[-1]
    assert (newest / "CURRENT").is_file()  # a store of its own


def test_no_snapshot_when_nothing_changed_and_none_when_turned_off(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    (data_dir / "config.toml").write_text('[snapshots]\nevery = "0"\n')
    start_session(cli)  # embedded: would take one as it closes
    with run_daemon(tmp_path, data_dir, runtime_dir):
        cli("end")
    assert _snapshots(data_dir) == []


def test_doctor_says_ok_on_a_sound_store_and_names_the_damage_on_a_broken_one(
    cli: Cli, data_dir: Path
) -> None:
    _history(cli, 3)
    done = cli("doctor")
    assert done.returncode == 0, done.stdout
    assert "ok      the store opens: 4 sessions (1 active, 3 completed)" in done.stdout
    assert "problem" not in done.stdout
    report = json.loads(cli("doctor", "--json").stdout)
    assert report["healthy"] is True
    (data_dir / "db" / "CURRENT").unlink()
    before = _store_files(data_dir)
    broken = cli("doctor")
    assert broken.returncode == 5
    assert "problem the store" in broken.stdout
    assert "CURRENT file, which names the rest, is missing" in broken.stdout
    assert "ok      snapshot" in broken.stdout  # the embedded commands took one
    assert _store_files(data_dir) == before  # it changed nothing


def test_doctor_runs_beside_the_daemon(tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir):
        sid = start_session(cli)
        done = cli("doctor")
        assert done.returncode == 0, done.stdout
        assert "the store opens: 1 sessions (1 active)" in done.stdout
        assert cli("current").stdout.strip() == sid


def test_repair_restores_the_snapshot_and_salvages_the_rest(cli: Cli, data_dir: Path) -> None:
    first, first_active = _history(cli, 2)  # the first close took a snapshot (then 1 session)
    cli("end")
    later, active = _history(cli, 3)
    every = [*first, first_active, *later]
    (data_dir / "db" / "CURRENT").unlink()
    assert cli("list").returncode == 5
    done = cli("repair")
    assert done.returncode == 0, done.stderr
    assert "the store was damaged: its CURRENT file, which names the rest, is missing" in done.stdout
    kept = next(data_dir.glob("db.damaged-*"))
    assert f"moved it, whole, to {kept}" in done.stdout
    assert "restored snapshot" in done.stdout
    assert "salvaged from the damaged store:" in done.stdout
    listed = {s["id"]: s for s in json.loads(cli("list", "--limit", "0", "--json").stdout)}
    assert set(listed) == {*every, active}  # every session back
    assert all(listed[sid]["status"] == "completed" for sid in every)
    assert listed[active]["status"] == "active"
    assert cli("current").stdout.strip() == active
    assert cli("doctor").returncode == 0
    again = cli("repair")
    assert "nothing to repair" in again.stdout


def test_repair_after_a_cut_back_log_sets_the_witness_aside_and_says_so(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        _history(cli, 20)
        daemon.send(signal.SIGKILL)
        daemon.proc.wait(timeout=10)
    log = _newest_log(data_dir)
    log.write_bytes(log.read_bytes()[: log.stat().st_size // 2])
    assert cli("current").returncode == 5
    done = cli("repair", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["repaired"] is True
    assert report["current_files_set_aside"] == [str(data_dir / "current_session")]
    assert (data_dir / "current_session.lost").exists()
    assert cli("current").returncode in (0, 1)  # the store opens again
    assert cli("doctor").returncode == 0


def test_repair_refuses_while_a_daemon_runs(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        done = cli("repair")
        assert done.returncode == 6
        assert f"a daemon (pid {daemon.pid}) already runs" in done.stderr
        assert "a repair needs the store to itself" in done.stderr

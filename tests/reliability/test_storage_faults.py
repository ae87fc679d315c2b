"""Real storage faults: store files damaged or lost on disk, the store
refused as it is (never recreated, never silently cut back), and what the
user can do about it (``doctor``, ``repair``, snapshots).

Each damage is made the way it happens: files removed, truncated or
overwritten on disk after a ``kill -9`` of the daemon that wrote them.
"""

from __future__ import annotations

import functools
import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.commands import SESSION_AGENT, Cli, clean_env, start_session
from ..support.daemon_process import refused_daemon, run_daemon, wait_for
from ..support.disks import fill, small_tmpfs

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
    assert "writes the store acknowledged are missing" in refused_daemon(tmp_path, data_dir, runtime_dir, 5)


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
    # The log agrees with what came back: each session's newest event carries it as it is.
    newest = {}
    for line in cli("events", "--json").stdout.splitlines():
        event = json.loads(line)
        newest[event["session"]["id"]] = event["session"]
    assert newest == listed
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


# --- a failed write: find the truth, keep serving ----------------------------------------------


class Strace:
    """``strace`` attached to a running process, injecting a syscall error;
    detached (the fault lifted) by ``lift``."""

    def __init__(self, pid: int, inject: str) -> None:
        program = shutil.which("strace")
        assert program is not None, "scripts/test installs strace"
        self.proc = subprocess.Popen(
            [program, "-f", "-qq", "-o", "/dev/null", "-e", f"inject={inject}", "-p", str(pid)],
            stderr=subprocess.DEVNULL,
        )
        # Attached once the tracee's threads are stopped and resumed: wait
        # until strace itself reports the tracee in its status.
        wait_for(lambda: _traced_by(pid) == self.proc.pid, timeout=20)

    def lift(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # strace detaches cleanly
            self.proc.wait(timeout=20)


def _traced_by(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return 0


def _outcome_holds(cli: Cli, scope: str, answer: subprocess.CompletedProcess[str]) -> str | None:
    """The scope's current session, checked against what ``start`` answered."""
    current = cli("current", "--scope", scope)
    if answer.returncode == 0:
        assert current.stdout == answer.stdout, "told started, yet not active"
    elif answer.returncode == 5:
        assert current.returncode == 1, f"told failed, yet active: {current.stdout}"
    else:
        assert answer.returncode == 8, answer.stderr  # the only other answer: unknown
    return current.stdout.strip() or None


@pytest.mark.parametrize("lasting", [False, True], ids=["one-fault", "fault-until-lifted"])
def test_a_failed_sync_is_answered_truthfully_and_the_daemon_keeps_serving(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, lasting: bool
) -> None:
    # Before: after one fdatasync EIO every later write failed, in every
    # scope, until a restart; a "failed" start came back active after it;
    # SIGTERM then exited 5.
    when = "1+" if lasting else "1"
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        other = start_session(cli)
        tracer = Strace(daemon.pid, f"fdatasync:error=EIO:when={when}")
        try:
            answer = cli("start", "--scope", "x")
            assert "Traceback" not in answer.stderr
            if lasting:
                assert answer.returncode in (5, 8), answer.stderr
        finally:
            tracer.lift()
        seen = _outcome_holds(cli, "x", answer)
        # Writes work again at once, in every scope, without a restart.
        assert cli("end", "--scope", "x").returncode == 0
        assert cli("current", "--scope", "x").returncode == 1
        assert cli("end").returncode == 0
        again = start_session(cli)
        assert cli("current").stdout.strip() == again
        assert daemon.stop() == 0  # SIGTERM: the session state is safe
    with run_daemon(tmp_path, data_dir, runtime_dir):
        assert cli("current", "--scope", "x").returncode == 1  # the ended stays ended
        assert cli("current").stdout.strip() == again
        listed = {s["id"]: s["status"] for s in json.loads(cli("list", "--limit", "0", "--json").stdout)}
        assert listed[other] == "completed"
        if seen is not None:
            assert listed[seen] == "completed"


# --- a full disk: reads answer from the store ----------------------------------------------------


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 8 MiB tmpfs of its own: a disk that really fills."""
    with small_tmpfs("8m") as disk:
        yield disk


def test_on_a_full_disk_reads_answer_from_the_store_and_the_file_is_mended_after(
    tmp_path: Path, small_disk: Path, runtime_dir: Path, cli: Cli
) -> None:
    # Before: current, touch and end failed with ENOSPC while the store was
    # fine, because each first rewrote the file; after space returned, the
    # file stayed wrong for up to 30 s.
    data_dir = small_disk / "data"
    data_dir.mkdir(mode=0o700)
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        run = functools.partial(cli, data=data_dir)
        sid = run("start").stdout.strip()
        filler = fill(small_disk)
        (data_dir / "current_session").write_text("garbage\n")  # in place: no new block needed
        for args in (["current"], ["show", "--json"], ["list", "--json"], ["status"]):
            done = run(*args)
            assert done.returncode == 0, (args, done.stderr)
            assert sid in done.stdout, args
        wait_for(lambda: "No space left on device" in daemon.log())
        filler.unlink()  # space returns
        wait_for(lambda: (data_dir / "current_session").read_text() == f"{sid}\n", timeout=5)
        assert run("end").returncode == 0


def test_on_a_full_disk_reads_without_a_daemon_answer_from_the_store(small_disk: Path, cli: Cli) -> None:
    # Opening the store for writing writes (RocksDB persists its options):
    # before, an embedded `current` on a full disk exited 5.
    data_dir = small_disk / "data"
    data_dir.mkdir(mode=0o700)
    run = functools.partial(cli, data=data_dir)
    first = run("start").stdout.strip()
    run("end")
    sid = run("start").stdout.strip()
    filler = fill(small_disk)
    try:
        for args in (["current"], ["list", "--json"], ["show", first, "--json"], ["status"]):
            done = run(*args)
            assert done.returncode in (0, 7), (args, done.stderr)  # 7: status without a daemon
            assert sid in done.stdout or first in done.stdout, args
            assert "Traceback" not in done.stderr
    finally:
        filler.unlink()
    assert run("current").stdout.strip() == sid


def _fdatasyncs(tmp_path: Path, data_dir: Path, runtime_dir: Path, *args: str) -> list[str]:
    """The files an embedded command fdatasyncs, in order, as found by a
    run on a copy of ``data_dir`` (RocksDB's own order of work: the open,
    the commit's log sync, the flushes of the close)."""
    twin = tmp_path / "twin"
    shutil.rmtree(twin, ignore_errors=True)
    shutil.copytree(data_dir, twin, symlinks=True)
    trace = tmp_path / "trace"
    strace = shutil.which("strace")
    assert strace is not None
    subprocess.run(
        [
            strace,
            "-f",
            "-y",
            "-e",
            "trace=fdatasync",
            "-o",
            str(trace),
            str(SESSION_AGENT),
            "--data-dir",
            str(twin),
            *args,
        ],
        capture_output=True,
        env=clean_env(tmp_path, SESSION_AGENT_RUNTIME_DIR=str(runtime_dir)),
        timeout=60,
        check=True,
    )
    return [
        line.split("<", 1)[1].split(">", 1)[0]
        for line in trace.read_text().splitlines()
        if "fdatasync(" in line
    ]


def _embedded_with_eio(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, when: str, *args: str
) -> subprocess.CompletedProcess[str]:
    strace = shutil.which("strace")
    assert strace is not None
    return subprocess.run(
        [
            strace,
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            f"inject=fdatasync:error=EIO:when={when}",
            str(SESSION_AGENT),
            "--data-dir",
            str(data_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path, SESSION_AGENT_RUNTIME_DIR=str(runtime_dir)),
        timeout=60,
        check=False,
    )


def test_an_embedded_start_whose_close_fails_still_says_it_started(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    # Before: exit 5 and no id (through click: a traceback), for a start
    # that was committed and synced. Two commands before it, not four: the
    # fifth open of a store starts RocksDB's background compaction (four
    # level-0 files), whose syncs would interleave with the close's at random.
    start_session(cli)
    cli("end")
    syncs = _fdatasyncs(tmp_path, data_dir, runtime_dir, "start")
    close = next(i for i, path in enumerate(syncs) if path.endswith(".sst"))  # the close's first flush
    done = _embedded_with_eio(tmp_path, data_dir, runtime_dir, f"{close + 1}+", "start")
    assert done.returncode == 0, done.stderr
    sid = done.stdout.strip()
    assert "what this command did is on disk" in done.stderr
    assert "Traceback" not in done.stderr
    assert cli("current").stdout.strip() == sid


def test_an_embedded_replace_whose_sync_fails_is_answered_truthfully(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    # Before: a failed `start --replace` took effect at the next open.
    before = start_session(cli)
    syncs = _fdatasyncs(tmp_path, data_dir, runtime_dir, "start", "--replace")
    commit = next(i for i, path in enumerate(syncs) if path.endswith(".log"))
    done = _embedded_with_eio(tmp_path, data_dir, runtime_dir, f"{commit + 1}+", "start", "--replace")
    assert "Traceback" not in done.stderr
    now = cli("current").stdout.strip()
    if done.returncode == 0:
        assert now == done.stdout.strip() != before
    elif done.returncode == 5:
        assert now == before, "told failed, yet it took effect"
    else:
        assert done.returncode == 8, done.stderr
        assert "may or may not have taken effect" in done.stderr

"""Sessions from several machines through a shared folder: shipping from the
event log's cursor, taking in, the remote view, bad files, identity.

Here the folder is a plain directory both machines write (what a network
file system gives); ``tests/integrations/test_syncthing.py`` runs the same
through two real Syncthings, ``tests/reliability/test_sync_faults.py`` the
faults (a full disk, an unmounted folder, a daemon killed mid-segment)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent import Session, SessionManager
from agent.config import Retention, load_settings
from agent.details import DetailsChange, Host
from agent.sync_intake import Intake
from agent.sync_settings import SyncSettings
from agent.sync_ship import SHIP_KEY, SyncUnavailable, ship

from ..support.commands import CLI_TIMEOUT, SESSION_AGENT, Cli, clean_env, open_manager
from ..support.daemon_process import run_daemon, wait_for
from ..support.machines import machine, remote_ids, segments_of


def _sync(data: Path) -> SyncSettings:
    found = load_settings(data).sync
    assert found is not None
    return found


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    path = tmp_path / "shared"
    path.mkdir()
    return path


@pytest.fixture
def alpha(tmp_path: Path, shared: Path) -> Iterator[tuple[SessionManager, SyncSettings]]:
    data = machine(tmp_path, "alpha", shared)
    with open_manager(data) as m:
        yield m, _sync(data)


@pytest.fixture
def beta(tmp_path: Path, shared: Path) -> Iterator[tuple[SessionManager, SyncSettings]]:
    data = machine(tmp_path, "beta", shared)
    with open_manager(data) as m:
        yield m, _sync(data)


def _now() -> datetime:
    return datetime.now(UTC)


def _remote(manager: SessionManager) -> dict[str, tuple[str, Session]]:
    return {s.id: (host, s) for host, s in manager.store.remote.newest_first()}


def test_a_machine_s_history_reaches_the_other_with_its_host_and_newest_versions(
    alpha: tuple[SessionManager, SyncSettings], beta: tuple[SessionManager, SyncSettings], shared: Path
) -> None:
    a, a_sync = alpha
    b, b_sync = beta
    first = a.start()
    a.update(None, DetailsChange(add_tags=("review",)))
    a.end()
    second = a.start()
    assert ship(a.store, a_sync, _now()) == 1  # the first shipment is a baseline
    a.end()
    assert ship(a.store, a_sync, _now()) == 1
    assert ship(a.store, a_sync, _now()) == 0  # nothing new: nothing written
    Intake().take_in(b.store, b_sync, "beta", _now())
    held = _remote(b)
    assert set(held) == {first.id, second.id}
    host, ended = held[second.id]
    assert host == "alpha"
    local = a.get(second.id)
    assert local is not None
    assert local.details.host is not None
    assert ended == local.replace(owner_pid=None, details=local.details.replace(host=ended.details.host))
    assert ended.details.host == Host("alpha", local.details.host.machine_id)
    assert held[first.id][1].details.tags == ("review",)
    assert b.list_sessions(scope=None) == []  # nothing local on beta
    assert b.get(first.id) is None  # remote ids are not local sessions
    # beta's own folder is never read as another host's
    ship(b.store, b_sync, _now())
    Intake().take_in(a.store, a_sync, "alpha", _now())
    assert a.store.remote.hosts() == ["beta"]
    assert _remote(a) == {}


def test_segments_taken_in_any_order_or_twice_keep_the_newest_version(
    alpha: tuple[SessionManager, SyncSettings], beta: tuple[SessionManager, SyncSettings], shared: Path
) -> None:
    a, a_sync = alpha
    b, b_sync = beta
    session = a.start()
    ship(a.store, a_sync, _now())
    for n in range(3):
        a.count(None, n + 1)
        ship(a.store, a_sync, _now())
    a.end()
    ship(a.store, a_sync, _now())
    written = segments_of(shared, "alpha")
    assert len(written) == 5
    aside = shared.parent / "aside"
    shutil.move(shared / "alpha", aside)
    (shared / "alpha").mkdir()
    for segment in reversed(written):  # newest first, each taken in as it arrives
        shutil.copy(aside / segment.name, shared / "alpha" / segment.name)
        Intake().take_in(b.store, b_sync, "beta", _now())
    Intake().take_in(b.store, b_sync, "beta", _now())  # and again: nothing changes
    _host, held = _remote(b)[session.id]
    assert held.status.value == "completed"
    local = a.get(session.id)
    assert local is not None
    assert (held.memory_count, held.ended_at) == (6, local.ended_at)


def test_omitted_fields_and_owner_pids_never_leave_the_machine(
    tmp_path: Path, shared: Path, beta: tuple[SessionManager, SyncSettings]
) -> None:
    data = machine(tmp_path, "private", shared, omit=("cwd", "title", "git", "labels"))
    b, b_sync = beta
    with open_manager(data) as a:
        from agent.config import StartRequest
        from agent.details import Details

        details = Details(cwd=str(tmp_path), title="secret plan", labels={"k": "v"}, project="p")
        started = a.start(StartRequest(owner_pid=os.getpid(), details=details))
        ship(a.store, _sync(data), _now())
    text = "".join(p.read_text() for p in segments_of(shared, "private"))
    assert "secret plan" not in text
    assert str(tmp_path) not in text
    Intake().take_in(b.store, b_sync, "beta", _now())
    _, held = _remote(b)[started.id]
    d = held.details
    assert (d.cwd, d.title, d.git, d.labels, d.project) == (None, None, None, (), "p")
    assert held.owner_pid is None


def test_a_segment_written_but_not_recorded_is_gone_on_from_not_shipped_again(
    alpha: tuple[SessionManager, SyncSettings], shared: Path
) -> None:
    """A process killed after the rename, before the cursor moved: the next
    shipment goes on after that segment."""
    a, a_sync = alpha
    a.start()
    ship(a.store, a_sync, _now())
    before = a.store.get_meta(SHIP_KEY)
    a.end()
    ship(a.store, a_sync, _now())
    a.store.commit(meta={SHIP_KEY: before})  # the cursor as a kill after the rename left it
    a.start()
    ship(a.store, a_sync, _now())
    written = segments_of(shared, "alpha")
    seqs = [json.loads(line)["seq"] for p in written[1:] for line in p.read_text().splitlines()[1:]]
    assert seqs == [2, 3]  # event 2 (the end) once, then the start


def test_a_trimmed_log_or_a_restored_store_ships_a_baseline(
    alpha: tuple[SessionManager, SyncSettings], beta: tuple[SessionManager, SyncSettings], shared: Path
) -> None:
    a, a_sync = alpha
    b, b_sync = beta
    a.store.events.retention = Retention(keep=8)
    first = a.start()
    ship(a.store, a_sync, _now())
    for _ in range(40):  # the log keeps 8: the cursor falls behind its start
        a.touch()
        a.count(None, 1)
    a.end()
    ship(a.store, a_sync, _now())
    kinds = [json.loads(p.read_text().splitlines()[0])["kind"] for p in segments_of(shared, "alpha")]
    assert kinds == ["baseline"]  # the old baseline was replaced, the events in between were gone
    # a store restored from an older snapshot numbers its events again: a new epoch
    state = json.loads(a.store.get_meta(SHIP_KEY) or b"{}")
    a.store.commit(meta={SHIP_KEY: json.dumps(state | {"cursor": state["cursor"] + 1000}).encode()})
    a.update(first.id, DetailsChange(texts={"title": "after the restore"}))
    ship(a.store, a_sync, _now())
    header = json.loads(segments_of(shared, "alpha")[-1].read_text().splitlines()[0])
    assert (header["kind"], header["epoch"]) == ("baseline", 2)
    Intake().take_in(b.store, b_sync, "beta", _now())
    assert _remote(b)[first.id][1].details.title == "after the restore"


def test_many_segments_are_replaced_by_a_baseline(
    alpha: tuple[SessionManager, SyncSettings],
    beta: tuple[SessionManager, SyncSettings],
    shared: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agent.sync_ship

    monkeypatch.setattr(agent.sync_ship, "COMPACT_AFTER", 4)
    a, a_sync = alpha
    b, b_sync = beta
    ids = []
    for _ in range(6):
        ids.append(a.start().id)
        ship(a.store, a_sync, _now())
        a.end()
        ship(a.store, a_sync, _now())
    assert len(segments_of(shared, "alpha")) <= 5
    Intake().take_in(b.store, b_sync, "beta", _now())  # a newcomer: the baseline tells all
    held = _remote(b)
    assert set(held) == set(ids)
    assert all(s.status.value == "completed" for _, s in held.values())


def test_bad_files_are_skipped_with_a_warning_naming_them_and_nothing_local_changes(
    alpha: tuple[SessionManager, SyncSettings],
    beta: tuple[SessionManager, SyncSettings],
    shared: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, a_sync = alpha
    b, b_sync = beta
    local = b.start()
    good = a.start()
    ship(a.store, a_sync, _now())
    a.end()
    ship(a.store, a_sync, _now())
    later = a.start()
    ship(a.store, a_sync, _now())
    folder = shared / "alpha"
    first, second, third = segments_of(shared, "alpha")
    whole = third.read_bytes()
    # a conflict copy, a partial download, a truncated segment, a stray file
    shutil.copy(second, folder / "seg-000000000002.sync-conflict-20261130-101010-ABCDEFG.jsonl")
    (folder / ".syncthing.seg-000000000004.jsonl.tmp").write_text("partial")
    third.write_bytes(whole[:-40])
    (folder / "notes.txt").write_text("hello")
    # a host folder whose segments say another host; garbage; a bad folder name
    (shared / "gamma").mkdir()
    shutil.copy(first, shared / "gamma" / "seg-000000000001.jsonl")
    (shared / "delta").mkdir()
    (shared / "delta" / "seg-000000000001.jsonl").write_bytes(os.urandom(500))
    (shared / "bad name!").mkdir()
    caplog.set_level(logging.WARNING)
    intake = Intake()  # the daemon's: it says each bad file once per version of it
    intake.take_in(b.store, b_sync, "beta", _now())
    said = caplog.text
    assert "seg-000000000003.jsonl" in said
    assert "checksum" in said
    assert "gamma/seg-000000000001.jsonl" in said
    assert "'alpha'" in said
    assert "delta/seg-000000000001.jsonl" in said
    assert "bad name!" in said
    assert "conflict" not in said  # passed over quietly: sync status lists them
    assert set(_remote(b)) == {good.id}
    assert _remote(b)[good.id][1].status.value == "completed"
    assert b.current() == local
    assert b.list_sessions(scope=None) == [local]
    caplog.clear()
    intake.take_in(b.store, b_sync, "beta", _now())
    assert caplog.text == ""
    from agent.sync_status import sync_status

    status = sync_status(b.store, b_sync, _now())
    alpha_status = next(h for h in status["hosts"] if h["host"] == "alpha")
    assert alpha_status["pending"] == 1  # the truncated one: read again when it changes
    assert alpha_status["conflict_copies"]
    assert alpha_status["stray_files"] == ["notes.txt"]
    # the sync engine finishes the file: it is taken in
    third.write_bytes(whole)
    intake.take_in(b.store, b_sync, "beta", _now())
    assert set(_remote(b)) == {good.id, later.id}


def test_an_oversized_segment_is_refused(
    alpha: tuple[SessionManager, SyncSettings],
    beta: tuple[SessionManager, SyncSettings],
    shared: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agent.segments

    a, a_sync = alpha
    b, b_sync = beta
    a.start()
    ship(a.store, a_sync, _now())
    monkeypatch.setattr(agent.segments, "MAX_SEGMENT_BYTES", 100)
    caplog.set_level(logging.WARNING)
    Intake().take_in(b.store, b_sync, "beta", _now())
    assert "seg-000000000001.jsonl is larger than 100 bytes" in caplog.text
    assert _remote(b) == {}


def test_a_store_on_another_machine_ships_only_once_told_as_which_host(
    tmp_path: Path, shared: Path, alpha: tuple[SessionManager, SyncSettings]
) -> None:
    a, a_sync = alpha
    a.start()
    ship(a.store, a_sync, _now())
    state = json.loads(a.store.get_meta(SHIP_KEY) or b"{}")
    a.store.commit(meta={SHIP_KEY: json.dumps(state | {"machine": "another-machine"}).encode()})
    unnamed = SyncSettings(shared)  # no [sync] host: the hostname
    with pytest.raises(
        SyncUnavailable, match=r"shipped as host 'alpha' from another machine.*host = \"alpha\""
    ):
        ship(a.store, unnamed, _now())
    a.end()
    assert ship(a.store, a_sync, _now()) == 1  # told: it goes on as alpha
    assert json.loads(a.store.get_meta(SHIP_KEY) or b"{}")["machine"] != "another-machine"


def test_remote_sessions_through_the_cli_read_only(cli: Cli, tmp_path: Path, shared: Path) -> None:
    """No daemon: each command opens the store itself, ships what it
    changed, and takes in before it reads other machines' sessions."""
    a = machine(tmp_path, "alpha", shared)
    b = machine(tmp_path, "beta", shared)
    started = cli("start", "--project", "engine", data=a)
    assert started.returncode == 0, started.stderr
    session_id = started.stdout.strip()
    assert cli("start", "--project", "docs", data=b).returncode == 0  # the two run at once a while
    assert cli("end", data=a).returncode == 0
    listed = cli("list", "--all-hosts", "--json", data=b)
    assert listed.returncode == 0, listed.stderr
    hosts = {item["id"]: item["host"]["hostname"] for item in json.loads(listed.stdout)}
    assert hosts[session_id] == "alpha"
    assert sorted(hosts.values()) == ["alpha", "beta"]
    table = cli("list", "--all-hosts", data=b).stdout
    assert table.splitlines()[0].startswith("HOST")
    assert "alpha" in table
    assert remote_ids(cli("list", "--host", "alpha", "--json", data=b).stdout) == [session_id]
    assert cli("list", "--json", data=b).stdout.count('"id"') == 1  # this machine's alone by default
    shown = cli("show", session_id, "--all-hosts", "--json", data=b)
    assert json.loads(shown.stdout)["project"] == "engine"
    not_here = cli("show", session_id, data=b)  # not one of this machine's: it says whose
    assert not_here.returncode == 4
    assert "it is host alpha's; add --host alpha" in not_here.stderr
    for change in (("end", session_id), ("tag", session_id, "+x"), ("count", session_id, "1")):
        refused = cli(*change, data=b)
        assert refused.returncode == 4, (change, refused.stdout, refused.stderr)
    unknown = cli("list", "--host", "nowhere", data=b)
    assert unknown.returncode == 2
    assert "nowhere" in unknown.stderr
    assert "alpha" in unknown.stderr
    assert "not both" in cli("list", "--host", "alpha", "--all-hosts", data=b).stderr
    report = json.loads(cli("report", "--all-hosts", "--since", "1h", "--json", data=b).stdout)
    per_host = {h["host"]: h for h in report["hosts"]}
    assert sorted(per_host) == ["alpha", "beta"]
    total = report["total"]
    assert total["sessions"] == 2
    assert total["wall_seconds"] == pytest.approx(sum(h["wall_seconds"] for h in per_host.values()), abs=0.01)
    # the time both ran is counted once in what the total covered
    assert max(h["wall_seconds"] for h in per_host.values()) <= total["covered_wall_seconds"]
    assert total["covered_wall_seconds"] < total["wall_seconds"]
    assert "counted once" in cli("report", "--all-hosts", "--since", "1h", data=b).stdout
    exported = cli("export", "--all-hosts", data=b).stdout.splitlines()
    assert sorted(json.loads(line)["host"]["hostname"] for line in exported) == ["alpha", "beta"]
    status = json.loads(cli("sync", "status", "--json", data=b).stdout)
    assert status["host"] == "beta"
    assert [h["host"] for h in status["hosts"]] == ["alpha"]
    assert "as beta in" in cli("status", data=b).stdout
    assert cli("sync", "status", data=tmp_path / "nowhere").returncode == 1


def test_two_daemons_share_their_sessions(tmp_path: Path, shared: Path) -> None:
    a = machine(tmp_path, "alpha", shared)
    b = machine(tmp_path, "beta", shared)
    runtime_a, runtime_b = tmp_path / "ra", tmp_path / "rb"
    with run_daemon(tmp_path, a, runtime_a), run_daemon(tmp_path, b, runtime_b):
        env_a = {"SESSION_AGENT_RUNTIME_DIR": str(runtime_a)}
        by_cli = _run(tmp_path, a, env_a, "start", "--project", "engine").stdout.strip()
        (a / "current_session").write_text("end\n")  # through the file
        wait_for(lambda: not (a / "current_session").exists())
        (a / "current_session").write_text("start\n")
        wait_for(lambda: len((a / "current_session").read_text().strip()) == 36)
        by_file = (a / "current_session").read_text().strip()

        def listed() -> list[str]:
            done = _run(
                tmp_path, b, {"SESSION_AGENT_RUNTIME_DIR": str(runtime_b)}, "list", "--all-hosts", "--json"
            )
            return remote_ids(done.stdout)

        wait_for(lambda: set(listed()) == {by_cli, by_file}, timeout=30)
        status = json.loads(
            _run(
                tmp_path, b, {"SESSION_AGENT_RUNTIME_DIR": str(runtime_b)}, "sync", "status", "--json"
            ).stdout
        )
        (host,) = status["hosts"]
        assert host["host"] == "alpha"
        assert host["pending"] == 0
        assert host["taken_in"] >= 1


def _run(tmp_path: Path, data: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(SESSION_AGENT), "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path, **env),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_a_second_store_named_like_a_host_that_ships_writes_nothing_into_its_folder(
    tmp_path: Path, shared: Path, alpha: tuple[SessionManager, SyncSettings]
) -> None:
    """Two machines given one name (or a data dir made anew): the newcomer
    never writes into the folder another store ships to, nor deletes its
    segments with a baseline of its own."""
    a, a_sync = alpha
    a.start()
    ship(a.store, a_sync, _now())
    before = {p.name: p.read_bytes() for p in segments_of(shared, "alpha")}
    twin = machine(tmp_path / "twin", "alpha", shared)
    with open_manager(twin) as other:
        other.start()
        with pytest.raises(
            SyncUnavailable, match=r"already holds 1 segments of host 'alpha'.*another \[sync\] host"
        ):
            ship(other.store, _sync(twin), _now())
    assert {p.name: p.read_bytes() for p in segments_of(shared, "alpha")} == before
    a.end()
    assert ship(a.store, a_sync, _now()) == 1  # the one that shipped there goes on

"""Scopes: several sessions at once, one per scope, through every way in --
the CLI (through the daemon and embedded), the files, signals, the socket
and the API -- and across crashes and restarts; hostile names refused;
empty scopes removed; listings that never read another scope's records."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent import InvalidScopeError, SessionManager, StorageError, open_db
from agent.cli import cli as click_cli
from agent.config import StartRequest
from agent.record import encode_record
from agent.scope import parse_scope
from agent.session import Session, SessionStatus
from agent.store import SessionStore
from agent.store_keys import META_INDEX_FLOOR, ScopeKeys

from ..support.commands import Cli, open_manager
from ..support.daemon_process import DaemonProcess, run_daemon, wait_for
from ..support.helpers import Raw, damage_record

SCOPES = ("default", "nvim-4242", "0b6c6f3e-claude")
HOSTILE = {
    "..": "starts with a letter or a digit",
    ".": "starts with a letter or a digit",
    "a/b": "cannot contain '/'",
    "/": "cannot contain '/'",
    "x" * 10_000: "at most 64 characters, not 10000",
    "a\0b": "cannot contain '\\x00'",
    "über": "cannot contain 'ü'",
    "🙂": "cannot contain '🙂'",
    "": "cannot be empty",
    "-rf": "starts with a letter or a digit",
    "a b": "cannot contain ' '",
}


def _file(data_dir: Path, scope: str) -> Path:
    return (
        data_dir / "current_session"
        if scope == "default"
        else data_dir / "scopes" / scope / "current_session"
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _started_in(data_dir: Path, scope: str) -> str:
    """Wait until the daemon has applied the `start` written in ``scope``'s file."""
    found: list[str] = []

    def started() -> bool:
        content = _read(_file(data_dir, scope))
        found[:] = [content] if content and content != "start" else []
        return bool(found)

    wait_for(started)
    return found[0]


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(_ok(done))


@pytest.fixture(params=["daemon", "embedded"])
def mode(request: pytest.FixtureRequest, tmp_path: Path, data_dir: Path, runtime_dir: Path) -> Iterator[str]:
    if request.param == "daemon":
        with run_daemon(tmp_path, data_dir, runtime_dir):
            yield "daemon"
    else:
        yield "embedded"


def test_one_session_per_scope_through_the_cli(cli: Cli, data_dir: Path, mode: str) -> None:
    ids = {scope: _ok(cli("start", "--scope", scope)) for scope in SCOPES}
    assert len(set(ids.values())) == len(SCOPES)
    for scope, sid in ids.items():
        assert _ok(cli("current", "--scope", scope)) == sid
        assert _read(_file(data_dir, scope)) == sid
        shown = _json(cli("show", sid, "--json"))
        assert isinstance(shown, dict)
        assert shown["scope"] == scope
    assert _ok(cli("current")) == ids["default"]  # no --scope: the default scope, as before scopes

    again = cli("start", "--scope", "nvim-4242")
    assert again.returncode == 3
    assert f"{ids['nvim-4242']} is already active in scope nvim-4242" in again.stderr
    assert "session-agent end --scope nvim-4242" in again.stderr

    listed = _json(cli("list", "--scope", "nvim-4242", "--json"))
    assert [s["id"] for s in listed] == [ids["nvim-4242"]]
    everything = _json(cli("list", "--all-scopes", "--json"))
    assert {s["id"]: s["scope"] for s in everything} == {v: k for k, v in ids.items()}
    table = _ok(cli("list", "--all-scopes"))
    assert table.splitlines()[0].split()[:3] == ["ID", "SCOPE", "STATUS"]

    status = json.loads(cli("status", "--json").stdout)  # exit 7 embedded: no daemon
    assert status["current"]["id"] == ids["default"]
    assert {e["scope"]: e["current"]["id"] for e in status["scopes"]} == ids
    text = cli("status", "--scope", "nvim-4242").stdout
    assert f"current:      {ids['nvim-4242']}" in text
    assert f"default          {ids['default']}" in text
    assert ids["0b6c6f3e-claude"] in text

    assert _ok(cli("end", "--scope", "nvim-4242")) == ""  # only that scope
    assert cli("current", "--scope", "nvim-4242").returncode == 1
    assert _read(_file(data_dir, "nvim-4242")) is None
    assert _ok(cli("current")) == ids["default"]
    assert _ok(cli("current", "--scope", "0b6c6f3e-claude")) == ids["0b6c6f3e-claude"]

    # An id names its session whatever the scope: `end ID` ends it in its own.
    assert _ok(cli("abandon", ids["0b6c6f3e-claude"])) == ""
    assert _read(_file(data_dir, "0b6c6f3e-claude")) is None
    assert _json(cli("show", ids["0b6c6f3e-claude"], "--json"))["status"] == "abandoned"
    assert _ok(cli("current")) == ids["default"]


def test_the_scope_comes_from_the_environment_and_the_fast_path_agrees(
    cli: Cli, data_dir: Path, mode: str
) -> None:
    env = {"SESSION_AGENT_SCOPE": "term-7"}
    sid = _ok(cli("start", env=env))  # the fast path
    assert _read(_file(data_dir, "term-7")) == sid
    assert _ok(cli("current", env=env)) == sid
    assert _ok(cli("current", "--scope=term-7")) == sid
    assert _ok(cli("current", "--json", "--scope", "term-7")) == json.dumps(
        _json(cli("current", "--json", env=env))
    )
    assert cli("current").returncode == 1  # the default scope has none
    assert _ok(cli("--debug", "current", env=env)) == sid  # the full CLI, same answer
    assert _ok(cli("touch", "--scope", "term-7")) == ""
    assert _ok(cli("path", env=env)) == str(_file(data_dir, "term-7"))
    assert _ok(cli("show", "--scope", "term-7", "--json")) == _ok(cli("show", sid, "--json"))
    assert cli("show", env=env | {"SESSION_AGENT_SCOPE": "unused"}).returncode == 1
    listed = cli("list", "--scope", "x", "--all-scopes")
    assert listed.returncode == 2
    assert "not both" in listed.stderr
    assert len(_json(cli("list", "--all-scopes", "--json", env=env))) == 1
    _ok(cli("end", env=env))
    assert cli("current", env=env).returncode == 1


def test_several_scopes_through_their_files(
    cli: Cli, tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir):
        for scope in SCOPES:
            path = _file(data_dir, scope)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new scope: created by the tool
            path.write_text("start\n")
        ids = {scope: _started_in(data_dir, scope) for scope in SCOPES}
        for scope, sid in ids.items():
            assert _ok(cli("current", "--scope", scope)) == sid

        _file(data_dir, "nvim-4242").write_text("end\n")
        wait_for(lambda: not _file(data_dir, "nvim-4242").exists())
        ended = _json(cli("show", ids["nvim-4242"], "--json"))
        assert ended["status"] == "completed"
        assert ended["end_reason"] == "file"

        # Deleting a scope's directory deletes its file: the session ends.
        _file(data_dir, "0b6c6f3e-claude").unlink()
        (data_dir / "scopes" / "0b6c6f3e-claude").rmdir()
        wait_for(lambda: _json(cli("show", ids["0b6c6f3e-claude"], "--json"))["status"] == "completed")

        # Garbage in one scope's file is refused there and touches no other.
        _file(data_dir, "nvim-4242").write_text("start\n")
        again = _started_in(data_dir, "nvim-4242")
        _file(data_dir, "nvim-4242").write_text("not an id\n")
        wait_for(lambda: _read(_file(data_dir, "nvim-4242")) == again)
        assert _ok(cli("current")) == ids["default"]
        actives = _json(cli("list", "--all-scopes", "--status", "active", "--json"))
        assert sorted(s["id"] for s in actives) == sorted([ids["default"], again])


def test_signals_act_on_the_default_scope_only(
    cli: Cli, tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        other = _ok(cli("start", "--scope", "nvim-4242"))
        daemon.send(signal.SIGUSR1)
        wait_for(lambda: cli("current").returncode == 0)
        default = _ok(cli("current"))
        assert default != other
        daemon.send(signal.SIGUSR1)  # one is active there already: nothing
        wait_for(lambda: f"SIGUSR1: session {default} is already active" in daemon.log())
        daemon.send(signal.SIGUSR2)  # (pending signals are delivered in no set order: one at a time)
        wait_for(lambda: cli("current").returncode == 1)
        assert _json(cli("show", default, "--json"))["end_reason"] == "signal"
        assert _ok(cli("current", "--scope", "nvim-4242")) == other
        _file(data_dir, "nvim-4242").write_text("end\n")
        daemon.send(signal.SIGHUP)  # applies every scope's file now
        wait_for(lambda: cli("current", "--scope", "nvim-4242").returncode == 1)
        listed = _json(cli("list", "--all-scopes", "--json"))
        assert [s["end_reason"] for s in listed] == ["signal", "file"]


def _restart(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> DaemonProcess:
    from ..support.daemon_process import spawn_daemon, wait_ready

    daemon = spawn_daemon(tmp_path, data_dir, runtime_dir)
    wait_ready(daemon)
    return daemon


def test_several_scopes_survive_kill_9_and_edits_made_while_down(
    cli: Cli, tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        ids = {scope: _ok(cli("start", "--scope", scope)) for scope in SCOPES}
        daemon.kill()
    # While no daemon runs: one scope ended in its file, one started by a new tool.
    _file(data_dir, "nvim-4242").write_text("abandon\n")
    _file(data_dir, "late").parent.mkdir(mode=0o700)
    _file(data_dir, "late").write_text("start\n")
    daemon = _restart(tmp_path, data_dir, runtime_dir)
    try:
        assert _ok(cli("current")) == ids["default"]
        assert _ok(cli("current", "--scope", "0b6c6f3e-claude")) == ids["0b6c6f3e-claude"]
        assert cli("current", "--scope", "nvim-4242").returncode == 1
        assert _json(cli("show", ids["nvim-4242"], "--json"))["status"] == "abandoned"
        late = _ok(cli("current", "--scope", "late"))
        assert _read(_file(data_dir, "late")) == late
        status = _json(cli("status", "--json"))
        assert {e["scope"] for e in status["scopes"]} == {"default", "0b6c6f3e-claude", "late"}
        assert "restored session" in daemon.log()
        assert "in scope 0b6c6f3e-claude" in daemon.log()
    finally:
        daemon.close()


@pytest.mark.parametrize("point", ["manager.after_store", "file.before_rename", "store.after_commit"])
def test_a_crash_in_the_middle_of_a_scoped_start_is_repaired(cli: Cli, data_dir: Path, point: str) -> None:
    other = _ok(cli("start", "--scope", "a"))
    crashed = cli("start", "--scope", "b", env={"SESSION_AGENT_FAULTS": f"{point}=crash"})
    assert crashed.returncode != 0
    started = _ok(cli("current", "--scope", "b"))  # committed before the crash: the file catches up
    assert _read(_file(data_dir, "b")) == started
    assert _ok(cli("current", "--scope", "a")) == other
    assert _read(_file(data_dir, "a")) == other


@pytest.mark.parametrize("name", list(HOSTILE), ids=lambda n: repr(n[:12]))
def test_hostile_scope_names_are_refused_clearly_and_change_nothing(
    name: str, data_dir: Path, runtime_dir: Path, manager: SessionManager
) -> None:
    problem = HOSTILE[name]
    around = sorted(str(p) for p in data_dir.parent.rglob("*"))
    with pytest.raises(InvalidScopeError, match=re.escape(problem)):
        parse_scope(name)
    with pytest.raises(InvalidScopeError, match="use 1 to 64 ASCII letters"):
        manager.start(scope=name)
    with pytest.raises(InvalidScopeError):
        asyncio.run(manager.start_session(scope=name))
    with pytest.raises(InvalidScopeError):
        asyncio.run(manager.get_current_session(scope=name))
    runner = CliRunner()
    base = ["--data-dir", str(data_dir), "--runtime-dir", str(runtime_dir)]
    for command in (["start"], ["end"], ["current"], ["list"], ["status"], ["path"], ["show"]):
        done = runner.invoke(click_cli, [*base, *command, "--scope", name])
        assert done.exit_code == 2, (command, done.output)
        assert problem in done.output
        assert "Traceback" not in done.output
    assert not (data_dir / "scopes").exists()
    assert manager.active_sessions() == {}
    assert sorted(str(p) for p in data_dir.parent.rglob("*")) == around  # nothing made anywhere


def test_hostile_scope_names_through_the_real_cli_the_environment_and_the_socket(
    cli: Cli, tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    names = [n for n in HOSTILE if "\0" not in n and n]  # argv and environ cannot hold NUL
    for name in names:
        for done in (cli("start", "--scope", name), cli("current", env={"SESSION_AGENT_SCOPE": name})):
            assert done.returncode == 2, done.stderr
            assert HOSTILE[name] in done.stderr
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        raw = Raw(next(runtime_dir.rglob("control.sock")))
        try:
            values: list[object] = [*HOSTILE, 7, None, ["a"], {"x": 1}, True]
            for value in values:
                for op in ("start", "end", "current", "touch", "list"):
                    raw.send(json.dumps({"v": 1, "op": op, "args": {"scope": value}}).encode() + b"\n")
                    reply = raw.reply()
                    if value is None:
                        assert reply["ok"], reply
                        continue
                    assert not reply["ok"], (op, value, reply)
                    assert reply["error"]["exit_code"] == 2
                    assert "scope" in reply["error"]["message"]
                if value is None:
                    _ok(cli("end"))
        finally:
            raw.close()
        assert daemon.proc.poll() is None
    assert not (data_dir / "scopes").exists()


def test_a_planted_symlink_for_a_scope_is_not_followed(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (data_dir / "scopes").mkdir(mode=0o700)
    (data_dir / "scopes" / "evil").symlink_to(elsewhere)
    done = cli("start", "--scope", "evil")
    assert done.returncode == 5
    assert "is not a directory (a symlink is not followed here)" in done.stderr
    assert list(elsewhere.iterdir()) == []
    assert _json(cli("list", "--all-scopes", "--json")) == []
    assert _ok(cli("start", "--scope", "fine"))  # other scopes are not held up by it


def test_scope_dirs_are_private(cli: Cli, data_dir: Path) -> None:
    os.umask(0)
    try:
        _ok(cli("start", "--scope", "a"))
    finally:
        os.umask(0o022)
    for path in (data_dir / "scopes", data_dir / "scopes" / "a"):
        assert path.stat().st_mode & 0o777 == 0o700
    assert _file(data_dir, "a").stat().st_mode & 0o777 == 0o600


def test_empty_scopes_are_removed_after_the_configured_time(
    cli: Cli, tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    (data_dir / "config.toml").write_text('[scopes]\nremove_empty_after = "1s"\n')
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        for scope in ("gone", "busy", "kept"):
            _ok(cli("start", "--scope", scope))
        (data_dir / "scopes" / "kept" / "notes.txt").write_text("not ours")
        _ok(cli("end", "--scope", "gone"))
        # Empty since its file went (the directory's mtime, which the rule reads):
        # still there now, and gone only once the whole second has passed.
        empty_since = (data_dir / "scopes" / "gone").stat().st_mtime
        _ok(cli("end", "--scope", "kept"))
        wait_for(lambda: not (data_dir / "scopes" / "gone").exists(), timeout=10)
        assert time.time() - empty_since >= 0.99
        assert (data_dir / "scopes" / "busy").is_dir()  # a session is active there
        assert (data_dir / "scopes" / "kept" / "notes.txt").exists()  # something else is in it
        wait_for(lambda: "removed the directory of scope gone" in daemon.log())  # logged just after
        # The scope lives on in the store's history, and is created again on use.
        assert len(_json(cli("list", "--scope", "gone", "--json"))) == 1
        sid = _ok(cli("start", "--scope", "gone"))
        assert _read(_file(data_dir, "gone")) == sid
        _ok(cli("end", "--scope", "gone"))
        wait_for(lambda: not (data_dir / "scopes" / "gone").exists(), timeout=10)
    # Without a daemon, a command sweeps as it closes the store.
    _ok(cli("start", "--scope", "solo"))
    _ok(cli("end", "--scope", "solo"))
    wait_for(
        lambda: cli("current").returncode == 1 and not (data_dir / "scopes" / "solo").exists(), timeout=10
    )


def test_a_bad_cleanup_setting_is_reported(cli: Cli, data_dir: Path) -> None:
    (data_dir / "config.toml").write_text('[scopes]\nremove_empty_after = "soon"\n')
    done = cli("start", "--scope", "a")
    assert done.returncode == 2
    assert "scopes.remove_empty_after" in done.stderr
    (data_dir / "config.toml").write_text('[scopes]\nkeep = "1h"\n')
    done = cli("start", "--scope", "a")
    assert done.returncode == 2
    assert "unknown setting scopes.keep" in done.stderr


def test_the_api_takes_a_scope(manager: SessionManager, data_dir: Path) -> None:
    async def scenario() -> None:
        a = await manager.start_session(scope="a")
        default = await manager.start_session()
        assert await manager.get_current_session(scope="a") == a
        assert await manager.get_current_session() == default
        session = await manager.get_session(a)
        assert session is not None
        assert session.scope == "a"
        await manager.end_session(a)
        assert await manager.get_current_session(scope="a") is None
        assert await manager.get_current_session() == default

    asyncio.run(scenario())
    assert manager.current_file_of("a") == _file(data_dir, "a")


def test_the_number_of_scope_directories_is_capped(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.scope_dirs.MAX_SCOPES", 3)
    for name in ("a", "b", "c"):
        manager.start(scope=name)
    with pytest.raises(ValueError, match="already 3 scopes"):
        manager.start(scope="d")
    manager.end(scope="a")
    assert manager.start(scope="a").is_active  # an existing directory is no new scope


# --- the store: listing by scope -------------------------------------------------


def test_listing_a_scope_reads_no_record_of_another(tmp_path: Path) -> None:
    """Every record of the other scopes is made unreadable: a listing of one
    scope that looked at any of them would report it."""
    db = open_db(tmp_path / "db")
    store = SessionStore(db)
    sessions = [Session.begin(scope=("a", "b", "default")[n % 3]) for n in range(30)]
    store.commit(tuple(sessions))
    for s in sessions:
        if s.scope != "a":
            damage_record(db, s.id, b"\x03broken")
    errors: list[StorageError] = []
    listed = list(store.newest_first(scope="a", errors=errors))
    assert [s.id for s in listed] == [s.id for s in reversed(sessions) if s.scope == "a"]
    assert errors == []
    middle = listed[4].id
    assert [s.id for s in store.newest_first(scope="a", before=middle)] == [s.id for s in listed[5:]]
    assert [s.id for s in store.newest_first(scope="a", floor=middle)] == [s.id for s in listed[:5]]
    everything: list[StorageError] = []
    assert len(list(store.newest_first(errors=everything))) == 10
    assert len(everything) == 20
    store.close()


def test_a_store_from_before_scopes_keeps_working_unmigrated(tmp_path: Path) -> None:
    """Version-2 records with no index entries and the bare meta keys: the
    default scope holds them all, in order with the sessions started since."""
    import struct

    from agent.session import to_micros

    db = open_db(tmp_path / "db")
    old = [Session.begin() for _ in range(5)]
    sessions = db.get_column_family("sessions")
    for s in old[:-1]:
        ended_at = to_micros(s.started_at) + 1000
        fields = (2, 2, to_micros(s.started_at), ended_at, to_micros(s.last_activity_at), 0, 1, 0, 0, 0)
        sessions.put(s.id.encode(), struct.pack("<BBqqqQBIII", *fields))
    active = old[-1]
    plain = active.replace(activity=None)  # no sections: the v3 layout, which v2 is without the scope byte
    sessions.put(active.id.encode(), b"\x02" + encode_record(plain)[1:-1])  # as version 2 wrote it
    db.get_column_family("meta").put(ScopeKeys.ACTIVE, active.id.encode())
    del sessions
    from agent.database import close_db

    close_db(db)

    with open_manager(tmp_path) as manager:
        assert manager.active() == active.replace(
            activity=None
        )  # the old pointer, read as the default scope's
        newer = manager.start(scope="a")
        assert manager.store.get_meta(META_INDEX_FLOOR) == active.id.encode()  # with the first write
        listed = manager.list_sessions()
        assert [s.id for s in listed] == [s.id for s in reversed(old)]
        assert [s.id for s in manager.list_sessions(scope="a")] == [newer.id]
        assert len(manager.list_sessions(scope=None)) == 6
        manager.end()  # the old active one, rewritten as version 3 (and indexed)
        after_end = manager.list_sessions()
        assert [s.id for s in after_end] == [s.id for s in reversed(old)]  # no duplicate
        assert after_end[0].status is SessionStatus.COMPLETED
        more = [manager.start(StartRequest(replace=True)) for _ in range(3)]
        paged = manager.list_sessions(limit=3)
        assert [s.id for s in paged] == [s.id for s in reversed(more)]
        rest = manager.list_sessions(before=paged[-1].id)
        assert [s.id for s in rest] == [s.id for s in reversed(old)]
        assert [s.id for s in manager.list_sessions(before=old[-1].id, limit=2)] == [old[3].id, old[2].id]

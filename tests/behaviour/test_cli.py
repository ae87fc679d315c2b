"""The CLI contract, through real subprocesses of the installed session-agent."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import agent
from agent import close_db, open_db
from agent.session import Session, format_time
from agent.store import SessionStore

from ..support.commands import (
    SESSION_AGENT,
    SLEEP,
    Cli,
    backdate_active,
    clean_env,
    open_manager,
    start_session,
)
from ..support.helpers import damage_record, store_held_by_another_process

UUID_LINE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n$")
SESSION_KEYS = {
    "id",
    "status",
    "started_at",
    "ended_at",
    "memory_count",
    "last_activity_at",
    "end_reason",
    "owner_pid",
    "idle_timeout",
    "idle_grace",
    "scope",
    "cwd",
    "project",
    "git",
    "tool",
    "external_id",
    "parent",
    "tags",
    "title",
    "labels",
    "host",
    "active_seconds",
    "activity",
    "activity_gap",
}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


def _assert_session_json(obj: dict[str, object]) -> None:
    assert set(obj) == SESSION_KEYS
    assert obj["status"] in {"active", "completed", "abandoned"}
    for key in ("started_at", "last_activity_at"):
        assert ISO_Z.match(str(obj[key])), obj[key]
    assert obj["ended_at"] is None or ISO_Z.match(str(obj["ended_at"]))
    assert isinstance(obj["memory_count"], int)


def test_version(cli: Cli) -> None:
    done = cli("--version", data=None)
    assert (done.returncode, done.stdout) == (0, f"session-agent, version {agent.__version__}\n")


def test_python_dash_m_agent_is_the_same_cli(tmp_path: Path, data_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--data-dir", str(data_dir), "start"],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert UUID_LINE.match(done.stdout)


def test_help_lists_every_command(cli: Cli) -> None:
    done = cli("--help", data=None)
    assert done.returncode == 0
    for command in ("start", "end", "abandon", "current", "show", "list", "status"):
        assert re.search(rf"^\s+{command}\s", done.stdout, re.MULTILINE), command


def test_start_prints_the_new_id_and_the_file_names_it(cli: Cli, data_dir: Path) -> None:
    done = cli("start")
    assert done.returncode == 0
    assert UUID_LINE.match(done.stdout)
    assert (data_dir / "current_session").read_text() == done.stdout


def test_start_json(cli: Cli) -> None:
    done = cli("start", "--json")
    assert done.returncode == 0
    obj = json.loads(done.stdout)
    _assert_session_json(obj)
    assert obj["status"] == "active"


def test_start_while_active_exits_3_naming_the_active_session(cli: Cli) -> None:
    sid = start_session(cli)
    done = cli("start")
    assert done.returncode == 3
    assert done.stdout == ""
    assert sid in done.stderr
    assert done.stderr.count("\n") == 1


def test_current_prints_the_id_and_exits_1_when_none(cli: Cli) -> None:
    none = cli("current")
    assert (none.returncode, none.stdout) == (1, "")
    assert "no active session" in none.stderr
    sid = start_session(cli)
    done = cli("current")
    assert (done.returncode, done.stdout) == (0, f"{sid}\n")


def test_current_json(cli: Cli) -> None:
    none = cli("current", "--json")
    assert (none.returncode, json.loads(none.stdout)) == (1, None)
    sid = start_session(cli)
    done = cli("current", "--json")
    assert done.returncode == 0
    obj = json.loads(done.stdout)
    _assert_session_json(obj)
    assert obj["id"] == sid


def test_end_completes_the_current_session_and_removes_the_file(cli: Cli, data_dir: Path) -> None:
    sid = start_session(cli)
    done = cli("end")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (data_dir / "current_session").exists()
    assert json.loads(cli("show", sid, "--json").stdout)["status"] == "completed"


def test_end_is_idempotent_and_succeeds_when_none_is_active(cli: Cli) -> None:
    sid = start_session(cli)
    assert cli("end", sid).returncode == 0
    ended = json.loads(cli("show", sid, "--json").stdout)
    assert cli("end", sid).returncode == 0
    assert cli("end").returncode == 0
    assert json.loads(cli("show", sid, "--json").stdout) == ended


def test_end_of_an_unknown_id_succeeds_with_a_note(cli: Cli) -> None:
    done = cli("end", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    assert done.returncode == 0
    assert "no session 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b" in done.stderr


def test_every_end_that_changes_nothing_says_so_the_same_way(cli: Cli) -> None:
    # Nothing active, an unknown id, an id already ended: exit 0 (ending is
    # idempotent), and one line on stderr that says which it was.
    sid = start_session(cli)
    cli("end")
    unknown = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    answers = {
        ("end",): "session-agent: no active session; nothing to do\n",
        ("stop",): "session-agent: no active session; nothing to do\n",
        ("abandon",): "session-agent: no active session; nothing to do\n",
        ("end", unknown): f"session-agent: no session {unknown}; nothing to do\n",
        ("end", sid): f"session-agent: session {sid} has already ended; nothing to do\n",
    }
    for args, stderr in answers.items():
        done = cli(*args)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", stderr), args


def test_stop_is_end(cli: Cli) -> None:
    sid = start_session(cli)
    assert cli("stop").returncode == 0
    assert json.loads(cli("show", sid, "--json").stdout)["end_reason"] == "cli"
    assert "The same as `end`" in cli("stop", "--help").stdout


def test_abandon_by_id_and_idempotent(cli: Cli) -> None:
    sid = start_session(cli)
    assert cli("abandon", sid.upper()).returncode == 0
    assert json.loads(cli("show", sid, "--json").stdout)["status"] == "abandoned"
    assert cli("abandon", sid).returncode == 0
    assert cli("abandon").returncode == 0
    assert cli("end", sid).returncode == 0
    assert json.loads(cli("show", sid, "--json").stdout)["status"] == "abandoned"
    assert cli("current").returncode == 1


def test_show_text_and_json(cli: Cli) -> None:
    sid = start_session(cli)
    cli("end")
    text = cli("show", sid)
    assert text.returncode == 0
    assert f"id:            {sid}" in text.stdout
    assert "status:        completed" in text.stdout
    obj = json.loads(cli("show", sid, "--json").stdout)
    _assert_session_json(obj)
    assert obj["ended_at"] >= obj["started_at"]


def test_show_json_without_an_active_session_prints_null(cli: Cli) -> None:
    done = cli("show", "--json")
    assert (done.returncode, done.stdout) == (1, "null\n")  # as `current --json`
    assert cli("current", "--json").stdout == "null\n"


def test_show_unknown_exits_4(cli: Cli) -> None:
    done = cli("show", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    assert done.returncode == 4
    assert "no session 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b" in done.stderr


@pytest.mark.parametrize("bad", ["../x", "x" * 5000, "", "not-a-uuid", "0193a1b2/../../etc"])
@pytest.mark.parametrize("command", ["show", "end", "abandon"])
def test_malformed_ids_exit_2_with_a_clear_message(cli: Cli, data_dir: Path, command: str, bad: str) -> None:
    done = cli(command, bad)
    assert done.returncode == 2
    assert "invalid session id" in done.stderr
    assert "a session id is a UUID" in done.stderr
    assert len(done.stderr) < 1000
    assert not (data_dir / "x").exists()


def test_list_newest_first_as_table_and_json(cli: Cli) -> None:
    ids = []
    for _ in range(3):
        ids.append(start_session(cli))
        cli("end")
    table = cli("list")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "SCOPE", "STATUS", "REASON", "STARTED", "DURATION", "ACTIVE", "PROJECT"]
    assert [line.split()[0] for line in lines[1:]] == ids[::-1]
    # Every column starts where its heading does, even when all scope
    # names are shorter than the word SCOPE.
    for heading in ("STATUS", "REASON", "STARTED", "DURATION", "ACTIVE", "PROJECT"):
        column = lines[0].index(heading)
        assert all(line[column - 2 : column] == "  " and line[column] != " " for line in lines[1:]), heading
    one_scope = cli("list", "--scope", "default").stdout.splitlines()
    assert one_scope[0].split() == ["ID", "STATUS", "REASON", "STARTED", "DURATION", "ACTIVE", "PROJECT"]
    listed = json.loads(cli("list", "--json").stdout)
    assert [s["id"] for s in listed] == ids[::-1]
    for obj in listed:
        _assert_session_json(obj)


def test_list_filters(cli: Cli) -> None:
    first = start_session(cli)
    cli("abandon")
    second = start_session(cli)

    def ids(*args: str) -> list[str]:
        done = cli("list", "--json", *args)
        assert done.returncode == 0, done.stderr
        return [s["id"] for s in json.loads(done.stdout)]

    assert ids("--status", "active") == [second]
    assert ids("--status", "ABANDONED") == [first]
    assert ids("--status", "active", "--status", "abandoned") == [second, first]
    assert ids("--status", "completed") == []
    assert ids("--limit", "1") == [second]
    assert ids("--limit", "0") == [second, first]
    assert ids("--since", "1h") == [second, first]
    assert ids("--since", "2099-01-01") == []
    assert ids("--since", "2000-01-01T00:00:00Z") == [second, first]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "neither a duration"),
        (["--since", "5 parsecs"], "neither a duration"),
        (["--limit", "-1"], "-1 is not in the range"),
        (["--status", "paused"], "'paused' is not one of"),
    ],
)
def test_list_bad_options_exit_2(cli: Cli, args: list[str], message: str) -> None:
    done = cli("list", *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_status_without_a_daemon_exits_7_and_shows_paths_and_session(cli: Cli, data_dir: Path) -> None:
    sid = start_session(cli)
    done = cli("status")
    assert done.returncode == 7
    assert "not running" in done.stdout
    assert str(data_dir) in done.stdout
    assert sid in done.stdout
    obj = json.loads(cli("status", "--json").stdout)
    assert obj["daemon"] == {"running": False, "pid": None}
    assert obj["paths"]["current_file"] == str(data_dir / "current_session")
    assert obj["current"]["id"] == sid
    assert obj["idle_ends_in_seconds"] is None


@pytest.mark.parametrize(
    ("args", "code", "stdout"),
    [
        (["current"], 1, ""),
        (["current", "--json"], 1, "null\n"),
        (["touch"], 1, ""),
        (["show"], 1, ""),
        (["show", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"], 4, ""),
        (["list"], 0, None),
        (["list", "--json"], 0, "[]\n"),
        (["status"], 7, None),
        (["status", "--json"], 7, None),
    ],
)
def test_reading_a_data_dir_that_does_not_exist_creates_nothing(
    cli: Cli, tmp_path: Path, args: list[str], code: int, stdout: str | None
) -> None:
    # A mistyped --data-dir (relative: it would land in the working tree).
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [str(SESSION_AGENT), "--data-dir", "typo/data", *args],
        capture_output=True,
        text=True,
        cwd=work,
        env=clean_env(tmp_path, SESSION_AGENT_RUNTIME_DIR=str(tmp_path / "run")),
        timeout=30,
        check=False,
    )
    assert done.returncode == code, done.stderr
    if stdout is not None:
        assert done.stdout == stdout
    assert "Traceback" not in done.stderr
    assert list(work.iterdir()) == []  # no data dir, no db/, no db.lock
    if args[0] in ("list", "show", "status"):
        assert f"the data dir {work / 'typo/data'} does not exist" in done.stderr
    if args == ["status", "--json"]:
        assert json.loads(done.stdout)["store_exists"] is False


def test_a_write_creates_the_data_dir_and_reads_then_see_it(cli: Cli, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    assert cli("list", data=fresh).returncode == 0
    assert not fresh.exists()
    sid = start_session_in(cli, fresh)
    assert cli("current", data=fresh).stdout.strip() == sid
    assert "does not exist" not in cli("list", data=fresh).stderr


def start_session_in(cli: Cli, data: Path) -> str:
    done = cli("start", data=data)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_current_file_written_before_any_store_is_still_applied(cli: Cli, tmp_path: Path) -> None:
    # An editor integration may write `start` before anything made a store:
    # that is an edit to apply, so the first read makes the store for it.
    fresh = tmp_path / "fresh"
    fresh.mkdir(mode=0o700)
    (fresh / "current_session").write_text("start\n")
    done = cli("current", data=fresh)
    assert done.returncode == 0
    assert (fresh / "current_session").read_text() == done.stdout


def test_a_bad_duration_names_the_accepted_forms_and_where_it_came_from(cli: Cli) -> None:
    by_option = cli("start", "--idle-timeout", "30x")
    assert by_option.returncode == 2
    assert "Invalid value for '--idle-timeout': '30x' is not a duration" in by_option.stderr
    assert "90s, 30m, 1h30m, 2d" in by_option.stderr
    by_env = cli("start", env={"SESSION_AGENT_IDLE_TIMEOUT": "abc"})
    assert by_env.returncode == 2
    assert "Invalid value for the environment variable SESSION_AGENT_IDLE_TIMEOUT: 'abc'" in by_env.stderr
    assert "--idle-timeout" not in by_env.stderr.splitlines()[-1]
    by_scope_env = cli("current", env={"SESSION_AGENT_SCOPE": "../x"})
    assert by_scope_env.returncode == 2
    assert "the environment variable SESSION_AGENT_SCOPE: scope '../x' is not valid" in by_scope_env.stderr
    assert cli("current").returncode == 1  # nothing was started


def test_a_refused_start_creates_no_scope_directory(cli: Cli, data_dir: Path) -> None:
    gone = subprocess.Popen([SLEEP, "0"])
    gone.wait()
    done = cli("start", "--scope", "refused", "--owner-pid", str(gone.pid))
    assert done.returncode == 2
    assert f"no process {gone.pid}" in done.stderr
    assert not (data_dir / "scopes" / "refused").exists()


def test_the_short_options_of_list(cli: Cli) -> None:
    start_session(cli)
    cli("end")
    newest = start_session(cli)
    listed = json.loads(cli("list", "-n", "1", "-s", "1h", "--json").stdout)
    assert [s["id"] for s in listed] == [newest]


def test_list_shows_every_scope_unless_narrowed(cli: Cli) -> None:
    in_default = start_session(cli)
    in_editor = cli("start", "--scope", "nvim-42").stdout.strip()
    everyone = {s["id"] for s in json.loads(cli("list", "--json").stdout)}
    assert everyone == {in_default, in_editor}
    # The environment picks whose *current* session a command means; it
    # does not narrow a listing.
    from_env = json.loads(cli("list", "--json", env={"SESSION_AGENT_SCOPE": "nvim-42"}).stdout)
    assert {s["id"] for s in from_env} == everyone
    narrowed = json.loads(cli("list", "--scope", "nvim-42", "--json").stdout)
    assert [s["id"] for s in narrowed] == [in_editor]
    assert {s["id"] for s in json.loads(cli("list", "--all-scopes", "--json").stdout)} == everyone
    table = cli("list").stdout.splitlines()
    assert table[0].split()[:2] == ["ID", "SCOPE"]
    assert {line.split()[1] for line in table[1:]} == {"default", "nvim-42"}


def test_the_data_dir_is_created_private(cli: Cli, tmp_path: Path) -> None:
    fresh = tmp_path / "a" / "b" / "data"
    assert cli("start", data=fresh).returncode == 0
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(fresh / "current_session").st_mode) == 0o600


def test_the_environment_names_the_data_dir_and_the_option_wins(cli: Cli, tmp_path: Path) -> None:
    from_env, from_option = tmp_path / "env", tmp_path / "option"
    env = {"SESSION_AGENT_DATA_DIR": str(from_env)}
    assert cli("start", env=env, data=None).returncode == 0
    assert (from_env / "current_session").exists()
    assert cli("start", env=env, data=from_option).returncode == 0
    assert (from_option / "current_session").exists()


def test_the_default_data_dir_follows_xdg(cli: Cli, tmp_path: Path) -> None:
    assert cli("start", data=None).returncode == 0
    assert (tmp_path / "home/.local/share/session-agent/current_session").exists()


def test_a_data_dir_others_can_write_is_refused(cli: Cli, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    done = cli("start", data=shared)
    assert done.returncode == 5
    assert "writable by other users" in done.stderr
    assert "chmod 700" in done.stderr


def test_a_store_locked_by_another_process_exits_6_in_bounded_time(cli: Cli, data_dir: Path) -> None:
    close_db(open_db(data_dir / "db"))
    with store_held_by_another_process(data_dir / "db") as holder:
        began = time.monotonic()
        done = cli("current")
        waited = time.monotonic() - began
    assert done.returncode == 6
    assert f"locked by process {holder.pid}" in done.stderr
    assert waited < 10


def test_a_corrupt_record_exits_5_on_show_and_is_skipped_by_list(cli: Cli, data_dir: Path) -> None:
    good = start_session(cli)
    cli("end")
    broken = Session.begin()
    db = open_db(data_dir / "db")
    store = SessionStore(db)
    store.commit((broken,))  # stored with its index entry, then its record damaged
    damage_record(db, broken.id, b"\x01\x00junk")
    store.close()
    shown = cli("show", broken.id)
    assert shown.returncode == 5
    assert f"session record {broken.id} is corrupt" in shown.stderr
    listed = cli("list", "--json")
    assert listed.returncode == 0
    assert [s["id"] for s in json.loads(listed.stdout)] == [good]
    assert broken.id in listed.stderr
    assert start_session(cli)  # the store still works


def test_debug_shows_the_traceback_of_an_error(tmp_path: Path, data_dir: Path) -> None:
    done = subprocess.run(
        [
            str(SESSION_AGENT),
            "--debug",
            "--data-dir",
            str(data_dir),
            "show",
            "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        ],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        check=False,
        timeout=30,
    )
    assert done.returncode != 0
    assert "Traceback" in done.stderr
    assert "SessionNotFoundError" in done.stderr


def test_path_prints_the_current_file_without_creating_anything(cli: Cli, tmp_path: Path) -> None:
    fresh = tmp_path / "never-used"
    done = cli("path", data=fresh)
    assert done.returncode == 0
    assert done.stdout == f"{fresh / 'current_session'}\n"
    assert not fresh.exists()


def test_touch_records_activity_at_most_once_a_second(cli: Cli, data_dir: Path) -> None:
    assert cli("touch").returncode == 1  # none active
    began = time.monotonic()
    sid = start_session(cli)
    first = json.loads(cli("touch", "--json").stdout)
    assert first["id"] == sid
    if time.monotonic() - began < 1.0:  # within the first second: not written
        assert first["last_activity_at"] == first["started_at"]
    else:  # a loaded machine took longer than a second: it may have been
        assert first["last_activity_at"] >= first["started_at"]
    with open_manager(data_dir) as manager:
        before = backdate_active(manager, 3600)
    later = json.loads(cli("touch", "--json").stdout)
    assert later["last_activity_at"] > format_time(before.last_activity_at)
    assert json.loads(cli("show", sid, "--json").stdout)["last_activity_at"] == later["last_activity_at"]


def test_errors_look_as_the_reference_says(cli: Cli) -> None:
    # A session error: one line. A usage error: click's usage line and
    # --help hint, then the Error: line (docs/cli.md says so).
    sid = start_session(cli)
    refused = cli("start")
    assert refused.stderr.splitlines() == [
        f"session-agent: error: session {sid} is already active; end it first with `session-agent end`"
        ", or start with --replace"
    ]
    usage = cli("list", "--limit", "many").stderr.splitlines()
    assert usage[0] == "Usage: session-agent list [OPTIONS]"
    assert usage[1] == "Try 'session-agent list --help' for help."
    assert usage[-1].startswith("Error: Invalid value for '-n' / '--limit': 'many' is not a valid integer")
    reference = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert "Errors are one line on stderr\n(`session-agent: error: ...`); a usage error" in reference


def test_a_malformed_fault_spec_is_a_usage_error_not_a_traceback(cli: Cli) -> None:
    # Fault injection (tests only) is installed by the entry point: before,
    # it configured itself at import and a typo crashed `start` with a
    # traceback from `import agent.manager`.
    done = cli("start", env={"SESSION_AGENT_FAULTS": "store.comit=crash"})
    assert done.returncode == 2
    assert done.stderr.startswith(
        "session-agent: error: SESSION_AGENT_FAULTS: faults: unknown point 'store.comit'"
    )
    assert cli("current").returncode == 1  # nothing was started

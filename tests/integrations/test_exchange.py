"""``export`` and ``import``: our own JSON lines round-trip; files made by
the real peers -- Timewarrior (Debian ``timewarrior``) and Watson (PyPI
``td-watson``, in a venv of its own) -- import, idempotently; what we
export for Timewarrior the real ``timew import`` takes; a bad record
imports nothing; CSV and iCalendar are well formed."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.activity import Activity
from agent.details import Details, GitState, Host
from agent.session import EndReason, Session, SessionStatus
from agent.session_id import derived_session_id

from ..support.commands import CLI_TIMEOUT, SESSION_AGENT, Cli, clean_env, open_manager
from ..support.daemon_process import run_daemon

ROOT = Path(__file__).resolve().parents[2]
WATSON = Path(os.environ.get("SESSION_AGENT_TEST_WATSON", ROOT / ".venv" / "watson" / "bin" / "watson"))


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _micros(text: str) -> int:
    return int(_at(text).timestamp() * 1_000_000)


def _history() -> list[Session]:
    """Sessions with every field we record."""
    full = Details(
        cwd="/home/ada/src/webshop",
        project="webshop",
        git=GitState("/home/ada/src/webshop", "checkout-flow", None, worktree=False),
        tool="claude-code",
        external_id="0b6c6f3e-1d2a-4c55-9f0e-7a1b2c3d4e5f",
        tags=("ai", "review"),
        title="Checkout flow, part 1",
        labels=(("ticket", "WS-42"),),
        host=Host("ada-laptop", "3d1219c7c4c5404aaa1f6d2a48adfda4"),
    )
    first = Session(
        id=derived_session_id(_at("2026-11-24T09:00"), b"first"),
        started_at=_at("2026-11-24T09:00"),
        ended_at=_at("2026-11-24T10:30"),
        status=SessionStatus.COMPLETED,
        memory_count=3,
        last_activity_at=_at("2026-11-24T10:20"),
        end_reason=EndReason.IDLE,
        idle_timeout=600,
        scope="claude-0b6c",
        details=full,
        activity=Activity(900, ((_micros("2026-11-24T09:00"), _micros("2026-11-24T10:20")),)),
    )
    second = Session(
        id=derived_session_id(_at("2026-11-24T11:00"), b"second"),
        started_at=_at("2026-11-24T11:00"),
        ended_at=_at("2026-11-24T11:45"),
        status=SessionStatus.ABANDONED,
        memory_count=0,
        last_activity_at=_at("2026-11-24T11:00"),
        end_reason=EndReason.OWNER_EXITED,
        owner_pid=4242,
        scope="nvim-4242",
        details=Details(project="blog", tool="nvim"),
        activity=Activity(900, ((_micros("2026-11-24T11:00"), _micros("2026-11-24T11:00")),)),
    )
    return [first, second]


def _store(data_dir: Path, sessions: list[Session]) -> None:
    manager = open_manager(data_dir)
    try:
        manager.store.commit(tuple(sessions))
    finally:
        manager.close()


def _lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_our_json_lines_round_trip_into_an_empty_store(tmp_path: Path, data_dir: Path, cli: Cli) -> None:
    _store(data_dir, _history())
    exported = cli("export")
    first = _lines(exported)
    assert [s["id"] for s in first] == [s.id for s in _history()]  # oldest first
    assert first[0]["labels"] == {"ticket": "WS-42"}
    dump = tmp_path / "sessions.jsonl"
    dump.write_text(exported.stdout)
    empty = tmp_path / "empty"
    done = cli("import", str(dump), "--from", "jsonl", "--json", data=empty)
    assert json.loads(done.stdout) == {"added": 2, "already_held": 0, "left_out": []}, done.stderr
    assert _lines(cli("export", data=empty)) == first  # the same sessions, every field
    again = cli("import", str(dump), "--from", "jsonl", "--json", data=empty)
    assert json.loads(again.stdout)["added"] == 0  # the same file twice adds nothing


def test_a_bad_record_imports_nothing_and_names_its_line(tmp_path: Path, data_dir: Path, cli: Cli) -> None:
    _store(tmp_path / "source", _history())
    lines = cli("export", data=tmp_path / "source").stdout.splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0], "", '{"id": "not-an-id"}', lines[1]]) + "\n")
    done = cli("import", str(broken), "--from", "jsonl")
    assert done.returncode == 2
    assert f"{broken}, line 3:" in done.stderr
    assert "nothing was imported" in done.stderr
    assert "Traceback" not in done.stderr
    assert cli("export").stdout == ""  # not half of it


def test_an_active_session_in_a_file_is_imported_as_ended(tmp_path: Path, cli: Cli) -> None:
    source = tmp_path / "source"
    assert cli("start", "--project", "live", data=source).returncode == 0
    dump = tmp_path / "live.jsonl"
    dump.write_text(cli("export", data=source).stdout)
    assert cli("import", str(dump), "--from", "jsonl").returncode == 0
    [imported] = _lines(cli("export"))
    assert (imported["status"], imported["end_reason"]) == ("completed", "imported")
    assert imported["ended_at"] == imported["last_activity_at"]
    assert cli("current").returncode == 1  # never a current session here


def _timew(env: dict[str, str], *args: str, stdin: str | None = None, ok: tuple[int, ...] = (0,)) -> str:
    timew = shutil.which("timew")
    assert timew, "timew is missing: scripts/test installs it (Debian timewarrior)"
    done = subprocess.run(
        [timew, *args], env=env, input=stdin, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False
    )
    assert done.returncode in ok, done.stderr
    return done.stdout


def _timew_env(tmp_path: Path, name: str) -> dict[str, str]:
    db = tmp_path / name
    db.mkdir()
    env = clean_env(tmp_path, TIMEWARRIORDB=str(db))
    _timew(env, stdin="yes\n", ok=(0, 1))  # creates its database (1: "no active time tracking")
    return env


def test_a_real_timewarrior_export_imports_once(tmp_path: Path, cli: Cli) -> None:
    env = _timew_env(tmp_path, "timew")
    _timew(
        env, "track", "2026-11-24T09:00:00Z", "-", "2026-11-24T10:00:00Z", "webshop", "code review", ":quiet"
    )
    _timew(env, "annotate", "@1", "Checkout flow, part 1", ":quiet")
    _timew(env, "track", "2026-11-24T11:00:00Z", "-", "2026-11-24T11:30:00Z", "blog", ":quiet")
    _timew(env, "start", "reading", ":quiet")  # still tracking: left out
    dump = tmp_path / "timew.json"
    dump.write_text(_timew(env, "export"))
    done = cli("import", str(dump), "--from", "timewarrior", "--json")
    assert json.loads(done.stdout) == {
        "added": 2,
        "already_held": 0,
        "left_out": ["1 interval(s) still being tracked (no end)"],
    }, done.stderr
    sessions = {s["title"] or s["tags"][0]: s for s in _lines(cli("export"))}
    review = sessions["Checkout flow, part 1"]
    assert (review["started_at"], review["ended_at"]) == ("2026-11-24T09:00:00Z", "2026-11-24T10:00:00Z")
    assert review["tags"] == ["code_review", "webshop"]
    assert (review["tool"], review["scope"], review["end_reason"]) == (
        "timewarrior",
        "timewarrior",
        "imported",
    )
    assert review["active_seconds"] == 3600
    assert sessions["blog"]["ended_at"] == "2026-11-24T11:30:00Z"
    again = cli("import", str(dump), "--from", "timewarrior", "--json")
    assert json.loads(again.stdout)["added"] == 0


def test_what_we_export_for_timewarrior_is_what_timew_itself_exports(
    tmp_path: Path, data_dir: Path, cli: Cli
) -> None:
    """The same intervals tracked in the real timew (1.4 has no import
    command) come out of ``timew export`` as ours do: the same fields."""
    _store(data_dir, _history())
    exported = cli("export", "--format", "timewarrior")
    assert exported.returncode == 0, exported.stderr
    ours = json.loads(exported.stdout)
    env = _timew_env(tmp_path, "fresh")
    _timew(
        env, "track", "2026-11-24T09:00:00Z", "-", "2026-11-24T10:30:00Z", "webshop", "ai", "review", ":quiet"
    )
    _timew(env, "annotate", "@1", "Checkout flow, part 1", ":quiet")
    _timew(env, "track", "2026-11-24T11:00:00Z", "-", "2026-11-24T11:45:00Z", "blog", ":quiet")
    theirs = json.loads(_timew(env, "export"))

    def comparable(intervals: list[dict[str, Any]]) -> list[tuple[object, ...]]:
        assert all(set(i) <= {"id", "start", "end", "tags", "annotation"} for i in intervals)
        return sorted(
            (i["start"], i["end"], sorted(i.get("tags", [])), i.get("annotation")) for i in intervals
        )

    assert comparable(ours) == comparable(theirs)
    # ... and reads back as what it was.
    dump = tmp_path / "ours.json"
    dump.write_text(exported.stdout)
    done = cli("import", str(dump), "--from", "timewarrior", "--json", data=tmp_path / "elsewhere")
    assert json.loads(done.stdout)["added"] == 2, done.stderr


def test_a_real_watson_frames_file_imports_once(tmp_path: Path, cli: Cli) -> None:
    assert WATSON.exists(), f"watson is missing at {WATSON}: scripts/test installs it (PyPI td-watson)"
    env = clean_env(tmp_path, WATSON_DIR=str(tmp_path / "watson"))
    for args in (
        ["webshop", "+review", "+code review", "--from", "2026-11-24 09:00", "--to", "2026-11-24 10:30"],
        ["blog", "--from", "2026-11-24 11:00", "--to", "2026-11-24 11:45"],
    ):
        done = subprocess.run(
            [str(WATSON), "add", *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
    frames = tmp_path / "watson" / "frames"
    done = cli("import", str(frames), "--from", "watson", "--json")
    assert json.loads(done.stdout) == {"added": 2, "already_held": 0, "left_out": []}, done.stderr
    ids = {frame[2]: frame[3] for frame in json.loads(frames.read_text())}
    sessions = {s["project"]: s for s in _lines(cli("export"))}
    webshop = sessions["webshop"]
    assert (webshop["started_at"], webshop["ended_at"]) == ("2026-11-24T09:00:00Z", "2026-11-24T10:30:00Z")
    assert webshop["tags"] == ["code_review", "review"]
    assert (webshop["tool"], webshop["external_id"]) == ("watson", ids["webshop"])
    assert sessions["blog"]["tags"] == []
    assert json.loads(cli("import", str(frames), "--from", "watson", "--json").stdout)["added"] == 0
    report = json.loads(cli("report", "--since", "2026-11-24", "--until", "2026-11-25", "--json").stdout)
    assert {g["key"]: g["wall_seconds"] for g in report["groups"]} == {"webshop": 5400.0, "blog": 2700.0}


@pytest.mark.parametrize(
    ("form", "content", "line", "problem"),
    [
        (
            "timewarrior",
            '[\n{"start":"20261124T090000Z","end":"20261124T100000Z"},\n{"start":"yesterday","end":"x"}\n]',
            3,
            "time data",
        ),
        ("timewarrior", '{"not": "an array"}', 1, "not a JSON array"),
        (
            "watson",
            '[\n[1795510800, 1795516200, "p", "abc", []],\n[1795516200, 1795510800, "p", "def", []]\n]',
            3,
            "before it starts",
        ),
        ("watson", "[\n[1, 2, 3]\n]", 2, "a frame is"),
    ],
)
def test_a_bad_peer_record_names_its_line(
    tmp_path: Path, cli: Cli, form: str, content: str, line: int, problem: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    done = cli("import", str(bad), "--from", form)
    assert done.returncode == 2, done.stderr
    assert f"line {line}:" in done.stderr
    assert problem in done.stderr
    assert cli("export").stdout == ""


def test_import_through_the_daemon(tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli) -> None:
    _store(tmp_path / "source", _history())
    dump = tmp_path / "sessions.jsonl"
    dump.write_text(cli("export", data=tmp_path / "source").stdout)
    with run_daemon(tmp_path, data_dir, runtime_dir):
        done = cli("import", str(dump), "--from", "jsonl", "--json")
        assert json.loads(done.stdout)["added"] == 2, done.stderr
        assert len(json.loads(cli("list", "--json").stdout)) == 2  # the daemon holds them
        assert "cannot read" in cli("import", str(tmp_path / "missing"), "--from", "jsonl").stderr


def test_csv_and_icalendar_are_well_formed(data_dir: Path, cli: Cli) -> None:
    _store(data_dir, _history())
    table = cli("export", "--format", "csv")
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [r["project"] for r in rows] == ["webshop", "blog"]
    assert (rows[0]["tags"], rows[0]["wall_seconds"], rows[0]["active_seconds"]) == (
        "ai review",
        "5400.000",
        "4800.000",
    )
    assert json.loads(rows[0]["labels"]) == {"ticket": "WS-42"}
    calendar = cli("export", "--format", "ical")
    assert calendar.returncode == 0, calendar.stderr
    text = calendar.stdout.replace("\r\n", "\n")
    assert text.startswith("BEGIN:VCALENDAR\nVERSION:2.0\n")
    assert text.rstrip("\n").endswith("END:VCALENDAR")
    assert text.count("BEGIN:VEVENT") == 2
    assert "DTSTART:20261124T090000Z\nDTEND:20261124T103000Z\nSUMMARY:Checkout flow\\, part 1" in text
    assert "CATEGORIES:ai,review" in text
    assert all(len(line.encode()) <= 75 for line in text.split("\n"))  # folded


def test_export_to_a_file_and_to_a_reader_that_leaves(tmp_path: Path, data_dir: Path, cli: Cli) -> None:
    _store(data_dir, _history())
    out = tmp_path / "out.jsonl"
    assert cli("export", "-o", str(out)).returncode == 0
    assert len(out.read_text().splitlines()) == 2
    assert not list(tmp_path.glob(".out.jsonl.*"))  # no temporary file left
    env = clean_env(tmp_path)
    export = subprocess.Popen(
        [str(SESSION_AGENT), "--data-dir", str(data_dir), "export"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert export.stdout is not None
    assert len(export.stdout.read(10)) == 10
    export.stdout.close()  # the reader leaves, as `| head -c 10` does
    _, stderr = export.communicate(timeout=CLI_TIMEOUT)
    assert export.returncode == 0, stderr
    piped = subprocess.CompletedProcess(export.args, 0, "", stderr.decode())
    assert "Traceback" not in piped.stderr
    assert "Broken pipe" not in piped.stderr


def test_import_refuses_what_is_not_a_regular_file_without_waiting_on_it(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    """A FIFO where the file should be would block a plain open for ever:
    refused at once, embedded and through the daemon."""
    fifo = tmp_path / "frames"
    os.mkfifo(fifo)
    done = cli("import", str(fifo), "--from", "watson")
    assert (done.returncode, "is not a regular file" in done.stderr) == (2, True), done.stderr
    with run_daemon(tmp_path, data_dir, runtime_dir):
        done = cli("import", str(fifo), "--from", "watson")
        assert (done.returncode, "is not a regular file" in done.stderr) == (2, True), done.stderr

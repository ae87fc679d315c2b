"""In-process tests of the daemon's small parts: the wire format, watch
settings, the instance lock and pidfile, sessions from JSON, paging keys."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.control.protocol import (
    ProtocolError,
    decode_reply,
    decode_request,
    encode_error,
    encode_reply,
    encode_request,
)
from agent.errors import DaemonError, DaemonRunningError, SessionAlreadyActiveError
from agent.instance import InstanceLock, live_daemon_pid, read_pid
from agent.manager import SessionManager
from agent.session import EndReason, Session
from agent.watcher import DEFAULT_DEBOUNCE_MS, DEFAULT_STEP_MS, WatchSettings

from ..support.helpers import HOLD_INSTANCE_LOCK, held_by_another_process

# --- wire format -------------------------------------------------------------------


def test_a_request_round_trips() -> None:
    line = encode_request("list", limit=5, before=None)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert decode_request(line) == ("list", {"limit": 5, "before": None})


def test_a_reply_round_trips_and_an_error_is_raised_with_its_exit_code() -> None:
    assert decode_reply(encode_reply({"a": [1, "é"]})) == {"a": [1, "é"]}
    with pytest.raises(DaemonError) as caught:
        decode_reply(encode_error(SessionAlreadyActiveError("abc")))
    assert caught.value.exit_code == 3
    assert "abc is already active" in str(caught.value)


@pytest.mark.parametrize(
    "line",
    [b'{"ok": false}\n', b'{"ok": false, "error": "boom"}\n', b"null\n", b"{not json\n"],
)
def test_a_malformed_reply_is_a_daemon_error(line: bytes) -> None:
    with pytest.raises(DaemonError):
        decode_reply(line)


def test_a_reply_with_an_absurd_exit_code_maps_to_5() -> None:
    line = b'{"v":1,"ok":false,"error":{"type":"X","message":"m","exit_code":999}}\n'
    with pytest.raises(DaemonError) as caught:
        decode_reply(line)
    assert caught.value.exit_code == 5


def test_an_unknown_op_is_a_protocol_error_that_names_the_known_ones() -> None:
    with pytest.raises(ProtocolError, match="known: abandon, count, current"):
        decode_request(b'{"v":1,"op":"' + b"x" * 100 + b'"}\n')


# --- watch settings -----------------------------------------------------------------


def test_watch_settings_option_beats_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSION_AGENT_WATCH_STEP_MS", raising=False)
    monkeypatch.delenv("SESSION_AGENT_WATCH_DEBOUNCE_MS", raising=False)
    assert WatchSettings.resolve() == WatchSettings(DEFAULT_STEP_MS, DEFAULT_DEBOUNCE_MS)
    monkeypatch.setenv("SESSION_AGENT_WATCH_STEP_MS", "20")
    monkeypatch.setenv("SESSION_AGENT_WATCH_DEBOUNCE_MS", " 300 ")
    assert WatchSettings.resolve() == WatchSettings(20, 300)
    assert WatchSettings.resolve(step_ms=5, debounce_ms=0) == WatchSettings(5, 0)


@pytest.mark.parametrize(("step", "debounce"), [(0, 100), (1001, 100), (10, -1), (10, 10_001)])
def test_watch_settings_out_of_range_are_refused(step: int, debounce: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        WatchSettings(step, debounce)


# --- instance lock and pidfile --------------------------------------------------------


def test_the_instance_lock_admits_one_process_and_names_it(data_dir: Path) -> None:
    with held_by_another_process(HOLD_INSTANCE_LOCK, data_dir) as holder:
        with pytest.raises(DaemonRunningError) as caught:
            InstanceLock.acquire(data_dir)
        assert caught.value.pid == holder.pid
        assert caught.value.exit_code == 6
    lock = InstanceLock.acquire(data_dir)  # released: free again
    assert read_pid(data_dir) == os.getpid()
    lock.release()
    assert read_pid(data_dir) is None  # emptied on release


def test_the_pidfile_is_never_followed_through_a_symlink(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (data_dir / "daemon.pid").symlink_to(target)
    with pytest.raises(Exception, match="symlink"):
        InstanceLock.acquire(data_dir)
    assert target.read_text() == "keep"


def test_a_stale_pid_is_not_named(data_dir: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (data_dir / "daemon.pid").write_text(f"{dead.pid}\n")
    assert read_pid(data_dir) == dead.pid
    assert live_daemon_pid(data_dir) is None


def test_a_reused_pid_is_not_named(data_dir: Path) -> None:
    # A process that started after the pidfile was written cannot have written it.
    pidfile = data_dir / "daemon.pid"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "daemon"]) as newer:
        try:
            pidfile.write_text(f"{newer.pid}\n")
            past = time.time() - 60
            os.utime(pidfile, (past, past))
            assert live_daemon_pid(data_dir) is None
        finally:
            newer.kill()


def test_a_process_that_is_no_daemon_is_not_named(data_dir: Path) -> None:
    (data_dir / "daemon.pid").write_text(f"{os.getpid()}\n")  # pytest: no "daemon" in its command line
    assert live_daemon_pid(data_dir) is None


# --- sessions as JSON, and paging -------------------------------------------------------


def test_session_from_dict_inverts_to_dict() -> None:
    session = Session.begin(owner_pid=1, idle_timeout=60, idle_grace=5).completed(EndReason.FILE)
    assert Session.from_dict(session.to_dict()) == session


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "JSON object"),
        ({"id": "x"}, "lacks the field"),
        (
            {
                "id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                "status": "active",
                "started_at": 5,
                "ended_at": None,
                "memory_count": 0,
                "last_activity_at": "2026-01-01T00:00:00Z",
            },
            "is not a string",
        ),
    ],
)
def test_session_from_dict_names_what_is_wrong(data: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Session.from_dict(data)


def test_list_continues_before_an_id(manager: SessionManager) -> None:
    ids = []
    for _ in range(5):
        ids.append(manager.start().id)
        manager.end()
    newest_first = list(reversed(ids))
    assert [s.id for s in manager.list_sessions(limit=2)] == newest_first[:2]
    assert [s.id for s in manager.list_sessions(limit=2, before=newest_first[1])] == newest_first[2:4]
    assert [s.id for s in manager.list_sessions(before=newest_first[-1])] == []


def test_a_snapshots_name_reads_back_as_the_time_it_was_taken() -> None:
    """Snapshot names are read without strptime (3 ms of every embedded close):
    the hand-written reading must agree with it, and refuse what is not one."""
    from datetime import UTC, datetime

    from agent.snapshots import snapshot_time

    for seconds in (0, 1, 1_700_000_000.123456, 4_000_000_000.999999):
        taken = datetime.fromtimestamp(seconds, UTC)
        name = taken.strftime("%Y%m%dT%H%M%S.%fZ")
        assert snapshot_time(Path(name)) == datetime.strptime(name, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    for other in ("x", ".partial-20261130T041052.123456Z", "20261130T041052Z", "20261301T000000.000000Z"):
        assert snapshot_time(Path(other)) is None

"""SessionManager through the Python API: the original task's criteria and more."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from agent import (
    InvalidSessionIdError,
    SessionAlreadyActiveError,
    SessionManager,
    SessionStatus,
    StorageError,
    open_db,
)
from agent.session import Session, utc_now
from agent.store_keys import ScopeKeys

from ..support.commands import backdate_active, open_manager
from ..support.helpers import damage_record

# --- the six validation criteria of the original task, one test each --------


async def test_start_session_creates_a_new_session_and_tracks_it_as_current(manager: SessionManager) -> None:
    sid = await manager.start_session()
    session = await manager.get_session(sid)
    assert session is not None
    assert session.status is SessionStatus.ACTIVE
    assert await manager.get_current_session() == sid
    assert manager.current_file.read_text() == f"{sid}\n"


async def test_end_session_marks_it_complete_and_clears_current(manager: SessionManager) -> None:
    sid = await manager.start_session()
    await manager.end_session(sid)
    session = await manager.get_session(sid)
    assert session is not None
    assert session.status is SessionStatus.COMPLETED
    assert session.ended_at is not None
    assert session.ended_at >= session.started_at
    assert await manager.get_current_session() is None
    assert not manager.current_file.exists()


async def test_get_current_session_returns_the_correct_id(manager: SessionManager) -> None:
    assert await manager.get_current_session() is None
    first = await manager.start_session()
    assert await manager.get_current_session() == first
    await manager.end_session(first)
    second = await manager.start_session()
    assert second != first
    assert await manager.get_current_session() == second


RESTART_SCRIPT = """
import asyncio, sys
from pathlib import Path
from agent import SessionManager, open_db
data = Path(sys.argv[1])
async def main():
    with SessionManager(open_db(data / "db"), data) as manager:
        if sys.argv[2] == "start":
            print(await manager.start_session())
        else:
            print(await manager.get_current_session())
asyncio.run(main())
"""


def _in_new_process(data_dir: Path, action: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", RESTART_SCRIPT, str(data_dir), action],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


def test_the_current_session_survives_a_process_restart(data_dir: Path) -> None:
    sid = _in_new_process(data_dir, "start")
    assert len(sid) == 36
    assert _in_new_process(data_dir, "current") == sid


async def test_end_session_is_idempotent(manager: SessionManager) -> None:
    sid = await manager.start_session()
    await manager.end_session(sid)
    ended = await manager.get_session(sid)
    await manager.end_session(sid)
    await manager.abandon_session(sid)
    await manager.end_session("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")  # unknown: no error
    assert await manager.get_session(sid) == ended


async def test_start_session_fails_if_a_session_is_active(manager: SessionManager) -> None:
    sid = await manager.start_session()
    with pytest.raises(SessionAlreadyActiveError, match=sid) as caught:
        await manager.start_session()
    assert caught.value.session_id == sid
    assert caught.value.exit_code == 3
    assert await manager.get_current_session() == sid


# --- beyond the original task ---------------------------------------------------


async def test_abandon_session_records_abandoned_and_is_idempotent(manager: SessionManager) -> None:
    sid = await manager.start_session()
    await manager.abandon_session(sid)
    first = await manager.get_session(sid)
    assert first is not None
    assert first.status is SessionStatus.ABANDONED
    await manager.abandon_session(sid)
    await manager.end_session(sid)
    assert await manager.get_session(sid) == first
    assert await manager.get_current_session() is None


async def test_ending_an_old_session_leaves_the_current_one_alone(manager: SessionManager) -> None:
    old = await manager.start_session()
    await manager.end_session(old)
    new = await manager.start_session()
    await manager.end_session(old)
    assert await manager.get_current_session() == new
    assert manager.current_file.read_text() == f"{new}\n"


async def test_ids_from_outside_are_validated_and_canonicalised(manager: SessionManager) -> None:
    sid = await manager.start_session()
    assert await manager.get_session(sid.upper()) == await manager.get_session(sid)
    for bad in ("../x", "x" * 5000, "", "not-a-uuid"):
        with pytest.raises(InvalidSessionIdError):
            await manager.get_session(bad)
        with pytest.raises(InvalidSessionIdError):
            await manager.end_session(bad)
    assert await manager.get_session("0193a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b") is None


async def test_two_concurrent_starts_exactly_one_wins(manager: SessionManager) -> None:
    results = await asyncio.gather(*(manager.start_session() for _ in range(2)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, str)]
    losers = [r for r in results if isinstance(r, SessionAlreadyActiveError)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert losers[0].session_id == winners[0]


def test_starts_racing_from_threads_exactly_one_wins(manager: SessionManager) -> None:
    barrier = threading.Barrier(16)
    outcomes: list[object] = []

    def race() -> None:
        barrier.wait()
        try:
            outcomes.append(manager.start().id)
        except SessionAlreadyActiveError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=race) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    winners = [o for o in outcomes if isinstance(o, str)]
    assert len(winners) == 1
    assert len(outcomes) == 16
    active = [s for s in manager.list_sessions() if s.is_active]
    assert [s.id for s in active] == winners


def test_list_sessions_newest_first_with_filters(manager: SessionManager) -> None:
    ids = []
    for i in range(5):
        s = manager.start()
        ids.append(s.id)
        if i % 2:
            manager.abandon()
        elif i < 4:
            manager.end()
    assert [s.id for s in manager.list_sessions()] == ids[::-1]
    assert [s.id for s in manager.list_sessions(limit=2)] == ids[:2:-1]
    assert [s.id for s in manager.list_sessions(statuses=frozenset({SessionStatus.ACTIVE}))] == [ids[4]]
    abandoned = manager.list_sessions(statuses=frozenset({SessionStatus.ABANDONED}))
    assert [s.id for s in abandoned] == [ids[3], ids[1]]
    assert manager.list_sessions(since=utc_now() + timedelta(minutes=1)) == []
    assert len(manager.list_sessions(since=utc_now() - timedelta(minutes=1))) == 5


def test_a_dangling_active_pointer_is_ignored(manager: SessionManager) -> None:
    manager.store.commit(meta={ScopeKeys.ACTIVE: b"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"})
    assert manager.reconcile() is None
    assert manager.start().is_active


def test_a_corrupt_record_does_not_stop_the_manager(data_dir: Path) -> None:
    db = open_db(data_dir / "db")
    manager = SessionManager(db, data_dir)
    broken = Session.begin()
    manager.store.commit((broken,))  # stored with its index entry, then its record damaged
    damage_record(db, broken.id, b"\x01\x02")
    with pytest.raises(StorageError, match=broken.id):
        manager.get(broken.id)
    sid = manager.start().id
    errors: list[StorageError] = []
    assert [s.id for s in manager.list_sessions(errors=errors)] == [sid]
    assert [broken.id in str(e) for e in errors] == [True]
    manager.close()


# --- reconciliation through the API ------------------------------------------------


def test_a_touch_is_a_heartbeat_recorded_at_the_touch_time(manager: SessionManager) -> None:
    sid = manager.start().id
    before = backdate_active(manager, 3600)
    os.utime(manager.current_file)
    after = manager.reconcile()
    assert after is not None
    assert after.id == sid
    assert after.last_activity_at > before.last_activity_at + timedelta(minutes=59)


def test_heartbeats_are_rate_limited_to_one_durable_write_a_second(manager: SessionManager) -> None:
    manager.start()
    first = manager.reconcile()
    assert first is not None
    os.utime(manager.current_file)  # within a second of the start: not recorded
    second = manager.reconcile()
    assert second == first


def test_rewriting_the_active_id_is_a_heartbeat_and_is_canonicalised(manager: SessionManager) -> None:
    sid = manager.start().id
    before = backdate_active(manager, 60)
    manager.current_file.write_text(f"  {sid.upper()}  ")
    after = manager.reconcile()
    assert after is not None
    assert after.last_activity_at > before.last_activity_at
    assert manager.current_file.read_text() == f"{sid}\n"


def test_a_restart_after_a_clean_stop_keeps_the_session_and_the_file(data_dir: Path) -> None:
    with open_manager(data_dir) as m:
        sid = m.start().id
    with open_manager(data_dir) as m:
        assert m.reconcile() is not None
        assert m.current_file.read_text() == f"{sid}\n"
        m.current_file.unlink()  # deletion while "down": applied on the next look
    with open_manager(data_dir) as m:
        assert m.reconcile() is None
        s = m.get(sid)
        assert s is not None
        assert s.status is SessionStatus.COMPLETED


def test_the_manager_creates_a_missing_data_dir_privately(tmp_path: Path) -> None:
    from agent import open_db

    data = tmp_path / "new" / "data"
    (tmp_path / "db-elsewhere").mkdir()
    with SessionManager(open_db(tmp_path / "db-elsewhere" / "db"), data) as manager:
        sid = manager.start().id
    assert (data / "current_session").read_text() == f"{sid}\n"
    assert data.stat().st_mode & 0o777 == 0o700

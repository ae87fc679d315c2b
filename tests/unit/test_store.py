"""The RocksDB store: opening, locking, synced batches, ordered scans."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent import StorageError, StoreDamagedError, StoreLockedError, close_db, open_db
from agent.database import CF_META, CF_SESSIONS, MAX_SMALL_FILES
from agent.events import EventKind
from agent.session import EndReason, Session, SessionStatus
from agent.session_id import session_id_floor
from agent.store import SessionStore

from ..support.helpers import damage_record, store_held_by_another_process

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(open_db(tmp_path / "db"))


def test_open_db_creates_the_store_with_its_column_families_in_raw_mode(tmp_path: Path) -> None:
    db = open_db(tmp_path / "db")
    try:
        assert set(db.list_cf(str(tmp_path / "db"))) >= {"default", CF_SESSIONS, CF_META}
        with pytest.raises(KeyError, match="raw mode"):
            db.get_column_family(CF_SESSIONS).get("text key")
    finally:
        close_db(db)
    config = json.loads((tmp_path / "db" / "rocksdict-config.json").read_text())
    assert config["raw_mode"] is True


def test_commit_writes_sessions_and_meta_and_survives_reopen(tmp_path: Path) -> None:
    store = SessionStore(open_db(tmp_path / "db"))
    s = Session.begin(T0)
    store.commit((s,), {b"active": s.id.encode()})
    store.commit(meta={b"other": b"1"})
    store.commit(meta={b"other": None})
    store.close()
    reopened = SessionStore(open_db(tmp_path / "db"))
    try:
        assert reopened.get(s.id) == s
        assert reopened.get_meta(b"active") == s.id.encode()
        assert reopened.get_meta(b"other") is None
    finally:
        reopened.close()


def test_a_store_held_by_another_process_raises_store_locked(tmp_path: Path) -> None:
    close_db(open_db(tmp_path / "db"))
    with store_held_by_another_process(tmp_path / "db") as holder:
        with pytest.raises(StoreLockedError, match=f"locked by process {holder.pid}") as caught:
            open_db(tmp_path / "db", wait=0.2)
        assert caught.value.exit_code == 6
        assert caught.value.holder_pid == holder.pid
        assert isinstance(caught.value, StorageError)
    close_db(open_db(tmp_path / "db"))  # released with the holder


def test_opening_waits_for_the_store_to_be_released(tmp_path: Path) -> None:
    close_db(open_db(tmp_path / "db"))
    with store_held_by_another_process(tmp_path / "db") as holder:
        assert holder.stdin is not None
        holder.stdin.write("\n")  # let go now; our open below must wait for it
        holder.stdin.flush()
        close_db(open_db(tmp_path / "db", wait=10))


def test_a_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    os.symlink(target, tmp_path / "db.lock")
    with pytest.raises(StorageError, match=r"db\.lock: it is a symlink"):
        open_db(tmp_path / "db")
    assert target.read_text() == "keep"


def test_a_damaged_store_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "CURRENT").write_text("MANIFEST-999999\n")
    with pytest.raises(StoreDamagedError, match="MANIFEST-999999: No such file"):
        open_db(tmp_path / "db")
    left = {p.name for p in (tmp_path / "db").iterdir()} - {"LOG", "LOCK", "rocksdict-config.json"}
    assert left == {"CURRENT"}  # nothing created over it


def _session_at(moment: datetime) -> Session:
    """A session whose id carries ``moment`` exactly (``Session.begin`` keeps
    ids increasing across the process, whatever time it is given)."""
    millis = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    sid = str(uuid.UUID(int=(millis << 80) | (0x7 << 76) | (0b10 << 62) | 1))
    return Session(sid, moment, None, SessionStatus.ACTIVE, 0, moment)


def test_newest_first_lists_in_reverse_start_order_down_to_the_floor(store: SessionStore) -> None:
    sessions = [_session_at(T0 + timedelta(hours=h)) for h in range(5)]
    store.commit(tuple(sessions))
    assert [s.id for s in store.newest_first()] == [s.id for s in reversed(sessions)]
    floor = session_id_floor(T0 + timedelta(hours=3))
    assert [s.id for s in store.newest_first(floor=floor)] == [sessions[4].id, sessions[3].id]
    store.close()


def test_a_corrupt_record_is_reported_and_the_listing_goes_on(tmp_path: Path) -> None:
    db = open_db(tmp_path / "db")
    store = SessionStore(db)
    good = [Session.begin(T0), Session.begin(T0 + timedelta(hours=2))]
    bad = Session.begin(T0 + timedelta(hours=1))
    store.commit(tuple(good))
    damage_record(db, bad.id, b"\x01garbage")
    errors: list[StorageError] = []
    assert [s.id for s in store.newest_first(errors=errors)] == [good[1].id, good[0].id]
    assert len(errors) == 1
    assert bad.id in str(errors[0])
    with pytest.raises(StorageError, match=bad.id):
        store.get(bad.id)
    with pytest.raises(StorageError, match=bad.id):
        list(store.newest_first())
    store.close()


def test_close_is_idempotent_and_releases_the_store(tmp_path: Path) -> None:
    store = SessionStore(open_db(tmp_path / "db"))
    store.close()
    store.close()
    close_db(open_db(tmp_path / "db"))


def test_a_store_closed_without_close_db_can_be_reopened_in_the_same_process(tmp_path: Path) -> None:
    open_db(tmp_path / "db").close()
    close_db(open_db(tmp_path / "db"))


def test_a_second_open_in_the_same_process_is_refused_while_the_first_is_open(tmp_path: Path) -> None:
    db = open_db(tmp_path / "db")
    try:
        with pytest.raises(StoreLockedError):
            open_db(tmp_path / "db")
        assert db.get_column_family(CF_META).get(b"x") is None  # the first is unharmed
    finally:
        close_db(db)


def test_open_db_creates_missing_parent_directories(tmp_path: Path) -> None:
    close_db(open_db(tmp_path / "a" / "b" / "db"))
    assert (tmp_path / "a" / "b" / "db" / "CURRENT").exists()


def test_many_short_openings_do_not_pile_up_files(tmp_path: Path) -> None:
    """Each close flushes a small file; RocksDB would never merge them (the
    keys do not overlap), and every open would read them all."""
    ids = []
    for _ in range(4 * MAX_SMALL_FILES):  # past the limit several times over
        store = SessionStore(open_db(tmp_path / "db"))
        session = Session.begin()
        store.commit((session,), {b"active": session.id.encode()}, events=((EventKind.STARTED, session),))
        ids.append(session.id)
        store.close()
    files = list((tmp_path / "db").glob("*.sst"))
    assert len(files) <= 4 * (MAX_SMALL_FILES + 1), len(files)  # sessions, meta, index, events
    store = SessionStore(open_db(tmp_path / "db"))
    try:
        assert [s.id for s in store.newest_first()] == ids[::-1]  # nothing lost in the merging
        assert store.get_meta(b"active") == ids[-1].encode()
        assert [e.session.id for e in store.events.after(0)] == ids
    finally:
        store.close()


def test_the_store_keeps_the_longest_ended_session_and_finds_it_once_in_an_older_store(
    tmp_path: Path,
) -> None:
    """Reports read back no further than the longest ended session: the
    bound grows with each batch, and a store from before it was kept has
    it found by one pass over the records' headers, then saved."""
    from agent.store_keys import META_LONGEST

    store = SessionStore(open_db(tmp_path / "db"))
    short = Session.begin(T0).completed(EndReason.CLI, T0 + timedelta(minutes=5))
    running = Session.begin(T0 + timedelta(hours=1))  # active: not a bound
    store.commit((short, running))
    assert store.longest_ended() == timedelta(minutes=5)
    long = Session.begin(T0 - timedelta(days=3)).completed(EndReason.CLI, T0)
    store.commit((long,))
    assert store.longest_ended() == timedelta(days=3)
    store.commit((Session.begin(T0).completed(EndReason.CLI, T0 + timedelta(seconds=1)),))
    assert store.longest_ended() == timedelta(days=3)  # never shrinks
    store.commit(meta={META_LONGEST: None})  # as a store from before the bound
    store.close()
    older = SessionStore(open_db(tmp_path / "db"))
    try:
        assert older.get_meta(META_LONGEST) is None
        assert older.longest_ended() == timedelta(days=3)
        assert older.get_meta(META_LONGEST) == str(3 * 86400 * 1_000_000).encode()
    finally:
        older.close()

"""``session-agent repair``: bring a damaged store back, saying exactly what
came back from where and what could not.

With no daemon running (it holds the store), and the store locked:

1. If the store opens and every record decodes, there is nothing to do.
2. The damaged store is moved aside, whole, to ``db.damaged-<UTC time>``:
   it is evidence, and nothing is deleted.
3. The newest snapshot that reads clean is copied in as the new store
   (copied, not linked: the damaged store's files must not be shared).
   Without one, a new empty store is made.
4. A copy of the damaged store goes through RocksDB's repair, which keeps
   what its files still hold; every record that decodes is merged in: a
   session the snapshot lacks is added, one the snapshot has active but the
   damaged store has further along (ended, or with later activity) is
   taken from there. A session never goes back from ended to active.
5. A current file naming a session that came back from nowhere is moved
   aside (``current_session.lost``), so the store is not refused again
   for it; the report names it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from rocksdict import Rdict

from agent.current_file import CurrentFile, FileKind
from agent.database import CF_SESSIONS, column_families, holds_a_store, open_db, options, store_lock
from agent.errors import DaemonRunningError, SessionError, StorageError, StoreDamagedError
from agent.events import EventKind
from agent.file_edits import EditKind, parse_edit
from agent.instance import InstanceLock
from agent.layout import scope_dir
from agent.paths import Paths
from agent.record import decode_record
from agent.scope import DEFAULT_SCOPE, scope_problem
from agent.session import Session
from agent.session_id import parse_session_id
from agent.snapshots import Snapshots
from agent.store import SessionStore
from agent.store_keys import ScopeKeys

__all__ = ["RepairReport", "repair"]

_LOCK_WAIT = 4.0


class RepairReport:
    """What ``repair`` did, for the user (``lines``) and for programs (``to_dict``)."""

    def __init__(self) -> None:
        self.needed = False
        self.damage: str | None = None
        self.moved_to: Path | None = None
        self.snapshot: Path | None = None
        self.from_snapshot = 0
        self.salvaged_new = 0
        self.salvaged_newer = 0
        self.unreadable = 0
        self.salvage_failed: str | None = None
        self.files_set_aside: list[Path] = []

    def lines(self) -> list[str]:
        if not self.needed:
            return ["the store opens and every record decodes: nothing to repair"]
        lines = [f"the store was damaged: {self.damage}", f"moved it, whole, to {self.moved_to}"]
        if self.snapshot is not None:
            lines.append(f"restored snapshot {self.snapshot.name}: {self.from_snapshot} sessions")
        else:
            lines.append("no snapshot could be read: started from an empty store")
        if self.salvage_failed is not None:
            lines.append(f"nothing could be salvaged from the damaged store: {self.salvage_failed}")
        else:
            lines.append(
                f"salvaged from the damaged store: {self.salvaged_new} sessions the snapshot lacked, "
                f"{self.salvaged_newer} further along than in the snapshot"
            )
        if self.unreadable:
            lines.append(f"lost: {self.unreadable} records of the damaged store could not be read")
        for path in self.files_set_aside:
            lines.append(f"{path} named a session that could not be recovered: moved it to {path}.lost")
        lines.append(
            "anything the damaged store had lost before this repair cannot be known; "
            f"its files stay in {self.moved_to}"
        )
        return lines

    def to_dict(self) -> dict[str, object]:
        return {
            "repaired": self.needed,
            "damage": self.damage,
            "damaged_store_kept_at": str(self.moved_to) if self.moved_to else None,
            "snapshot": self.snapshot.name if self.snapshot else None,
            "sessions_from_snapshot": self.from_snapshot,
            "salvaged_new": self.salvaged_new,
            "salvaged_further_along": self.salvaged_newer,
            "unreadable_records": self.unreadable,
            "salvage_failed": self.salvage_failed,
            "current_files_set_aside": [str(p) for p in self.files_set_aside],
        }


def repair(paths: Paths, now: datetime | None = None) -> RepairReport:
    """Repair the store of ``paths`` (see the module's docstring)."""
    now = now or datetime.now(UTC)
    try:
        instance = InstanceLock.acquire(paths.data_dir)
    except DaemonRunningError as exc:
        raise DaemonRunningError(
            paths.data_dir, exc.pid, "stop it first: a repair needs the store to itself"
        ) from None
    try:
        with store_lock(paths.db, _LOCK_WAIT):
            return _repair_locked(paths, now)
    finally:
        instance.release()


def _repair_locked(paths: Paths, now: datetime) -> RepairReport:
    report = RepairReport()
    if not holds_a_store(paths.db):
        return report
    report.damage = _damage(paths)
    if report.damage is None:
        return report
    report.needed = True
    report.moved_to = paths.db.with_name(f"db.damaged-{now:%Y%m%dT%H%M%SZ}")
    os.rename(paths.db, report.moved_to)
    report.snapshot = _restore_newest_snapshot(paths)
    restored = SessionStore(open_db(paths.db))
    try:
        report.from_snapshot = sum(1 for _ in restored.newest_first(errors=[]))
        _merge_salvage(report.moved_to, restored, report)
        report.files_set_aside = _set_aside_lost_files(paths, restored)
    finally:
        restored.close()
    return report


def _damage(paths: Paths) -> str | None:
    """What is wrong with the store, or ``None`` if it is sound."""
    try:
        store = SessionStore(open_db(paths.db))
    except StoreDamagedError as exc:
        return exc.problem
    except StorageError as exc:
        return str(exc)
    try:
        errors: list[StorageError] = []
        for _ in store.newest_first(errors=errors):
            pass
        if errors:
            return f"{len(errors)} records do not decode, e.g. {errors[0]}"
        lost = _files_naming_lost_sessions(paths, store)
        if lost:
            return f"{lost[0]} names a session newer than any the store holds: it lost writes"
        return None
    finally:
        store.close()


def _restore_newest_snapshot(paths: Paths) -> Path | None:
    for snapshot in Snapshots(paths.data_dir).all():
        shutil.copytree(snapshot, paths.db)
        try:
            store = SessionStore(open_db(paths.db))
            try:
                errors: list[StorageError] = []
                for _ in store.newest_first(errors=errors):
                    pass
            finally:
                store.close()
            if not errors:
                return snapshot
        except SessionError:
            pass
        shutil.rmtree(paths.db)
    return None


def _merge_salvage(damaged: Path, restored: SessionStore, report: RepairReport) -> None:
    """Every record RocksDB's repair finds in a copy of the damaged store,
    merged into ``restored`` in one synced batch (see the module's docstring)."""
    with tempfile.TemporaryDirectory(prefix="salvage-", dir=damaged.parent) as scratch:
        copy = Path(scratch) / "db"
        try:
            shutil.copytree(damaged, copy)
            Rdict.repair(str(copy), options(create=False))
            salvaged_db = Rdict(str(copy), options(create=False), column_families=column_families())
        except Exception as exc:
            report.salvage_failed = str(exc)
            return
        try:
            merged = list(_merged(_salvaged(salvaged_db, report), restored, report))
            meta = _pointers(salvaged_db, restored, merged)
        finally:
            salvaged_db.close()
    # Announced as events, so the log agrees with the sessions and its
    # followers learn of what the snapshot did not hold.
    salvaged = tuple((EventKind.STARTED if s.is_active else EventKind.ENDED, s) for s in merged)
    restored.commit(tuple(merged), meta, events=salvaged)


def _salvaged(db: Rdict, report: RepairReport) -> Iterator[Session]:
    """Every record that decodes, from the sessions column family and from
    the default one (where RocksDB's repair puts what it cannot place)."""
    for family in (db.get_column_family(CF_SESSIONS), db):
        for key, value in family.items():
            if not isinstance(key, bytes) or not isinstance(value, bytes):
                continue
            try:
                parse_session_id(key.decode("ascii"))
                yield decode_record(key, value)
            except (UnicodeDecodeError, ValueError, StorageError):
                if family is not db:
                    report.unreadable += 1


def _merged(salvaged: Iterator[Session], restored: SessionStore, report: RepairReport) -> Iterator[Session]:
    for session in salvaged:
        have = restored.get(session.id)
        if have is None:
            report.salvaged_new += 1
            yield session
        elif have != session and have.is_active and _further_along(session, have):
            report.salvaged_newer += 1
            yield session


def _further_along(candidate: Session, have: Session) -> bool:
    if not candidate.is_active:
        return True
    return candidate.last_activity_at > have.last_activity_at


def _pointers(salvaged_db: Rdict, restored: SessionStore, merged: list[Session]) -> dict[bytes, bytes | None]:
    """Each scope's active pointer after the merge: the damaged store's if
    its session is active, else the snapshot's if its session still is."""
    now_ended = {s.id for s in merged if not s.is_active}
    meta: dict[bytes, bytes | None] = {}
    for key, value in restored.meta_with_prefix(ScopeKeys.ACTIVE):
        if value.decode("ascii", "replace") in now_ended:
            keys = ScopeKeys(ScopeKeys.scope_of(key))
            meta[keys.active] = None
            meta[keys.tracking] = None
    salvaged_meta = salvaged_db.get_column_family("meta")
    merged_ids = {s.id: s for s in merged}
    for raw_key, raw_value in salvaged_meta.items(from_key=ScopeKeys.ACTIVE):
        if not isinstance(raw_key, bytes) or not raw_key.startswith(ScopeKeys.ACTIVE):
            break
        if not isinstance(raw_value, bytes):
            continue
        key, value = raw_key, raw_value
        session = merged_ids.get(value.decode("ascii", "replace")) or restored.get(
            value.decode("ascii", "replace")
        )
        if session is None or not session.is_active:
            continue
        keys = ScopeKeys(ScopeKeys.scope_of(key))
        for name in (keys.active, keys.tracking, keys.stamp):
            found = salvaged_meta.get(name)
            meta[name] = found if isinstance(found, bytes) else None
    return meta


def _files_naming_lost_sessions(paths: Paths, store: SessionStore, *, strict: bool = True) -> list[Path]:
    """Current files naming a session the store lost (``SessionStore.lost``;
    not ``strict``: any session it does not hold, as after a repair, where
    the store may be younger than the file)."""
    lost = []
    try:
        scopes = [p.name for p in (paths.scopes_dir).iterdir() if scope_problem(p.name) is None]
    except OSError:
        scopes = []
    for scope in [DEFAULT_SCOPE, *scopes]:
        file = CurrentFile(scope_dir(paths.data_dir, scope))
        observed = file.observe()
        if observed.kind is not FileKind.REGULAR:
            continue
        edit = parse_edit(observed.content)
        named = edit.session_id if edit.kind is EditKind.NAMES else None
        if named is not None and (store.lost(named) if strict else store.get(named) is None):
            lost.append(file.path)
    return lost


def _set_aside_lost_files(paths: Paths, store: SessionStore) -> list[Path]:
    moved = []
    for path in _files_naming_lost_sessions(paths, store, strict=False):
        os.replace(path, path.with_name(path.name + ".lost"))
        moved.append(path)
    return moved

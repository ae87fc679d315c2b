"""``SessionManager``: the session lifecycle and the file protocol.

The store is the truth; the current-session file mirrors it and is also an
input. Every operation first *settles*: it looks at the file, applies any
external edit by the rules of the file protocol (see the README), and makes
the file match the store again. A transition is then one synced store batch
followed by another settle, so the normal path and crash repair are the same
code: after a crash between the store write and the file write, the next
settle finds the file out of date and rewrites it.

To know whether the file was deleted by a user or never written, the store
keeps a ``Stamp`` of our last completed file write: a missing file ends the
active session only if the stamp says we had finished writing it.

Transitions are serialized by a lock, and the store itself admits one process
at a time. The work is sub-millisecond synchronous I/O, so the async methods
(the API of the original task) run it inline rather than in a thread.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from rocksdict import Rdict

from agent import faults
from agent.current_file import (
    CurrentFile,
    EditKind,
    FileChangedError,
    FileKind,
    Observation,
    Stamp,
    parse_edit,
)
from agent.errors import SessionAlreadyActiveError, SessionIOError, StorageError
from agent.paths import ensure_private_dir
from agent.session import Session, SessionStatus, parse_session_id, session_id_floor, utc_now
from agent.store import SessionStore

__all__ = ["HEARTBEAT_INTERVAL", "SessionManager"]

log = logging.getLogger(__name__)

META_ACTIVE = b"active"  # id of the active session, absent when none
META_STAMP = b"file_stamp"  # Stamp of our last completed write of the file
HEARTBEAT_INTERVAL = timedelta(seconds=1)
_SETTLE_ATTEMPTS = 8
_ENDS_AS = {EditKind.END: SessionStatus.COMPLETED, EditKind.ABANDON: SessionStatus.ABANDONED}


class SessionManager:
    """Starts, ends and looks up sessions; keeps the file and the store agreed.

    Takes ownership of ``db``: ``close()`` closes it.
    """

    def __init__(self, db: Rdict, data_dir: str | Path) -> None:
        self._store = SessionStore(db)
        self._file = CurrentFile(ensure_private_dir(Path(data_dir)))
        self._lock = threading.RLock()
        self._file.remove_leftovers()

    @property
    def current_file(self) -> Path:
        return self._file.path

    # --- the API of the original task -----------------------------------------

    async def start_session(self) -> str:
        return self.start().id

    async def end_session(self, session_id: str) -> None:
        self.end(session_id)

    async def abandon_session(self, session_id: str) -> None:
        self.abandon(session_id)

    async def get_current_session(self) -> str | None:
        active = self.reconcile(busy_ok=True)
        return active.id if active else None

    async def get_session(self, session_id: str) -> Session | None:
        return self.get(session_id)

    # --- synchronous core -------------------------------------------------------

    def start(self) -> Session:
        """Start a session; ``SessionAlreadyActiveError`` if one is active."""
        with self._lock:
            active = self._settle(busy_ok=True)
            if active is not None:
                raise SessionAlreadyActiveError(active.id)
            session = Session.begin()
            self._record(session, moves_pointer=True)
            self._mirror(f"session {session.id} was started")
            return session

    def end(self, session_id: str | None = None) -> Session | None:
        """Complete ``session_id`` (default: the active one).

        Idempotent: returns the ended session, or ``None`` when it was
        unknown or already terminated.
        """
        return self._terminate(session_id, SessionStatus.COMPLETED)

    def abandon(self, session_id: str | None = None) -> Session | None:
        """Like ``end``, but the session is recorded as abandoned."""
        return self._terminate(session_id, SessionStatus.ABANDONED)

    def get(self, session_id: str) -> Session | None:
        return self._store.get(parse_session_id(session_id))

    def touch(self) -> Session | None:
        """Record activity on the active session now, as a touch of the file
        would (at most one write a second); ``None`` when none is active."""
        with self._lock:
            active = self._settle(busy_ok=True)
            if active is None:
                return None
            now = utc_now()
            if now - active.last_activity_at >= HEARTBEAT_INTERVAL:
                active = active.with_activity(now)
                self._store.commit((active,))
            return active

    def active(self) -> Session | None:
        """The active session as the store has it, without looking at the file."""
        with self._lock:
            return self._active()

    def reconcile(self, *, busy_ok: bool = False) -> Session | None:
        """Apply whatever the current file holds now; return the active session.

        A file that keeps changing while it is applied raises
        ``SessionIOError`` (the daemon tries again later), or with
        ``busy_ok`` is left for the next settle: the answer is then the
        store's, which is the truth up to the edits not yet applied."""
        with self._lock:
            return self._settle(busy_ok=busy_ok)

    def list_sessions(
        self,
        *,
        statuses: frozenset[SessionStatus] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        before: str | None = None,
        errors: list[StorageError] | None = None,
    ) -> list[Session]:
        """Sessions newest first; corrupt records go to ``errors`` if given.

        ``before`` (a session id) continues a listing after its last page."""
        if limit is not None and limit <= 0:
            return []
        if statuses == frozenset({SessionStatus.ACTIVE}):  # no scan: the pointer knows
            active = self._active()
            if active is None or (since is not None and active.started_at < since):
                return []
            if before is not None and active.id >= before:
                return []
            return [active]
        # Ids are UUIDv7 and only move forward, so an id's time is never before
        # its session's start: every session started since `since` is >= floor.
        floor = session_id_floor(since) if since else None
        found: list[Session] = []
        ceiling = parse_session_id(before) if before is not None else None
        for session in self._store.newest_first(floor=floor, before=ceiling, errors=errors):
            if since is not None and session.started_at < since:
                continue
            if statuses is not None and session.status not in statuses:
                continue
            found.append(session)
            if limit is not None and len(found) >= limit:
                break
        return found

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------

    def _terminate(self, session_id: str | None, status: SessionStatus) -> Session | None:
        wanted = parse_session_id(session_id) if session_id is not None else None
        with self._lock:
            active = self._settle(busy_ok=True)
            target = active if wanted is None or (active and active.id == wanted) else None
            if target is None and wanted is not None:
                target = self._store.get(wanted)
            if target is None or not target.is_active:
                return None
            ended = target.terminated(status)
            self._record(ended, moves_pointer=active is not None and active.id == ended.id)
            self._mirror(f"session {ended.id} was {ended.status.value}")
            return ended

    def _active(self) -> Session | None:
        raw = self._store.get_meta(META_ACTIVE)
        if raw is None:
            return None
        session_id = raw.decode("ascii", "replace")
        session = self._store.get(session_id)
        if session is None or not session.is_active:
            log.warning("the store named %s as active but it is not; ignoring it", session_id)
            return None
        return session

    def _mirror(self, done: str) -> None:
        """Settle after a committed transition. If that fails (a full disk),
        the error says the transition itself is durable: the file catches
        up at the next settle, which a daemon runs by itself."""
        try:
            self._settle(mirroring=True, busy_ok=True)
        except SessionIOError as exc:
            raise SessionIOError(f"{done}, but {exc} (repaired by itself once that is fixed)") from None
        except StorageError as exc:
            raise StorageError(f"{done}, but {exc} (repaired by itself once that is fixed)") from None

    def _settle(self, *, mirroring: bool = False, busy_ok: bool = False) -> Session | None:
        """Apply the file, then make it match the store. ``mirroring``: we
        just committed a change, so a stale file is expected, not repaired.
        ``busy_ok``: see ``reconcile``."""
        for _ in range(_SETTLE_ATTEMPTS):
            observed = self._file.observe()
            active = self._active()
            stamp = Stamp.decode(self._store.get_meta(META_STAMP))
            try:
                return self._apply(observed, active, stamp, mirroring=mirroring)
            except FileChangedError:
                continue  # an edit landed while we worked: apply it too
        if busy_ok:
            log.warning("%s keeps changing; its latest edits are applied once it settles", self._file.path)
            return self._active()
        raise SessionIOError(
            f"{self._file.path} changed {_SETTLE_ATTEMPTS} times while being applied; "
            "try again once the program writing it has finished"
        )

    def _apply(
        self, observed: Observation, active: Session | None, stamp: Stamp | None, *, mirroring: bool = False
    ) -> Session | None:
        """The file-protocol table: one observation against the truth."""
        path = self._file.path
        kind = observed.kind
        if kind is FileKind.DIRECTORY:
            log.error("%s is a directory; remove it so the current session can be shown there", path)
            return active
        if kind is not FileKind.REGULAR and kind is not FileKind.MISSING:
            log.warning("%s was replaced by a %s; it was not followed, and is restored", path, kind.value)
            self._write_truth(observed, active)
            return active
        if kind is FileKind.MISSING:
            if active is None:
                return None
            if stamp is not None and stamp.session_id == active.id:
                log.info("current file deleted: completing session %s", active.id)
                return self._transition(observed, active.completed())
            if not mirroring:
                log.info("restoring the current file for session %s (its write was interrupted)", active.id)
            self._write_truth(observed, active)
            return active
        if stamp is not None and stamp.matches(observed):  # our own write, untouched
            if active is None or stamp.session_id != active.id:
                self._write_truth(observed, active)
            return active

        edit = parse_edit(observed.content)
        faults.point("manager.reconcile")
        if edit.kind is EditKind.INVALID:
            log.warning("ignored an edit of %s: %s; restored it", path, edit.problem)
        elif edit.kind is EditKind.START:
            if active is None:
                started = Session.begin()
                log.info("current file says start: started session %s", started.id)
                return self._transition(observed, started)
            log.info("current file says start, but session %s is already active", active.id)
        elif edit.kind in (EditKind.END, EditKind.ABANDON):
            if active is not None:
                ended = active.terminated(_ENDS_AS[edit.kind])
                log.info(
                    "current file says %s: %s session %s", edit.kind.value, ended.status.value, active.id
                )
                return self._transition(observed, ended)
        elif active is not None and edit.session_id == active.id:
            return self._heartbeat(observed, active, stamp)
        else:
            log.warning(
                "ignored an edit of %s: %s is not the active session; restored it", path, edit.session_id
            )
        self._write_truth(observed, active)
        return active

    def _transition(self, observed: Observation, session: Session) -> Session | None:
        """Commit a change decided from ``observed``, then mirror it in the file."""
        self._record(session, moves_pointer=True)
        active = session if session.is_active else None
        self._write_truth(observed, active)
        return active

    def _record(self, session: Session, *, moves_pointer: bool) -> None:
        """One synced batch: the session and, if it is or was the active one,
        the pointer to it (set when it starts, cleared when it ends)."""
        pointer = session.id.encode("ascii") if session.is_active else None
        self._store.commit((session,), {META_ACTIVE: pointer} if moves_pointer else None)
        faults.point("manager.after_store")

    def _heartbeat(self, observed: Observation, active: Session, stamp: Stamp | None) -> Session:
        identity = observed.identity
        canonical = identity is not None and observed.content == f"{active.id}\n".encode("ascii")
        meta = {META_STAMP: Stamp(active.id, identity).encode()} if identity and canonical else {}
        if stamp is None or stamp.session_id != active.id:
            # We wrote this id but crashed before stamping it: adopt, no heartbeat.
            if meta:
                self._store.commit(meta=meta)
        else:
            now = utc_now()
            touched = _from_ns(observed.mtime_ns) if observed.mtime_ns is not None else now
            moment = min(max(touched, active.last_activity_at), now)
            if moment - active.last_activity_at >= HEARTBEAT_INTERVAL:
                active = active.with_activity(moment)
                self._store.commit((active,), meta)
                log.debug("heartbeat recorded for session %s", active.id)
        if not canonical:
            self._write_truth(observed, active)
        return active

    def _write_truth(self, observed: Observation, active: Session | None) -> None:
        """Make the file name ``active`` (or vanish), if it is still ``observed``."""
        wanted = active.id if active else None
        if wanted is None and observed.kind is FileKind.MISSING:
            return
        new_stamp = self._file.replace(observed, wanted)
        faults.point("manager.after_file")
        if new_stamp is not None:
            self._store.commit(meta={META_STAMP: new_stamp.encode()})


def _from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)

"""``SessionManager``: the commands and queries on sessions, across scopes.

It holds the store, one ``Lane`` per scope (``agent.lane``: the file, the
record and the rules of that scope), and the lock that serializes them: the
store admits one process at a time, and within it one transition at a time.
Every committed change of a scope's active session is announced to the
listeners (``subscribe``; ``agent.changes``).

The work is sub-millisecond synchronous I/O, so the async methods (the API
of the original task, ``agent.seed_api``) run it inline rather than in a
thread.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path
from types import TracebackType

from rocksdict import Rdict

from agent.changes import ActiveSession, Change, OwnerExits
from agent.clock import Clock, SystemClock
from agent.config import StartRequest, load_settings
from agent.errors import SessionAlreadyActiveError, SessionIOError, StorageError
from agent.history import list_sessions, stray_actives
from agent.lane import Lane
from agent.layout import DEFAULT_SCOPE
from agent.paths import ensure_private_dir
from agent.scope import parse_scope
from agent.scope_dirs import ScopeDirs
from agent.seed_api import SeedAPI
from agent.session import EndReason, Session, SessionStatus, parse_session_id
from agent.store import SessionStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.changes import Listener

__all__ = ["SessionManager"]

log = logging.getLogger(__name__)


class SessionManager(SeedAPI):
    """Starts, ends and looks up sessions. Takes ownership of ``db``:
    ``close()`` closes it. ``owner_exits``: when owner processes exited, as
    a daemon's watch saw it (without one, the process table is asked)."""

    def __init__(
        self,
        db: Rdict,
        data_dir: str | Path,
        *,
        clock: Clock | None = None,
        read_only: bool = False,
        owner_exits: OwnerExits | None = None,
    ) -> None:
        self._store = SessionStore(db, read_only=read_only)
        self._data_dir = ensure_private_dir(Path(data_dir))
        self._clock = clock or SystemClock()
        self._owner_exits = owner_exits or OwnerExits()
        self._dirs = ScopeDirs(self._data_dir)
        self._lanes: dict[str, Lane] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        self._lane(DEFAULT_SCOPE).file.remove_leftovers()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every ``Change`` from now on (on the thread
        that made it, the lock held: a listener only takes note); returns
        the unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @property
    def current_file(self) -> Path:
        return self._lane(DEFAULT_SCOPE).path

    def current_file_of(self, scope: str = DEFAULT_SCOPE) -> Path:
        return self._lane(scope).path

    @property
    def store(self) -> SessionStore:
        """The store, for what works on it whole (snapshots, checks)."""
        return self._store

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def scope_dirs(self) -> ScopeDirs:
        return self._dirs

    # --- commands ------------------------------------------------------------------

    def start(self, request: StartRequest | None = None, *, scope: str = DEFAULT_SCOPE) -> Session:
        """Start a session in ``scope``; ``SessionAlreadyActiveError`` if one
        is active there, unless ``request.replace``: then the active one ends
        (``replaced``) in the same batch that starts the new one."""
        request = request or StartRequest()
        lane = self._lane(scope)
        with self._lock:
            active = lane.settle_for_answer()
            if active is not None and not request.replace:
                raise SessionAlreadyActiveError(
                    active.id, None if lane.scope == DEFAULT_SCOPE else lane.scope
                )
            session, tracking = lane.begin(request, self._start_defaults())
            self._dirs.prepare(lane.scope, lane.file)  # only once the request is known to be good
            replaced = active.abandoned(EndReason.REPLACED, session.started_at) if active else None
            lane.record.start(session, tracking, replaced)
            if replaced is not None:
                log.info("session %s replaced by %s%s", replaced.id, session.id, lane.where)
            lane.settle_after(f"session {session.id} was started")
            return session

    def end(
        self, session_id: str | None = None, *, reason: EndReason = EndReason.CLI, scope: str = DEFAULT_SCOPE
    ) -> Session | None:
        """Complete ``session_id`` (in whatever scope), or else the active
        session of ``scope``. Idempotent: the ended session, or ``None``
        when it was unknown or already terminated."""
        return self._terminate(scope, session_id, SessionStatus.COMPLETED, reason)

    def abandon(
        self, session_id: str | None = None, *, reason: EndReason = EndReason.CLI, scope: str = DEFAULT_SCOPE
    ) -> Session | None:
        """Like ``end``, but the session is recorded as abandoned."""
        return self._terminate(scope, session_id, SessionStatus.ABANDONED, reason)

    def touch(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        """Record activity on the active session of ``scope`` now, as a touch
        of its file would (at most one write a second); ``None`` when none
        is active."""
        lane = self._lane(scope)
        with self._lock:
            active = lane.settle_for_answer()
            return None if active is None else lane.record.activity(active, self._clock.now())

    def _terminate(
        self, scope: str, session_id: str | None, status: SessionStatus, reason: EndReason
    ) -> Session | None:
        wanted = parse_session_id(session_id) if session_id is not None else None
        with self._lock:
            if wanted is not None:  # an id names one session, in whatever scope
                record = self._store.get(wanted)
                if record is None:
                    return None
                scope = record.scope
            lane = self._lane(scope)
            active = lane.settle_for_answer()
            target = active if wanted is None or (active and active.id == wanted) else None
            if target is None and wanted is not None:
                target = self._store.get(wanted)
            if target is None or not target.is_active:
                return None
            ended = target.terminated(status, reason, self._clock.now())
            # An active record that is not the active session: the pointer stays.
            lane.record.end(ended, pointed=active is not None and active.id == ended.id)
            lane.settle_after(f"session {ended.id} was {ended.status.value}")
            return ended

    # --- the files applied ----------------------------------------------------------

    def reconcile(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        """Apply whatever the current file of ``scope`` holds now; its active
        session. A file that keeps changing while it is applied raises
        ``SessionIOError`` (the daemon tries again later)."""
        with self._lock:
            return self._lane(scope).settle()

    def current(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        """The active session of ``scope`` for an answer: its file applied,
        unless that cannot be done now (then the store's, see
        ``Lane.settle_for_answer``)."""
        with self._lock:
            return self._lane(scope).settle_for_answer()

    def reconcile_all(self, *, for_an_answer: bool = False) -> dict[str, Session]:
        """``reconcile`` (or ``current``) every known scope; their active
        sessions. A scope that fails is raised after the others are settled
        (the daemon retries)."""
        found: dict[str, Session] = {}
        failure: SessionIOError | StorageError | None = None
        for scope in self.known_scopes():
            try:
                active = self.current(scope) if for_an_answer else self.reconcile(scope)
            except (SessionIOError, StorageError) as exc:
                failure = failure or exc
                continue
            if active is not None:
                found[scope] = active
        if failure is not None:
            raise failure
        return found

    # --- queries -------------------------------------------------------------------

    def get(self, session_id: str) -> Session | None:
        return self._store.get(parse_session_id(session_id))

    def active(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        """The active session of ``scope`` as the store has it, without
        looking at the file."""
        with self._lock:
            return self._lane(scope).record.active()

    def active_states(self) -> dict[str, ActiveSession]:
        """Every scope's active session with its tracking, from the store's
        pointers (no scan), the default scope first."""
        with self._lock:
            found = {}
            for scope in self._store.pointed_scopes():
                state = self._lane(scope).record.state()
                if state is not None:
                    found[scope] = state
            return found

    def active_sessions(self) -> dict[str, Session]:
        return {scope: state.session for scope, state in self.active_states().items()}

    def active_state(self, scope: str = DEFAULT_SCOPE) -> ActiveSession | None:
        """The active session of ``scope`` with what its rules need: its owner,
        the time to its idle end."""
        with self._lock:
            return self._lane(scope).record.state()

    def known_scopes(self) -> list[str]:
        """Every scope with a directory or an active session: the default
        scope first, then by name."""
        return list(dict.fromkeys([DEFAULT_SCOPE, *self._store.pointed_scopes(), *self._dirs.scopes()]))

    def list_sessions(
        self,
        *,
        statuses: frozenset[SessionStatus] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        before: str | None = None,
        errors: list[StorageError] | None = None,
        scope: str | None = DEFAULT_SCOPE,
    ) -> list[Session]:
        """Sessions of ``scope`` (``None``: of every scope) newest first (see
        ``agent.history.list_sessions``)."""
        scope = None if scope is None else parse_scope(scope)
        with self._lock:
            actives = self.active_sessions() if scope is None else {scope: self._lane(scope).record.active()}
        pointed = {s: a for s, a in actives.items() if a is not None}
        return list_sessions(
            self._store,
            pointed,
            statuses=statuses,
            since=since,
            limit=limit,
            before=before,
            errors=errors,
            scope=scope,
        )

    # --- upkeep --------------------------------------------------------------------

    def recover_orphans(self) -> list[Session]:
        """Abandon (``crash_recovery``) any recent active record that is not
        the active session of its scope: invariant 1 repaired after whatever
        left one behind (a crashed older version, a restored backup). Dated
        at its last activity, the last sign of it."""
        with self._lock:
            pointed = {session.id for session in self.active_sessions().values()}
            orphans = [
                stray.abandoned(EndReason.CRASH_RECOVERY, stray.last_activity_at)
                for stray in stray_actives(self._store, pointed)
            ]
            if orphans:
                self._store.commit(tuple(orphans))
                for orphan in orphans:
                    log.warning("session %s was active beside the active one; abandoned it", orphan.id)
            return orphans

    def note_owner_alive(self) -> None:
        """Record that the active sessions' owners live now: the daemon's last
        word before it stops, so an exit while none runs is dated no earlier."""
        with self._lock:
            for scope, active in self.active_sessions().items():
                self._lane(scope).record.owner_alive(active)

    def remove_scope_dir(self, scope: str) -> bool:
        """Remove the directory of ``scope`` if it holds nothing and no
        session is active there; say whether it did."""
        lane = self._lane(scope)
        with self._lock:
            if lane.record.active() is not None or not self._dirs.remove(lane.scope):
                return False
            self._lanes.pop(lane.scope, None)
            lane.record.save_stamp(None)  # its file is gone for good
            return True

    def sweep_empty_scopes(self) -> float | None:
        """Remove the scope directories left empty long enough (see
        ``ScopeDirs.sweep``); seconds until the next is due, or ``None``."""
        return self._dirs.sweep(self.remove_scope_dir)

    def take_snapshot_if_due(self) -> Path | None:
        """A snapshot of the store if ``config.toml``'s interval has passed
        since the newest (see ``agent.snapshots``); never raises."""
        from agent.errors import ConfigError
        from agent.snapshots import Snapshots

        try:
            snapshots = Snapshots.configured(self._data_dir)
        except ConfigError as exc:
            log.warning("no snapshot taken: %s", exc)
            return None
        return snapshots.take_if_due(self._store, self._clock.now())

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------

    def _lane(self, scope: str) -> Lane:
        lane = self._lanes.get(scope)
        if lane is not None:
            return lane
        name = parse_scope(scope)  # the one check of a name before it becomes a path and keys
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = Lane(
                name,
                self._data_dir,
                self._store,
                self._clock,
                dirs=self._dirs,
                owner_exits=self._owner_exits,
                announce=self._announce,
                start_defaults=self._start_defaults,
            )
        return lane

    def _announce(self, change: Change) -> None:
        for listener in tuple(self._listeners):
            listener(change)

    def _start_defaults(self) -> tuple[int, int]:
        return load_settings(self._data_dir).start_defaults

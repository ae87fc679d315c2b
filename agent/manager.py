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
from agent.clock import Clock, default_clock
from agent.config import Retention, Settings, StartRequest, load_settings
from agent.details import ANY, DetailsChange, SessionFilter
from agent.errors import (
    InvalidArgumentError,
    RemoteSessionError,
    SessionError,
    SessionIOError,
    SessionNotFoundError,
    StorageError,
)
from agent.history import abandon_strays, list_sessions, summaries_overlapping
from agent.lane import Lane
from agent.layout import DEFAULT_SCOPE
from agent.paths import ensure_private_dir
from agent.scope import parse_scope
from agent.scope_dirs import ScopeDirs
from agent.seed_api import SeedAPI
from agent.session import EndReason, Session, SessionStatus
from agent.session_id import parse_session_id
from agent.store import SessionStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from agent.changes import Listener
    from agent.report import ReportQuery

__all__ = ["LATE_CAPTURE", "MAX_COUNT", "SessionManager"]

LATE_CAPTURE = 600.0  # seconds after its end a session still takes `count` without its id
MAX_COUNT = 1_000_000

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
        self.clock = clock or default_clock()
        # Read by what works beside the commands (snapshots, sweeps, status, events).
        self.store = SessionStore(db, read_only=read_only, clock=self.clock)
        self.data_dir = ensure_private_dir(Path(data_dir))
        self.store.events.retention = _retention(self.data_dir)
        self.scope_dirs = ScopeDirs(self.data_dir)
        self._owner_exits = owner_exits or OwnerExits()
        self._lanes: dict[str, Lane] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        self._lane(DEFAULT_SCOPE).file.remove_leftovers()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every ``Change`` from now on (the lock held: it
        only takes note); returns the unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @property
    def current_file(self) -> Path:
        return self._lane(DEFAULT_SCOPE).path

    def current_file_of(self, scope: str = DEFAULT_SCOPE) -> Path:
        return self._lane(scope).path

    # --- commands ------------------------------------------------------------------

    def start(self, request: StartRequest | None = None, *, scope: str = DEFAULT_SCOPE) -> Session:
        """Start a session in ``scope`` (see ``Lane.start``)."""
        lane = self._lane(scope)
        with self._lock:
            return lane.start(request or StartRequest(), self._start_defaults())

    def end(
        self, session_id: str | None = None, *, reason: EndReason = EndReason.CLI, scope: str = DEFAULT_SCOPE
    ) -> Session | None:
        """Complete ``session_id`` (in whatever scope), or else the active session
        of ``scope``; ``None`` when unknown or already ended (idempotent)."""
        return self._terminate(scope, session_id, SessionStatus.COMPLETED, reason)

    def abandon(
        self, session_id: str | None = None, *, reason: EndReason = EndReason.CLI, scope: str = DEFAULT_SCOPE
    ) -> Session | None:
        """Like ``end``, but the session is recorded as abandoned."""
        return self._terminate(scope, session_id, SessionStatus.ABANDONED, reason)

    def touch(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        """Record activity on the active session of ``scope`` now (see ``Lane.touch``)."""
        lane = self._lane(scope)
        with self._lock:
            return lane.touch()

    def update(
        self,
        session_id: str | None = None,
        change: DetailsChange | None = None,
        *,
        scope: str = DEFAULT_SCOPE,
    ) -> Session | None:
        """Change what session ``session_id`` (or ``scope``'s active one) was --
        ``tag``, ``set`` -- never when it was; ``None`` when none is active."""
        given = change or DetailsChange()
        return self._rewrite(scope, session_id, lambda s: s.replace(details=given.applied_to(s.details)), 0)

    def count(
        self, session_id: str | None = None, n: int = 1, *, scope: str = DEFAULT_SCOPE
    ) -> Session | None:
        """Add ``n`` memories to session ``session_id``, or to ``scope``'s active
        one, or one that ended less than ``LATE_CAPTURE`` seconds ago (captures
        arrive late); ``None`` when there is none."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_COUNT:
            raise InvalidArgumentError(f"a count is a whole number from 1 to {MAX_COUNT}, not {n!r}")
        return self._rewrite(
            scope, session_id, lambda s: s.replace(memory_count=s.memory_count + n), LATE_CAPTURE
        )

    def _rewrite(
        self, scope: str, session_id: str | None, transform: Callable[[Session], Session], late: float
    ) -> Session | None:
        wanted = parse_session_id(session_id) if session_id is not None else None
        with self._lock:
            if wanted is not None:
                record = self.store.get(wanted)
                if record is None:
                    self._refuse_remote(wanted)
                    raise SessionNotFoundError(wanted)
                return self._lane(record.scope).rewrite(record, transform)
            lane = self._lane(scope)
            target = lane.settle_for_answer() or (lane.recently_ended(late) if late else None)
            return None if target is None else lane.rewrite(target, transform)

    def _refuse_remote(self, session_id: str) -> None:
        """``RemoteSessionError`` if ``session_id`` is another machine's."""
        found = self.store.remote.get(session_id)
        if found is not None:
            raise RemoteSessionError(session_id, found[0])

    def _terminate(
        self, scope: str, session_id: str | None, status: SessionStatus, reason: EndReason
    ) -> Session | None:
        wanted = parse_session_id(session_id) if session_id is not None else None
        with self._lock:
            if wanted is not None:  # an id names one session, in whatever scope
                record = self.store.get(wanted)
                if record is None:
                    self._refuse_remote(wanted)
                    return None
                scope = record.scope
            return self._lane(scope).terminate(wanted, status, reason)

    # --- the files applied ----------------------------------------------------------

    def reconcile(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        """Apply the current file of ``scope``; its active session (``Lane.settle``)."""
        with self._lock:
            return self._lane(scope).settle()

    def current(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        """The active session of ``scope`` for an answer (``Lane.settle_for_answer``)."""
        with self._lock:
            return self._lane(scope).settle_for_answer()

    def reconcile_all(self) -> dict[str, Session]:
        """``reconcile`` every known scope; their active sessions. A scope that
        fails is raised after the others are settled (the daemon retries)."""
        return self._each_scope(self.reconcile)

    def current_all(self) -> dict[str, Session]:
        """``current`` of every known scope."""
        return self._each_scope(self.current)

    # --- queries -------------------------------------------------------------------

    def get(self, session_id: str) -> Session | None:
        return self.store.get(parse_session_id(session_id))

    def get_over_hosts(self, session_id: str, hosts: str | None) -> Session | None:
        """A session of this machine, or of the hosts chosen (``agent.host_choice``)."""
        from agent.host_choice import HostChoice

        choice = HostChoice.resolve(hosts, self.store, self.data_dir)
        key = parse_session_id(session_id)
        if choice is None:
            return self.store.get(key)
        if choice.local and (session := self.store.get(key)) is not None:
            return choice.named(session)
        found = self.store.remote.get(key) if choice.remote else None
        if found is None or choice.remote_host not in (None, found[0]):
            return None
        return found[1]

    def take_in_remote(self) -> None:
        """Take in the other machines' new segments, if a sync dir is set
        (a command that opened the store itself, before it reads them)."""
        sync = load_settings(self.data_dir).sync
        if sync is None:
            return
        from agent.sync_intake import take_in_quietly
        from agent.sync_ship import own_host

        take_in_quietly(self.store, sync, own_host(self.store, sync), self.clock.now())

    def active(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        """The active session of ``scope`` as the store has it (the file not looked at)."""
        with self._lock:
            return self._lane(scope).record.active()

    def active_states(self) -> dict[str, ActiveSession]:
        """Every scope's active session with its tracking, from the store's
        pointers (no scan), the default scope first."""
        with self._lock:
            found = {}
            for scope in self.store.pointed_scopes():
                state = self._lane(scope).record.state()
                if state is not None:
                    found[scope] = state
            return found

    def active_sessions(self) -> dict[str, Session]:
        return {scope: state.session for scope, state in self.active_states().items()}

    def active_state(self, scope: str = DEFAULT_SCOPE) -> ActiveSession | None:
        """``active``, with what its rules need (its owner, the time to its idle end)."""
        with self._lock:
            return self._lane(scope).record.state()

    def known_scopes(self) -> list[str]:
        """Every scope with a directory or an active session, the default first."""
        return list(dict.fromkeys([DEFAULT_SCOPE, *self.store.pointed_scopes(), *self.scope_dirs.scopes()]))

    def import_sessions(self, sessions: list[Session]) -> tuple[int, int]:
        """Write those of ``sessions`` the store does not hold yet (by id) in
        one synced batch: (added, already held). Never a current session:
        they are ended, and no pointer moves."""
        if any(s.is_active for s in sessions):
            raise InvalidArgumentError("an imported session must have ended")
        unique = {s.id: s for s in sessions}
        with self._lock:
            new = tuple(s for s in unique.values() if self.store.get(s.id) is None)
            if new:
                self.store.commit(new)
        return len(new), len(sessions) - len(new)

    def import_file(self, path: str, form: str) -> dict[str, Any]:
        """Import the file at ``path`` (``agent.importing``): all of it or,
        if a record is bad, nothing. What was added, already held, left out."""
        from agent.importing import read_file

        imported = read_file(path, form)
        added, held = self.import_sessions(imported.sessions)
        return {"added": added, "already_held": held, "left_out": imported.left_out}

    def report(self, query: ReportQuery, errors: list[StorageError] | None = None) -> dict[str, Any]:
        """Where the time went over ``query``'s range (``agent.report``): read
        from the range alone, safe to run beside the commands (the lock is
        held only to take the active sessions)."""
        from agent.report import build

        with self._lock:
            actives = self.active_sessions()
            self.store.longest_ended()  # a store from before the bound: found out once, under the lock
        choice = None
        if query.hosts is not None:
            from agent.host_choice import HostChoice

            choice = HostChoice.resolve(query.hosts, self.store, self.data_dir)
        read = summaries_overlapping(self.store, actives, query.since, query.until, errors, hosts=choice)
        return build(read, query, self.clock.now())

    def list_sessions(
        self,
        *,
        statuses: frozenset[SessionStatus] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        before: str | None = None,
        errors: list[StorageError] | None = None,
        scope: str | None = DEFAULT_SCOPE,
        where: SessionFilter | None = None,
        hosts: str | None = None,
    ) -> list[Session]:
        """Sessions of ``scope`` (``None``: of every scope) newest first
        (``agent.history``); of other machines too, or instead, by ``hosts``
        (``agent.host_choice``)."""
        choice = None
        if hosts is not None:
            from agent.host_choice import HostChoice

            choice = HostChoice.resolve(hosts, self.store, self.data_dir)
        named = None if scope is None else self._lane(scope).scope
        with self._lock:
            actives = {s: a for s, a in self.active_sessions().items() if named in (None, s)}
        return list_sessions(
            self.store,
            actives,
            statuses=statuses,
            since=since,
            limit=limit,
            before=before,
            errors=errors,
            scope=named,
            where=where or ANY,
            hosts=choice,
        )

    # --- upkeep --------------------------------------------------------------------

    def recover_orphans(self) -> list[Session]:
        """Abandon stray active records (``agent.history.abandon_strays``)."""
        with self._lock:
            return abandon_strays(self.store, {s.id for s in self.active_sessions().values()})

    def note_owner_alive(self) -> None:
        """Record that the active sessions' owners live now (``ScopeRecord.owner_alive``)."""
        with self._lock:
            for scope, active in self.active_sessions().items():
                self._lane(scope).record.owner_alive(active)

    def remove_scope_dir(self, scope: str) -> bool:
        """Remove ``scope``'s directory if empty and no session is active there (``ScopeDirs.sweep``)."""
        lane = self._lane(scope)
        with self._lock:
            if lane.record.active() is not None or not self.scope_dirs.remove(lane.scope):
                return False
            self._lanes.pop(lane.scope, None)
            lane.record.save_stamp(None)  # its file is gone for good
            return True

    def close(self) -> None:
        self.store.close()

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
                self.data_dir,
                self.store,
                self.clock,
                dirs=self.scope_dirs,
                owner_exits=self._owner_exits,
                announce=self._announce,
                start_defaults=self._start_defaults,
            )
        return lane

    def _each_scope(self, settle: Callable[[str], Session | None]) -> dict[str, Session]:
        found: dict[str, Session] = {}
        failure: SessionIOError | StorageError | None = None
        for scope in self.known_scopes():
            try:
                active = settle(scope)
            except (SessionIOError, StorageError) as exc:
                failure = failure or exc
                continue
            if active is not None:
                found[scope] = active
        if failure is not None:
            raise failure
        return found

    def _announce(self, change: Change) -> None:
        for listener in tuple(self._listeners):
            listener(change)

    def _start_defaults(self) -> Settings:
        return load_settings(self.data_dir)


def _retention(data_dir: Path) -> Retention:
    """The event log's retention from config.toml (a config that cannot be
    read keeps the default here: the command that reads it says why)."""
    try:
        return load_settings(data_dir).retention
    except SessionError:
        return Retention()

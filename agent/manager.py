"""``SessionManager``: the session lifecycle and the file protocol.

The store is the truth; the current-session file mirrors it and is also an
input. Every operation first *settles*: it looks at the file, applies any
external edit by the rules of the file protocol (docs/file-protocol.md), and makes
the file match the store again. A transition is then one synced store batch
followed by another settle, so the normal path and crash repair are the same
code: after a crash between the store write and the file write, the next
settle finds the file out of date and rewrites it.

To know whether the file was deleted by a user or never written, the store
keeps a ``Stamp`` of our last completed file write: a missing file ends the
active session only if the stamp says we had finished writing it.

Every settle also applies the session's own rules (``agent.lifecycle``): an
active session whose idle timeout passed, or whose owner process exited, is
abandoned with that reason and the moment the rule gives -- as of each
edit's mtime before the edit is applied, and as of now after it. So the
same code ends it whether the daemon's timer fires, an editor's heartbeat
arrives after a night's sleep, or a restart finds it expired.

Each scope (``agent.scope``) is such a pair of file and pointer, settled on
its own: a command, an edit or a rule in one scope never reads or writes
another's file. The default scope keeps the keys and the file it had before
scopes; another scope's directory is created at its first start.

Transitions are serialized by a lock, and the store itself admits one process
at a time. The work is sub-millisecond synchronous I/O, so the async methods
(the API of the original task) run it inline rather than in a thread.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from rocksdict import Rdict

from agent import faults
from agent.clock import Clock, SystemClock
from agent.config import REMOVE_EMPTY_SCOPES_AFTER, StartRequest, StartRules, load_settings
from agent.current_file import (
    CurrentFile,
    EditKind,
    FileChangedError,
    FileKind,
    Observation,
    Stamp,
    parse_edit,
)
from agent.errors import (
    ConfigError,
    InvalidArgumentError,
    SessionAlreadyActiveError,
    SessionIOError,
    StorageError,
    StoreDamagedError,
)
from agent.lifecycle import Tracking, due_end, idle_deadline
from agent.owner import OwnerIdentity
from agent.paths import ensure_private_dir
from agent.scope import DEFAULT_SCOPE, SCOPES_DIR, parse_scope, scope_dir, scope_problem
from agent.session import EndReason, Session, SessionStatus, parse_session_id, session_id_floor
from agent.store import SessionStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["HEARTBEAT_INTERVAL", "MAX_SCOPES", "SessionManager"]

log = logging.getLogger(__name__)

# Per scope: the default scope's keys are these names, another's are
# "<name>/<scope>" (see scope_key).
META_ACTIVE = b"active"  # id of the active session, absent when none
META_STAMP = b"file_stamp"  # Stamp of our last completed write of the file
META_TRACKING = b"tracking"  # Tracking of the active session, absent when none
MAX_SCOPES = 1024  # scope directories at once; a start in one more is refused
HEARTBEAT_INTERVAL = timedelta(seconds=1)
_SETTLE_ATTEMPTS = 8
_ENDS_AS = {EditKind.END: SessionStatus.COMPLETED, EditKind.ABANDON: SessionStatus.ABANDONED}
ORPHAN_SCAN = 64  # recent records looked at for a second active session, at the daemon's start


class SessionManager:
    """Starts, ends and looks up sessions; keeps the file and the store agreed.

    Takes ownership of ``db``: ``close()`` closes it.
    """

    def __init__(
        self, db: Rdict, data_dir: str | Path, *, clock: Clock | None = None, read_only: bool = False
    ) -> None:
        self._store = SessionStore(db, read_only=read_only)
        self._data_dir = ensure_private_dir(Path(data_dir))
        self._files: dict[str, CurrentFile] = {}
        self._prepared: set[str] = set()  # scopes whose directory this process made sure of
        self._lock = threading.RLock()
        self._clock = clock or SystemClock()
        # Set by the daemon: when an owner it watches exited, if it saw it.
        self.owner_exit_time: Callable[[OwnerIdentity], datetime | None] | None = None
        self._file(DEFAULT_SCOPE).remove_leftovers()

    @property
    def current_file(self) -> Path:
        return self._file(DEFAULT_SCOPE).path

    def current_file_of(self, scope: str) -> Path:
        return self._file(parse_scope(scope)).path

    # --- the API of the original task -----------------------------------------

    async def start_session(
        self,
        *,
        owner_pid: int | None = None,
        idle_timeout: int | None = None,
        idle_grace: int | None = None,
        replace: bool = False,
        scope: str | None = None,
    ) -> str:
        request = StartRequest(
            owner_pid=owner_pid, idle_timeout=idle_timeout, idle_grace=idle_grace, replace=replace
        )
        return self.start(request, scope=parse_scope(scope)).id

    async def end_session(self, session_id: str) -> None:
        self.end(session_id, reason=EndReason.API)

    async def abandon_session(self, session_id: str) -> None:
        self.abandon(session_id, reason=EndReason.API)

    async def get_current_session(self, scope: str | None = None) -> str | None:
        active = self.reconcile(parse_scope(scope), busy_ok=True)
        return active.id if active else None

    async def get_session(self, session_id: str) -> Session | None:
        return self.get(session_id)

    # --- synchronous core -------------------------------------------------------

    def start(self, request: StartRequest | None = None, *, scope: str = DEFAULT_SCOPE) -> Session:
        """Start a session in ``scope``; ``SessionAlreadyActiveError`` if one
        is active there, unless ``request.replace``: then the active one ends
        (``replaced``) in the same batch that starts the new one."""
        request = request or StartRequest()
        scope = parse_scope(scope)
        with self._lock:
            active = self._settle(scope, busy_ok=True)
            if active is not None and not request.replace:
                raise SessionAlreadyActiveError(active.id, None if scope == DEFAULT_SCOPE else scope)
            session, tracking = self._begin(scope, request, self._start_defaults())
            self._prepare_scope_dir(scope)  # only once the request is known to be good
            replaced = active.abandoned(EndReason.REPLACED, session.started_at) if active else None
            self._record(scope, session, tracking=tracking, also=replaced)
            if replaced is not None:
                log.info("session %s replaced by %s%s", replaced.id, session.id, _in(scope))
            self._mirror(scope, f"session {session.id} was started")
            return session

    def end(
        self, session_id: str | None = None, *, reason: EndReason = EndReason.CLI, scope: str = DEFAULT_SCOPE
    ) -> Session | None:
        """Complete ``session_id`` (in whatever scope), or else the active
        session of ``scope``.

        Idempotent: returns the ended session, or ``None`` when it was
        unknown or already terminated.
        """
        return self._terminate(parse_scope(scope), session_id, SessionStatus.COMPLETED, reason)

    def abandon(
        self, session_id: str | None = None, *, reason: EndReason = EndReason.CLI, scope: str = DEFAULT_SCOPE
    ) -> Session | None:
        """Like ``end``, but the session is recorded as abandoned."""
        return self._terminate(parse_scope(scope), session_id, SessionStatus.ABANDONED, reason)

    def get(self, session_id: str) -> Session | None:
        return self._store.get(parse_session_id(session_id))

    def touch(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        """Record activity on the active session of ``scope`` now, as a
        touch of its file would (at most one write a second); ``None`` when
        none is active."""
        scope = parse_scope(scope)
        with self._lock:
            active = self._settle(scope, busy_ok=True)
            if active is None:
                return None
            return self._record_activity(scope, active, self._clock.now())

    def active(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        """The active session of ``scope`` as the store has it, without
        looking at the file."""
        with self._lock:
            return self._active(parse_scope(scope))

    def active_sessions(self) -> dict[str, Session]:
        """The active session of every scope that has one, from the store's
        pointers (no scan of the sessions), the default scope first."""
        with self._lock:
            found = {}
            for scope in self._pointed_scopes():
                active = self._active(scope)
                if active is not None:
                    found[scope] = active
            return found

    def describe_active(self, actives: dict[str, Session]) -> dict[str, object]:
        """The sessions part of a ``status`` report, from ``actives`` (as
        ``active_sessions`` gives them): the default scope's session as
        ``current`` (as before scopes), and every scope's under ``scopes``."""
        default = actives.get(DEFAULT_SCOPE)
        return {
            "current": default.to_dict() if default else None,
            "idle_ends_in_seconds": self.seconds_to_next_rule() if default else None,
            "scopes": [
                {
                    "scope": scope,
                    "current": session.to_dict(),
                    "idle_ends_in_seconds": self.seconds_to_next_rule(scope),
                }
                for scope, session in actives.items()
            ],
        }

    def reconcile(self, scope: str = DEFAULT_SCOPE, *, busy_ok: bool = False) -> Session | None:
        """Apply whatever the current file of ``scope`` holds now; return its
        active session.

        A file that keeps changing while it is applied raises
        ``SessionIOError`` (the daemon tries again later), or with
        ``busy_ok`` is left for the next settle: the answer is then the
        store's, which is the truth up to the edits not yet applied."""
        with self._lock:
            return self._settle(parse_scope(scope), busy_ok=busy_ok)

    def known_scopes(self) -> list[str]:
        """Every scope with a directory or an active session: the default
        scope first, then by name. A directory under ``scopes`` whose name
        is not a scope name is left alone (logged at debug)."""
        scopes = dict.fromkeys([DEFAULT_SCOPE, *self._pointed_scopes()])
        for name in sorted(self._scope_dir_names()):
            if scope_problem(name) is None:
                scopes[name] = None
            else:
                log.debug("ignored %s: %s is not a scope name", self._data_dir / SCOPES_DIR / name, name)
        return list(scopes)

    def reconcile_all(self, *, busy_ok: bool = False) -> dict[str, Session]:
        """``reconcile`` every known scope; their active sessions. A scope
        that fails is retried by the caller (the daemon), after the others
        have been settled."""
        found: dict[str, Session] = {}
        failure: SessionIOError | StorageError | None = None
        for scope in self.known_scopes():
            try:
                active = self.reconcile(scope, busy_ok=busy_ok)
            except (SessionIOError, StorageError) as exc:
                failure = failure or exc
                continue
            if active is not None:
                found[scope] = active
        if failure is not None:
            raise failure
        return found

    def seconds_to_next_rule(self, scope: str = DEFAULT_SCOPE) -> float | None:
        """How long until the idle timeout of ``scope``'s active session
        could end it (boot-clock seconds; ``None`` without one). The daemon
        settles again then; an owner's exit it learns of by its own watch."""
        scope = parse_scope(scope)
        with self._lock:
            active = self._active(scope)
            if active is None:
                return None
            return idle_deadline(active, self._tracking(scope, active), self._clock)

    def owner_of(self, session: Session) -> OwnerIdentity | None:
        """The process ``session`` (the active one of its scope) is bound to, if any."""
        tracking = self._tracking(session.scope, session)
        return tracking.owner(session) if tracking is not None else None

    def note_owner_alive(self) -> None:
        """Record that the active sessions' owners live now: the daemon's
        last word before it stops, so that an exit while none runs is dated
        no earlier than this."""
        with self._lock:
            for scope, active in self.active_sessions().items():
                tracking = self._tracking(scope, active)
                owner = tracking.owner(active) if tracking else None
                if tracking is None or owner is None or not owner.alive(self._clock):
                    continue
                seen = tracking.with_activity(tracking.activity_boot, self._clock.now())
                self._store.commit(meta={scope_key(META_TRACKING, scope): seen.encode()})

    def remove_scope_dir(self, scope: str) -> bool:
        """Remove the directory of ``scope`` if it holds nothing and no
        session is active there; say whether it did. ``rmdir`` refuses a
        directory with anything in it, so a file written a moment ago (a
        ``start``) is never lost to this."""
        scope = parse_scope(scope)
        if scope == DEFAULT_SCOPE:
            return False
        with self._lock:
            if self._active(scope) is not None:
                return False
            try:
                os.rmdir(scope_dir(self._data_dir, scope))
            except OSError:
                return False
            self._files.pop(scope, None)
            self._prepared.discard(scope)
            self._store.commit(meta={scope_key(META_STAMP, scope): None})  # its file is gone for good
            return True

    def sweep_delay(self) -> int:
        """How long, in seconds, a scope stays empty before its directory is
        removed (``config.toml``'s ``scopes.remove_empty_after``)."""
        try:
            return load_settings(self._data_dir).remove_empty_scopes_after
        except ConfigError as exc:
            log.error("%s; removing empty scopes after the default %d s", exc, REMOVE_EMPTY_SCOPES_AFTER)
            return REMOVE_EMPTY_SCOPES_AFTER

    def sweep_empty_scopes(self) -> float | None:
        """Remove the directories of scopes empty for longer than
        ``config.toml``'s ``scopes.remove_empty_after``: no session active,
        nothing in the directory, unchanged since (its mtime moves when its
        file goes). Seconds until the next empty one is due, ``None`` when
        none is left to wait for."""
        names = self._scope_dir_names()
        if not names:
            return None
        after = self.sweep_delay()
        next_due: float | None = None
        for name in names:
            if scope_problem(name) is not None:
                continue
            directory = scope_dir(self._data_dir, name)
            try:
                changed = os.lstat(directory).st_mtime
                empty = not os.listdir(directory)
            except OSError:
                continue
            if not empty:
                continue
            due = changed + after - time.time()
            if due <= 0 and self.remove_scope_dir(name):
                log.info("removed the directory of scope %s: empty for %d s", name, after)
            elif due > 0:
                next_due = due if next_due is None else min(next_due, due)
        return next_due

    def recover_orphans(self, limit: int = ORPHAN_SCAN) -> list[Session]:
        """Abandon (``crash_recovery``) any recent active record that is not
        the active session of its scope: invariant 1 repaired after whatever
        left one behind (a store written by a crashed older version, a
        restored backup). Dated at its last activity, the last sign of it."""
        with self._lock:
            pointed = {session.id for session in self.active_sessions().values()}
            orphans = []
            for index, session in enumerate(self._store.newest_first(errors=[])):
                if index >= limit:
                    break
                if session.is_active and session.id not in pointed:
                    orphans.append(session.abandoned(EndReason.CRASH_RECOVERY, session.last_activity_at))
            if orphans:
                self._store.commit(tuple(orphans))
                for orphan in orphans:
                    log.warning("session %s was active beside the active one; abandoned it", orphan.id)
            return orphans

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
        """Sessions of ``scope`` (``None``: of every scope) newest first;
        corrupt records go to ``errors`` if given.

        ``before`` (a session id) continues a listing after its last page."""
        if limit is not None and limit <= 0:
            return []
        scope = None if scope is None else parse_scope(scope)
        if statuses == frozenset({SessionStatus.ACTIVE}):  # no scan: the pointers know
            with self._lock:
                pointed = self.active_sessions() if scope is None else {scope: self._active(scope)}
            actives = sorted((s for s in pointed.values() if s is not None), key=lambda s: s.id, reverse=True)
            return [
                s
                for s in actives
                if (since is None or s.started_at >= since) and (before is None or s.id < before)
            ][:limit]
        # Ids are UUIDv7 and only move forward, so an id's time is never before
        # its session's start: every session started since `since` is >= floor.
        floor = session_id_floor(since) if since else None
        found: list[Session] = []
        ceiling = parse_session_id(before) if before is not None else None
        for session in self._store.newest_first(scope=scope, floor=floor, before=ceiling, errors=errors):
            if since is not None and session.started_at < since:
                continue
            if statuses is not None and session.status not in statuses:
                continue
            found.append(session)
            if limit is not None and len(found) >= limit:
                break
        return found

    @property
    def store(self) -> SessionStore:
        """The store, for what works on it whole (snapshots, checks)."""
        return self._store

    def take_snapshot_if_due(self) -> Path | None:
        """A snapshot of the store if ``config.toml``'s interval has passed
        since the newest (see ``agent.snapshots``); never raises."""
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
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------

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
            active = self._settle(scope, busy_ok=True)
            target = active if wanted is None or (active and active.id == wanted) else None
            if target is None and wanted is not None:
                target = self._store.get(wanted)
            if target is None or not target.is_active:
                return None
            ended = target.terminated(status, reason, self._clock.now())
            if active is not None and active.id == ended.id:
                self._record(scope, ended)
            else:  # an active record that is not the active session: leave the pointer
                self._store.commit((ended,))
            self._mirror(scope, f"session {ended.id} was {ended.status.value}")
            return ended

    def _file(self, scope: str) -> CurrentFile:
        file = self._files.get(scope)
        if file is None:
            file = self._files[scope] = CurrentFile(scope_dir(self._data_dir, scope))
        return file

    def _scope_dir_names(self) -> list[str]:
        try:
            with os.scandir(self._data_dir / SCOPES_DIR) as entries:
                return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise SessionIOError(f"cannot list {self._data_dir / SCOPES_DIR}: {exc.strerror}") from None

    def _pointed_scopes(self) -> list[str]:
        """Scopes whose active pointer is set: the default first, then by name."""
        scopes = [DEFAULT_SCOPE] if self._store.get_meta(META_ACTIVE) is not None else []
        prefix = META_ACTIVE + b"/"
        for key, _ in self._store.meta_with_prefix(prefix):
            name = key[len(prefix) :].decode("ascii", "replace")
            if scope_problem(name) is None:
                scopes.append(name)
        return scopes

    def _check_scope_dir(self, scope: str) -> None:
        """A scope's directory (and ``scopes``) must be a real directory: a
        symlink planted there is refused, never followed."""
        if scope == DEFAULT_SCOPE:
            return
        for path in (self._data_dir / SCOPES_DIR, scope_dir(self._data_dir, scope)):
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                return
            except OSError as exc:
                raise SessionIOError(f"cannot look at {path}: {exc.strerror}") from None
            if not stat.S_ISDIR(mode):
                raise SessionIOError(
                    f"{path} is not a directory (a symlink is not followed here); "
                    f"remove it so that scope {scope} can be used"
                )

    def _prepare_scope_dir(self, scope: str) -> None:
        """Create ``scope``'s directory (its first use), private, refusing
        symlinks, and at most ``MAX_SCOPES`` of them."""
        directory = scope_dir(self._data_dir, scope)
        if scope == DEFAULT_SCOPE or (scope in self._prepared and os.path.isdir(directory)):
            return
        if not os.path.lexists(directory) and len(self._scope_dir_names()) >= MAX_SCOPES:
            raise InvalidArgumentError(
                f"there are already {MAX_SCOPES} scopes with a directory in {directory.parent}; "
                "end sessions in scopes no longer used (their directories are then removed) "
                "or remove those directories"
            )
        ensure_private_dir(directory.parent, allow_symlink=False)
        ensure_private_dir(directory, allow_symlink=False)
        if self._file(scope).remove_leftovers():
            log.debug("removed leftover temporary files in %s", directory)
        self._prepared.add(scope)

    def _start_defaults(self) -> tuple[int, int]:
        return load_settings(self._data_dir).start_defaults

    def _begin(
        self, scope: str, request: StartRequest, defaults: tuple[int, int]
    ) -> tuple[Session, Tracking]:
        """A new session under ``request``'s rules; ``InvalidArgumentError``
        when its owner is not running."""
        rules = StartRules.resolve(request, defaults)
        owner = None
        if rules.owner_pid is not None:
            owner = OwnerIdentity.of(rules.owner_pid, self._clock)
            if owner is None:
                raise InvalidArgumentError(
                    f"no process {rules.owner_pid} is running to own the session; "
                    "give the pid of a live process (the editor, the tool), or no owner"
                )
        session = Session.begin(
            self._clock.now(),
            owner_pid=rules.owner_pid,
            idle_timeout=rules.idle_timeout,
            idle_grace=rules.idle_grace,
            scope=scope,
        )
        return session, Tracking.begin(session, self._clock, owner)

    def _tracking(self, scope: str, active: Session) -> Tracking | None:
        tracking = Tracking.decode(self._store.get_meta(scope_key(META_TRACKING, scope)))
        return tracking if tracking is not None and tracking.session_id == active.id else None

    def _end_by_rules(self, scope: str, active: Session, at: datetime | None = None) -> bool:
        """Abandon ``active`` if a rule (idle, owner) ended it by ``at``
        (default: now); say whether it did."""
        tracking = self._tracking(scope, active)
        exited_at, alive = None, True
        owner = tracking.owner(active) if tracking is not None else None
        if owner is not None:
            exited_at = self.owner_exit_time(owner) if self.owner_exit_time else None
            alive = exited_at is None and owner.alive(self._clock)
        end = due_end(active, tracking, self._clock, at=at, owner_exited_at=exited_at, owner_alive=alive)
        if end is None:
            return False
        ended = active.abandoned(end.reason, end.at)
        faults.point("manager.end_by_rule")
        log.info("session %s abandoned: %s (ended at %s)", active.id, _RULE_TEXT[end.reason], ended.ended_at)
        self._record(scope, ended)
        return True

    def _active(self, scope: str) -> Session | None:
        raw = self._store.get_meta(scope_key(META_ACTIVE, scope))
        if raw is None:
            return None
        session_id = raw.decode("ascii", "replace")
        session = self._store.get(session_id)
        if session is None or not session.is_active or session.scope != scope:
            log.warning(
                "the store named %s as active in scope %s but it is not; ignoring it", session_id, scope
            )
            return None
        return session

    def _mirror(self, scope: str, done: str) -> None:
        """Settle after a committed transition. If that fails (a full disk),
        the error says the transition itself is durable: the file catches
        up at the next settle, which a daemon runs by itself."""
        try:
            self._settle(scope, mirroring=True, busy_ok=True)
        except SessionIOError as exc:
            raise SessionIOError(f"{done}, but {exc} (repaired by itself once that is fixed)") from None
        except StorageError as exc:
            raise StorageError(f"{done}, but {exc} (repaired by itself once that is fixed)") from None

    def _settle(self, scope: str, *, mirroring: bool = False, busy_ok: bool = False) -> Session | None:
        """Apply ``scope``'s file, then make it match the store. ``mirroring``:
        we just committed a change, so a stale file is expected, not
        repaired. ``busy_ok``: see ``reconcile``."""
        self._check_scope_dir(scope)
        file = self._file(scope)
        for _ in range(_SETTLE_ATTEMPTS):
            observed = file.observe()
            active = self._active(scope)
            stamp = Stamp.decode(self._store.get_meta(scope_key(META_STAMP, scope)))
            try:
                active = self._apply(scope, observed, active, stamp, mirroring=mirroring)
            except FileChangedError:
                continue  # an edit landed while we worked: apply it too
            except SessionIOError as exc:
                if not busy_ok or mirroring:  # a mirror's failure is reported with what was done
                    raise
                # Reads never depend on writing: the store has the answer, and
                # the file is mended at the next settle (the daemon retries).
                log.warning("%s; answering from the store", exc)
                return self._active(scope)
            if active is None or not self._end_by_rules(scope, active):
                return active
            # It ended by its rules just now: the next pass mirrors that in the file.
        if busy_ok:
            log.warning("%s keeps changing; its latest edits are applied once it settles", file.path)
            return self._active(scope)
        raise SessionIOError(
            f"{file.path} changed {_SETTLE_ATTEMPTS} times while being applied; "
            "try again once the program writing it has finished"
        )

    def _apply(
        self,
        scope: str,
        observed: Observation,
        active: Session | None,
        stamp: Stamp | None,
        *,
        mirroring: bool = False,
    ) -> Session | None:
        """The file-protocol table: one observation against the truth."""
        path = self._file(scope).path
        kind = observed.kind
        if kind is FileKind.DIRECTORY:
            log.error("%s is a directory; remove it so the current session can be shown there", path)
            return active
        if kind is not FileKind.REGULAR and kind is not FileKind.MISSING:
            log.warning("%s was replaced by a %s; it was not followed, and is restored", path, kind.value)
            self._write_truth(scope, observed, active)
            return active
        if kind is FileKind.MISSING:
            if active is None:
                return None
            if stamp is not None and stamp.session_id == active.id:
                if self._end_by_rules(scope, active):
                    return None  # it had ended by its rules before the deletion was seen
                log.info("%s deleted: completing session %s", path, active.id)
                return self._transition(scope, observed, active.completed(EndReason.FILE, self._clock.now()))
            if not mirroring:
                log.info("restoring the current file for session %s (its write was interrupted)", active.id)
            self._write_truth(scope, observed, active)
            return active
        if stamp is not None and stamp.matches(observed):  # our own write, untouched
            if active is None or stamp.session_id != active.id:
                self._write_truth(scope, observed, active)
            return active

        edit = parse_edit(observed.content)
        faults.point("manager.reconcile")
        # The edit was made at its mtime: the rules first, as of then (now for a start).
        moment = self._edit_moment(observed) if edit.kind is not EditKind.START else None
        if (
            active is not None
            and edit.kind is not EditKind.INVALID
            and self._end_by_rules(scope, active, moment)
        ):
            ended_id, active = active.id, None
        else:
            ended_id = None
        if edit.kind is EditKind.INVALID:
            log.warning("ignored an edit of %s: %s; restored it", path, edit.problem)
        elif edit.kind is EditKind.START:
            assert edit.start is not None
            if active is None or edit.start.replace:
                return self._start_from_file(scope, observed, active, edit.start)
            log.info("current file says start, but session %s is already active", active.id)
        elif edit.kind in (EditKind.END, EditKind.ABANDON):
            if active is not None:
                ended = active.terminated(_ENDS_AS[edit.kind], EndReason.FILE, moment)
                log.info(
                    "current file says %s: %s session %s%s",
                    edit.kind.value,
                    ended.status.value,
                    active.id,
                    _in(scope),
                )
                return self._transition(scope, observed, ended)
        elif active is not None and edit.session_id == active.id:
            return self._heartbeat(scope, observed, active, stamp, moment)
        elif ended_id is not None and edit.session_id == ended_id:
            log.info("ignored a heartbeat of session %s: it had already ended by its rules", ended_id)
        else:
            self._check_not_lost(path, edit.session_id)
            log.warning(
                "ignored an edit of %s: %s is not the active session; restored it", path, edit.session_id
            )
        self._write_truth(scope, observed, active)
        return active

    def _check_not_lost(self, path: Path, session_id: str | None) -> None:
        """The current files witness the store: each start is written into
        one after its synced commit. A file naming a session newer than any
        the store holds means the store lost writes it had acknowledged (a
        write-ahead log cut back on disk: RocksDB cannot tell that from a
        torn last record). Then nothing is "restored": the store is refused,
        and the file kept as the evidence."""
        if session_id is not None and self._store.lost(session_id):
            raise StoreDamagedError(
                self._data_dir / "db",
                f"{path} names session {session_id}, newer than any the store holds: "
                "writes the store acknowledged are missing",
            )

    def _start_from_file(
        self, scope: str, observed: Observation, active: Session | None, request: StartRequest
    ) -> Session | None:
        others = [s for s in self._pointed_scopes() if s != DEFAULT_SCOPE]
        if active is None and scope != DEFAULT_SCOPE and len(others) >= MAX_SCOPES:
            # Directories made behind our back (`mkdir -p`) count against the
            # cap as much as those a start made.
            log.warning(
                "ignored `start` in %s: %d scopes already have an active session; end some first",
                self._file(scope).path,
                MAX_SCOPES,
            )
            self._write_truth(scope, observed, active)
            return active
        try:
            defaults = self._start_defaults()
        except ConfigError as exc:
            log.error("%s; starting with the built-in defaults", exc)
            defaults = (0, 0)
        try:
            started, tracking = self._begin(scope, request, defaults)
        except InvalidArgumentError as exc:
            log.warning("ignored an edit of %s: `start`: %s; restored it", self._file(scope).path, exc)
            self._write_truth(scope, observed, active)
            return active
        replaced = active.abandoned(EndReason.REPLACED, started.started_at) if active else None
        log.info(
            "current file says start: started session %s%s%s",
            started.id,
            _in(scope),
            f", replacing {replaced.id}" if replaced else "",
        )
        self._record(scope, started, tracking=tracking, also=replaced)
        self._write_truth(scope, observed, started)
        return started

    def _edit_moment(self, observed: Observation) -> datetime:
        """When an edit was made: its mtime, unless the clock says that is
        in the future (then now)."""
        now = self._clock.now()
        if observed.mtime_ns is None:
            return now
        return min(_from_ns(observed.mtime_ns), now)

    def _transition(self, scope: str, observed: Observation, session: Session) -> Session | None:
        """Commit a change decided from ``observed``, then mirror it in the file."""
        self._record(scope, session)
        active = session if session.is_active else None
        self._write_truth(scope, observed, active)
        return active

    def _record(
        self, scope: str, session: Session, *, tracking: Tracking | None = None, also: Session | None = None
    ) -> None:
        """One synced batch: ``session`` (the new active one of ``scope``, or
        the active one ended), the pointer to it (set when it starts,
        cleared when it ends) and its tracking; ``also``, a session it
        replaces."""
        active_key, tracking_key = scope_key(META_ACTIVE, scope), scope_key(META_TRACKING, scope)
        meta: dict[bytes, bytes | None] = {active_key: None, tracking_key: None}
        if session.is_active:
            assert tracking is not None
            meta = {active_key: session.id.encode("ascii"), tracking_key: tracking.encode()}
        self._store.commit((also, session) if also else (session,), meta)
        faults.point("manager.after_store")

    def _record_activity(
        self, scope: str, active: Session, moment: datetime, meta: dict[bytes, bytes] | None = None
    ) -> Session:
        """A heartbeat at ``moment`` (wall time), at most one a second as
        measured on the boot clock: a wall clock set back must not silence
        heartbeats (and let the session go idle) until it catches up."""
        meta = dict(meta or {})
        tracking = self._tracking(scope, active)
        boot = self._clock.boot_at(moment)
        if tracking is not None and tracking.boot_id == self._clock.boot_id():
            due = boot - tracking.activity_boot >= HEARTBEAT_INTERVAL.total_seconds()
        else:  # restored after a reboot: the wall clock is all there is
            due = moment - active.last_activity_at >= HEARTBEAT_INTERVAL
        if due:
            active = active.with_activity(moment)
            if tracking is None:  # lost: idleness is measured from here on
                tracking = Tracking(active.id, self._clock.boot_id(), boot)
            if tracking.boot_id == self._clock.boot_id():  # else kept: it names the owner's boot
                owner = tracking.owner(active)
                seen = moment if owner is not None and owner.alive(self._clock) else None
                meta[scope_key(META_TRACKING, scope)] = tracking.with_activity(boot, seen).encode()
            self._store.commit((active,), meta)
            log.debug("heartbeat recorded for session %s", active.id)
        elif meta:
            self._store.commit(meta=meta)
        return active

    def _heartbeat(
        self, scope: str, observed: Observation, active: Session, stamp: Stamp | None, moment: datetime | None
    ) -> Session:
        identity = observed.identity
        canonical = identity is not None and observed.content == f"{active.id}\n".encode("ascii")
        stamp_key = scope_key(META_STAMP, scope)
        meta = {stamp_key: Stamp(active.id, identity).encode()} if identity and canonical else {}
        if stamp is None or stamp.session_id != active.id:
            # We wrote this id but crashed before stamping it: adopt, no heartbeat.
            if meta:
                self._store.commit(meta=meta)
        else:
            at = max(moment or self._clock.now(), active.last_activity_at)
            active = self._record_activity(scope, active, at, meta)
        if not canonical:
            self._write_truth(scope, observed, active)
        return active

    def _write_truth(self, scope: str, observed: Observation, active: Session | None) -> None:
        """Make ``scope``'s file name ``active`` (or vanish), if it is still ``observed``."""
        wanted = active.id if active else None
        if wanted is None and observed.kind is FileKind.MISSING:
            return
        if wanted is not None:
            self._prepare_scope_dir(scope)  # deleted with the session active: back for the truth
        new_stamp = self._file(scope).replace(observed, wanted)
        faults.point("manager.after_file")
        if new_stamp is not None:
            self._store.commit(meta={scope_key(META_STAMP, scope): new_stamp.encode()})


_RULE_TEXT = {
    EndReason.IDLE: "idle for its whole idle timeout",
    EndReason.OWNER_EXITED: "its owner process exited",
}


def _in(scope: str) -> str:
    """For log lines: which scope, unless the default one."""
    return "" if scope == DEFAULT_SCOPE else f" in scope {scope}"


def scope_key(name: bytes, scope: str) -> bytes:
    """A meta key of ``scope``: the default scope keeps the bare names it had
    before scopes, so stores written then need no migration."""
    return name if scope == DEFAULT_SCOPE else name + b"/" + scope.encode("ascii")


def _from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)

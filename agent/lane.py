"""``Lane``: one scope -- its current file, its record in the store, its rules.

The store is the truth; the current file mirrors it and is also an input.
Every operation on a scope first *settles* its lane: it looks at the file,
applies any external edit by the file protocol (docs/file-protocol.md; the
table is ``_apply``), and makes the file match the store again. A
transition is one synced batch followed by another settle, so the normal
path and crash repair are the same code: after a crash between the store
write and the file write, the next settle finds the file out of date and
rewrites it.

To tell a file deleted by a user from one never written, the store keeps a
``Stamp`` of our last completed write: a missing file ends the active
session only if the stamp says we had finished writing it.

Every settle also applies the session's own rules (``agent.lifecycle``): an
active session whose idle timeout passed, or whose owner exited, is
abandoned with that reason and the moment the rule gives -- as of each
edit's mtime before the edit is applied, and as of now after it. So the
same code ends it whether the daemon's timer fires, a heartbeat arrives
after a night's sleep, or a restart finds it expired.

A lane never reads or writes another scope's file or keys.
"""

from __future__ import annotations

import enum
import logging
from datetime import UTC, datetime
from pathlib import Path

from agent import faults
from agent.changes import OwnerExits
from agent.clock import Clock
from agent.config import StartRequest, StartRules
from agent.current_file import CurrentFile, FileChangedError, FileKind, Observation, Stamp
from agent.errors import ConfigError, InvalidArgumentError, SessionIOError, StorageError, StoreDamagedError
from agent.file_edits import EditKind, parse_edit
from agent.layout import DB_NAME, DEFAULT_SCOPE, scope_dir
from agent.lifecycle import Tracking, due_end
from agent.owner import OwnerIdentity
from agent.scope_dirs import ScopeDirs
from agent.scope_record import ScopeRecord
from agent.session import EndReason, Session, SessionStatus
from agent.store import SessionStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.changes import Listener

__all__ = ["Lane"]

log = logging.getLogger(__name__)

_SETTLE_ATTEMPTS = 8
_ENDS_AS = {EditKind.END: SessionStatus.COMPLETED, EditKind.ABANDON: SessionStatus.ABANDONED}
_RULE_TEXT = {
    EndReason.IDLE: "idle for its whole idle timeout",
    EndReason.OWNER_EXITED: "its owner process exited",
}


class _Settling(enum.Enum):
    STRICT = "strict"  # the daemon's: a file that keeps changing is an error, retried later
    FOR_AN_ANSWER = "answer"  # a command's: what cannot be applied now waits; the store answers
    AFTER_COMMIT = "after_commit"  # right after our own transition: a stale file is expected


class Lane:
    """One scope: settles its file against its record."""

    def __init__(
        self,
        scope: str,
        data_dir: Path,
        store: SessionStore,
        clock: Clock,
        *,
        dirs: ScopeDirs,
        owner_exits: OwnerExits,
        announce: Listener,
        start_defaults: Callable[[], tuple[int, int]],
    ) -> None:
        self.scope = scope
        self.file = CurrentFile(scope_dir(data_dir, scope))
        self.record = ScopeRecord(scope, store, clock, announce)
        self._store = store
        self._db_path = data_dir / DB_NAME
        self._clock = clock
        self._dirs = dirs
        self._owner_exits = owner_exits
        self._start_defaults = start_defaults

    @property
    def path(self) -> Path:
        return self.file.path

    # --- settling ------------------------------------------------------------------

    def settle(self) -> Session | None:
        """Apply the file; the active session. A file that keeps changing
        while it is applied raises ``SessionIOError`` (the daemon retries)."""
        return self._settle(_Settling.STRICT)

    def settle_for_answer(self) -> Session | None:
        """Like ``settle``, but what cannot be applied now (a file that keeps
        changing, a failed write) is left for the next settle: the answer is
        then the store's, the truth up to the edits not yet applied."""
        return self._settle(_Settling.FOR_AN_ANSWER)

    def settle_after(self, done: str) -> None:
        """Mirror a committed transition (``done`` says which) in the file. If
        that fails (a full disk), the error says the transition itself is
        durable: the file catches up at the next settle."""
        try:
            self._settle(_Settling.AFTER_COMMIT)
        except SessionIOError as exc:
            raise SessionIOError(f"{done}, but {exc} (repaired by itself once that is fixed)") from None
        except StorageError as exc:
            raise StorageError(f"{done}, but {exc} (repaired by itself once that is fixed)") from None

    def _settle(self, mode: _Settling) -> Session | None:
        self._dirs.check(self.scope)
        for _ in range(_SETTLE_ATTEMPTS):
            observed = self.file.observe()
            active = self.record.active()
            try:
                active = self._apply(observed, active, self.record.stamp(), mode)
            except FileChangedError:
                continue  # an edit landed while we worked: apply it too
            except SessionIOError as exc:
                if mode is not _Settling.FOR_AN_ANSWER:  # a mirror's failure is reported with what was done
                    raise
                # Reads never depend on writing: the store has the answer, and
                # the file is mended at the next settle (the daemon retries).
                log.warning("%s; answering from the store", exc)
                return self.record.active()
            if active is None or not self.end_by_rules(active):
                return active
            # It ended by its rules just now: the next pass mirrors that in the file.
        if mode is not _Settling.STRICT:
            log.warning("%s keeps changing; its latest edits are applied once it settles", self.path)
            return self.record.active()
        raise SessionIOError(
            f"{self.path} changed {_SETTLE_ATTEMPTS} times while being applied; "
            "try again once the program writing it has finished"
        )

    # --- the file-protocol table ---------------------------------------------------

    def _apply(
        self, observed: Observation, active: Session | None, stamp: Stamp | None, mode: _Settling
    ) -> Session | None:
        """One observation of the file against the truth; the active session after."""
        path, kind = self.path, observed.kind
        if kind is FileKind.DIRECTORY:
            log.error("%s is a directory; remove it so the current session can be shown there", path)
            return active
        if kind is not FileKind.REGULAR and kind is not FileKind.MISSING:
            log.warning("%s was replaced by a %s; it was not followed, and is restored", path, kind.value)
            self._show(observed, active)
            return active
        if kind is FileKind.MISSING:
            if active is None:
                return None
            if stamp is not None and stamp.session_id == active.id:
                if self.end_by_rules(active):
                    return None  # it had ended by its rules before the deletion was seen
                log.info("%s deleted: completing session %s", path, active.id)
                self._end(observed, active.completed(EndReason.FILE, self._clock.now()))
                return None
            if mode is not _Settling.AFTER_COMMIT:
                log.info("restoring the current file for session %s (its write was interrupted)", active.id)
            self._show(observed, active)
            return active
        if stamp is not None and stamp.matches(observed):  # our own write, untouched
            if active is None or stamp.session_id != active.id:
                self._show(observed, active)
                return active
            return active

        edit = parse_edit(observed.content)
        faults.point("manager.reconcile")
        # The edit was made at its mtime: the rules first, as of then (now for a start).
        moment = self._edit_moment(observed) if edit.kind is not EditKind.START else None
        ended_id = None
        if active is not None and edit.kind is not EditKind.INVALID and self.end_by_rules(active, moment):
            ended_id, active = active.id, None
        if edit.kind is EditKind.INVALID:
            log.warning("ignored an edit of %s: %s; restored it", path, edit.problem)
        elif edit.kind is EditKind.START:
            assert edit.start is not None
            if active is None or edit.start.replace:
                return self._start_from_file(observed, active, edit.start)
            log.info("current file says start, but session %s is already active", active.id)
        elif edit.kind in (EditKind.END, EditKind.ABANDON):
            if active is not None:
                ended = active.terminated(_ENDS_AS[edit.kind], EndReason.FILE, moment)
                log.info(
                    "current file says %s: %s session %s%s",
                    edit.kind.value,
                    ended.status.value,
                    active.id,
                    self.where,
                )
                self._end(observed, ended)
                return None
        elif active is not None and edit.session_id == active.id:
            return self._heartbeat(observed, active, stamp, moment)
        elif ended_id is not None and edit.session_id == ended_id:
            log.info("ignored a heartbeat of session %s: it had already ended by its rules", ended_id)
        else:
            self._check_not_lost(edit.session_id)
            log.warning(
                "ignored an edit of %s: %s is not the active session; restored it", path, edit.session_id
            )
        self._show(observed, active)
        return active

    def _check_not_lost(self, session_id: str | None) -> None:
        """The current files witness the store: each start is written into
        one after its synced commit. A file naming a session newer than any
        the store holds means the store lost writes it had acknowledged (a
        write-ahead log cut back on disk: RocksDB cannot tell that from a
        torn last record). Then nothing is "restored": the store is refused,
        and the file kept as the evidence."""
        if session_id is not None and self._store.lost(session_id):
            raise StoreDamagedError(
                self._db_path,
                f"{self.path} names session {session_id}, newer than any the store holds: "
                "writes the store acknowledged are missing",
            )

    def _start_from_file(
        self, observed: Observation, active: Session | None, request: StartRequest
    ) -> Session | None:
        others = [s for s in self._store.pointed_scopes() if s != DEFAULT_SCOPE]
        if active is None and self.scope != DEFAULT_SCOPE and len(others) >= self._dirs.limit:
            # Directories made behind our back (`mkdir -p`) count against the
            # cap as much as those a start made.
            log.warning(
                "ignored `start` in %s: %d scopes already have an active session; end some first",
                self.path,
                self._dirs.limit,
            )
            self._show(observed, active)
            return active
        try:
            defaults = self._start_defaults()
        except ConfigError as exc:
            log.error("%s; starting with the built-in defaults", exc)
            defaults = (0, 0)
        try:
            started, tracking = self.begin(request, defaults)
        except InvalidArgumentError as exc:
            log.warning("ignored an edit of %s: `start`: %s; restored it", self.path, exc)
            self._show(observed, active)
            return active
        replaced = active.abandoned(EndReason.REPLACED, started.started_at) if active else None
        log.info(
            "current file says start: started session %s%s%s",
            started.id,
            self.where,
            f", replacing {replaced.id}" if replaced else "",
        )
        self.record.start(started, tracking, replaced)
        self._show(observed, started)
        return started

    def _heartbeat(
        self, observed: Observation, active: Session, stamp: Stamp | None, moment: datetime | None
    ) -> Session:
        identity = observed.identity
        canonical = identity is not None and observed.content == f"{active.id}\n".encode("ascii")
        ours = Stamp(active.id, identity) if identity and canonical else None
        if stamp is None or stamp.session_id != active.id:
            # We wrote this id but crashed before stamping it: adopt, no heartbeat.
            if ours is not None:
                self.record.save_stamp(ours)
        else:
            at = max(moment or self._clock.now(), active.last_activity_at)
            active = self.record.activity(active, at, ours)
        if not canonical:
            self._show(observed, active)
            return active
        return active

    def _end(self, observed: Observation, ended: Session) -> None:
        """Commit the end of the active session decided from ``observed``, then
        mirror it in the file."""
        self.record.end(ended)
        self._show(observed, None)

    def _show(self, observed: Observation, active: Session | None) -> None:
        """Make the file name ``active`` (or vanish), if it is still ``observed``."""
        wanted = active.id if active else None
        if wanted is None and observed.kind is FileKind.MISSING:
            return
        if wanted is not None:
            self._dirs.prepare(self.scope, self.file)  # deleted with the session active: back for the truth
        new_stamp = self.file.replace(observed, wanted)
        faults.point("manager.after_file")
        if new_stamp is not None:
            self.record.save_stamp(new_stamp)

    def _edit_moment(self, observed: Observation) -> datetime:
        """When an edit was made: its mtime, unless the clock says that is
        in the future (then now)."""
        now = self._clock.now()
        if observed.mtime_ns is None:
            return now
        return min(datetime.fromtimestamp(observed.mtime_ns / 1e9, tz=UTC), now)

    # --- sessions and their rules --------------------------------------------------

    def begin(self, request: StartRequest, defaults: tuple[int, int]) -> tuple[Session, Tracking]:
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
            scope=self.scope,
        )
        return session, Tracking.begin(session, self._clock, owner)

    def end_by_rules(self, active: Session, at: datetime | None = None) -> bool:
        """Abandon ``active`` if a rule (idle, owner) ended it by ``at``
        (default: now); say whether it did."""
        tracking = self.record.tracking(active)
        exited_at, alive = None, True
        owner = tracking.owner(active) if tracking is not None else None
        if owner is not None:
            exited_at = self._owner_exits.exited_at(owner)
            alive = exited_at is None and owner.alive(self._clock)
        end = due_end(active, tracking, self._clock, at=at, owner_exited_at=exited_at, owner_alive=alive)
        if end is None:
            return False
        ended = active.abandoned(end.reason, end.at)
        faults.point("manager.end_by_rule")
        log.info("session %s abandoned: %s (ended at %s)", active.id, _RULE_TEXT[end.reason], ended.ended_at)
        self.record.end(ended)
        return True

    @property
    def where(self) -> str:
        """For log lines: which scope, unless the default one."""
        return "" if self.scope == DEFAULT_SCOPE else f" in scope {self.scope}"

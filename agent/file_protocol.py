"""The file protocol's table: one observation of a current file against the truth.

What each content of the file means is ``agent.file_edits``'s; this decides
what it does to the scope's active session (docs/file-protocol.md):

* missing -- ends the active session if *we* had finished writing the file
  (our ``Stamp`` names it): a user deleted it; else our write was
  interrupted, and the file is restored;
* our own last write, untouched -- nothing;
* ``start [options]`` -- starts a session (``replace`` ends the active one);
* empty / ``end`` / ``abandon`` -- ends the active one, as of the edit's mtime;
* the active session's id -- a heartbeat, as of the edit's mtime;
* anything else -- ignored, logged, and the file restored;
* not a regular file (a symlink, a FIFO) -- never followed; restored.

The session's own rules are applied as of the edit's mtime before the edit
is: a heartbeat written after it had gone idle does not revive it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from agent import faults
from agent.config import Settings, StartRequest
from agent.current_file import CurrentFile, FileKind, Observation, Stamp
from agent.errors import ConfigError, InvalidArgumentError, StoreDamagedError
from agent.file_edits import EditKind, parse_edit
from agent.layout import DEFAULT_SCOPE
from agent.scope_dirs import ScopeDirs
from agent.scope_record import ScopeRecord
from agent.scope_rules import ScopeRules
from agent.session import EndReason, Session, SessionStatus
from agent.store import SessionStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.clock import Clock

__all__ = ["FileProtocol", "where"]

log = logging.getLogger(__name__)

_ENDS_AS = {EditKind.END: SessionStatus.COMPLETED, EditKind.ABANDON: SessionStatus.ABANDONED}


def where(scope: str) -> str:
    """For log lines: which scope, unless the default one."""
    return "" if scope == DEFAULT_SCOPE else f" in scope {scope}"


class FileProtocol:
    """The table for one scope's file. ``FileChangedError`` (from the file's
    compare-and-swap writes) means an edit landed meanwhile: observe again."""

    def __init__(
        self,
        file: CurrentFile,
        record: ScopeRecord,
        rules: ScopeRules,
        *,
        store: SessionStore,
        db_path: Path,
        dirs: ScopeDirs,
        clock: Clock,
        start_defaults: Callable[[], Settings],
    ) -> None:
        self._file = file
        self._record = record
        self._rules = rules
        self._store = store
        self._db_path = db_path
        self._dirs = dirs
        self._clock = clock
        self._start_defaults = start_defaults

    def apply(
        self,
        observed: Observation,
        active: Session | None,
        stamp: Stamp | None,
        *,
        after_commit: bool = False,
    ) -> Session | None:
        """One observation of the file against the truth; the active session
        after. ``after_commit``: right after our own transition, a stale
        file is expected, not a repair worth a log line."""
        path, kind = self._file.path, observed.kind
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
                if self._rules.end_if_due(active):
                    return None  # it had ended by its rules before the deletion was seen
                log.info("%s deleted: completing session %s", path, active.id)
                self._end(observed, active.completed(EndReason.FILE, self._clock.now()))
                return None
            if not after_commit:
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
        if (
            active is not None
            and edit.kind is not EditKind.INVALID
            and self._rules.end_if_due(active, moment)
        ):
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
                    where(self._record.scope),
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
                f"{self._file.path} names session {session_id}, newer than any the store holds: "
                "writes the store acknowledged are missing",
            )

    def _start_from_file(
        self, observed: Observation, active: Session | None, request: StartRequest
    ) -> Session | None:
        others = [s for s in self._store.pointed_scopes() if s != DEFAULT_SCOPE]
        if active is None and self._record.scope != DEFAULT_SCOPE and len(others) >= self._dirs.limit:
            # Directories made behind our back (`mkdir -p`) count against the
            # cap as much as those a start made.
            log.warning(
                "ignored `start` in %s: %d scopes already have an active session; end some first",
                self._file.path,
                self._dirs.limit,
            )
            self._show(observed, active)
            return active
        try:
            defaults = self._start_defaults()
        except ConfigError as exc:
            log.error("%s; starting with the built-in defaults", exc)
            defaults = Settings()
        try:
            started, tracking = self._rules.begin(request, defaults)
        except InvalidArgumentError as exc:
            log.warning("ignored an edit of %s: `start`: %s; restored it", self._file.path, exc)
            self._show(observed, active)
            return active
        replaced = active.abandoned(EndReason.REPLACED, started.started_at) if active else None
        log.info(
            "current file says start: started session %s%s%s",
            started.id,
            where(self._record.scope),
            f", replacing {replaced.id}" if replaced else "",
        )
        self._record.start(started, tracking, replaced)
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
                self._record.save_stamp(ours)
        else:
            at = max(moment or self._clock.now(), active.last_activity_at)
            active = self._record.activity(active, at, ours)
        if not canonical:
            self._show(observed, active)
            return active
        return active

    def _end(self, observed: Observation, ended: Session) -> None:
        """Commit the end of the active session decided from ``observed``, then
        mirror it in the file."""
        self._record.end(ended)
        self._show(observed, None)

    def _show(self, observed: Observation, active: Session | None) -> None:
        """Make the file name ``active`` (or vanish), if it is still ``observed``."""
        wanted = active.id if active else None
        if wanted is None and observed.kind is FileKind.MISSING:
            return
        if wanted is not None:
            self._dirs.prepare(
                self._record.scope, self._file
            )  # deleted with the session active: back for the truth
        new_stamp = self._file.replace(observed, wanted)
        faults.point("manager.after_file")
        if new_stamp is not None:
            self._record.save_stamp(new_stamp)

    def _edit_moment(self, observed: Observation) -> datetime:
        """When an edit was made: its mtime, unless the clock says that is
        in the future (then now)."""
        now = self._clock.now()
        if observed.mtime_ns is None:
            return now
        return min(datetime.fromtimestamp(observed.mtime_ns / 1e9, tz=UTC), now)

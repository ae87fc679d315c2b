"""``Lane``: one scope -- its current file, its record in the store, its rules.

The store is the truth; the current file mirrors it and is also an input.
Every operation on a scope first *settles* its lane: it looks at the file,
applies any external edit (``agent.file_protocol``'s table), and makes the
file match the store again. A transition is one synced batch
(``agent.scope_record``) followed by another settle, so the normal path and
crash repair are the same code: after a crash between the store write and
the file write, the next settle finds the file out of date and rewrites it.

To tell a file deleted by a user from one never written, the store keeps a
``Stamp`` of our last completed write: a missing file ends the active
session only if the stamp says we had finished writing it.

Every settle also applies the session's own rules (``agent.scope_rules``):
an active session whose idle timeout passed, or whose owner exited, is
abandoned with the moment the rule gives. So the same code ends it whether
the daemon's timer fires, a heartbeat arrives after a night's sleep, or a
restart finds it expired.

A lane never reads or writes another scope's file or keys.
"""

from __future__ import annotations

import enum
import logging
from pathlib import Path

from agent.changes import OwnerExits
from agent.clock import Clock
from agent.config import Settings, StartRequest
from agent.current_file import CurrentFile, FileChangedError
from agent.errors import SessionAlreadyActiveError, SessionIOError, StorageError
from agent.file_protocol import FileProtocol, where
from agent.layout import DB_NAME, DEFAULT_SCOPE, scope_dir
from agent.scope_dirs import ScopeDirs
from agent.scope_record import ScopeRecord
from agent.scope_rules import ScopeRules
from agent.session import EndReason, Session, SessionStatus
from agent.store import SessionStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.changes import Listener

__all__ = ["Lane"]

log = logging.getLogger(__name__)

_SETTLE_ATTEMPTS = 8


class _Settling(enum.Enum):
    STRICT = "strict"  # the daemon's: a file that keeps changing is an error, retried later
    FOR_AN_ANSWER = "answer"  # a command's: what cannot be applied now waits; the store answers
    AFTER_COMMIT = "after_commit"  # right after our own transition: a stale file is expected


class Lane:
    """One scope: its commands, and the settling of its file against its record."""

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
        start_defaults: Callable[[], Settings],
    ) -> None:
        self.scope = scope
        self.file = CurrentFile(scope_dir(data_dir, scope))
        self.record = ScopeRecord(scope, store, clock, announce)
        self.rules = ScopeRules(self.record, clock, owner_exits)
        self._protocol = FileProtocol(
            self.file,
            self.record,
            self.rules,
            store=store,
            db_path=data_dir / DB_NAME,
            dirs=dirs,
            clock=clock,
            start_defaults=start_defaults,
        )
        self._clock = clock
        self._dirs = dirs

    @property
    def path(self) -> Path:
        return self.file.path

    # --- commands ------------------------------------------------------------------

    def start(self, request: StartRequest, defaults: Settings) -> Session:
        """Start a session; ``SessionAlreadyActiveError`` if one is active,
        unless ``request.replace``: then the active one ends (``replaced``)
        in the same batch that starts the new one."""
        active = self.settle_for_answer()
        if active is not None and not request.replace:
            raise SessionAlreadyActiveError(active.id, None if self.scope == DEFAULT_SCOPE else self.scope)
        session, tracking = self.rules.begin(request, defaults)
        self._dirs.prepare(self.scope, self.file)  # only once the request is known to be good
        replaced = active.abandoned(EndReason.REPLACED, session.started_at) if active else None
        self.record.start(session, tracking, replaced)
        if replaced is not None:
            log.info("session %s replaced by %s%s", replaced.id, session.id, where(self.scope))
        self._settle_after(f"session {session.id} was started")
        return session

    def terminate(self, wanted: str | None, status: SessionStatus, reason: EndReason) -> Session | None:
        """End the session ``wanted`` (an id of this scope's) or else the active
        one, as ``status``; ``None`` when it is not active (any more)."""
        active = self.settle_for_answer()
        target = active if wanted is None or (active and active.id == wanted) else None
        if target is None and wanted is not None:
            target = self.record.get(wanted)
        if target is None or not target.is_active:
            return None
        ended = target.terminated(status, reason, self._clock.now())
        # An active record that is not the active session: the pointer stays.
        self.record.end(ended, pointed=active is not None and active.id == ended.id)
        self._settle_after(f"session {ended.id} was {ended.status.value}")
        return ended

    def touch(self) -> Session | None:
        """Record activity on the active session now, as a touch of its file
        would (at most one write a second); ``None`` when none is active."""
        active = self.settle_for_answer()
        return None if active is None else self.record.activity(active, self._clock.now())

    def rewrite(self, target: Session, transform: Callable[[Session], Session]) -> Session:
        """``target`` changed by ``transform`` (what it was, its memories), durably."""
        changed = transform(target)
        self.record.rewrite(target, changed)
        return changed

    def recently_ended(self, within: float) -> Session | None:
        """The scope's latest session if it ended less than ``within`` seconds ago."""
        latest = self.record.latest()
        if latest is None or latest.ended_at is None:
            return None
        return latest if (self._clock.now() - latest.ended_at).total_seconds() <= within else None

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

    def _settle_after(self, done: str) -> None:
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
                active = self._protocol.apply(
                    observed, active, self.record.stamp(), after_commit=mode is _Settling.AFTER_COMMIT
                )
            except FileChangedError:
                continue  # an edit landed while we worked: apply it too
            except SessionIOError as exc:
                if mode is not _Settling.FOR_AN_ANSWER:  # a mirror's failure is reported with what was done
                    raise
                # Reads never depend on writing: the store has the answer, and
                # the file is mended at the next settle (the daemon retries).
                log.warning("%s; answering from the store", exc)
                return self.record.active()
            if active is None or not self.rules.end_if_due(active):
                return active
            # It ended by its rules just now: the next pass mirrors that in the file.
        if mode is not _Settling.STRICT:
            log.warning("%s keeps changing; its latest edits are applied once it settles", self.path)
            return self.record.active()
        raise SessionIOError(
            f"{self.path} changed {_SETTLE_ATTEMPTS} times while being applied; "
            "try again once the program writing it has finished"
        )

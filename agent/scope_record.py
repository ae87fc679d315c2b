"""``ScopeRecord``: what the store says of one scope, and the batches that change it.

A scope's record is three meta keys (``ScopeKeys``): the pointer to its
active session, that session's ``Tracking``, and the ``Stamp`` of our last
completed write of its current file. Every change of the active session is
one synced batch here -- the session's record with the pointer and tracking
-- and is then announced to the listeners (``agent.changes``).

The verbs say what happened, not how: ``start``, ``end``, ``activity``
(a heartbeat), ``stamp`` (the file we wrote), ``owner_alive``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from agent import faults
from agent.changes import ActiveSession, Change
from agent.clock import Clock
from agent.current_file import Stamp
from agent.events import EventKind, occurrence_kinds
from agent.lifecycle import Tracking
from agent.session import Session
from agent.store import SessionStore
from agent.store_keys import ScopeKeys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent.changes import Listener

__all__ = ["HEARTBEAT_INTERVAL", "ScopeRecord"]

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = timedelta(seconds=1)


class ScopeRecord:
    """The store's side of one scope."""

    def __init__(self, scope: str, store: SessionStore, clock: Clock, announce: Listener) -> None:
        self.scope = scope
        self._keys = ScopeKeys(scope)
        self._store = store
        self._clock = clock
        self._announce = announce

    # --- reading -------------------------------------------------------------------

    def active(self) -> Session | None:
        """The active session, as the pointer names it (a pointer to a record
        that is not active in this scope is ignored, and said)."""
        raw = self._store.get_meta(self._keys.active)
        if raw is None:
            return None
        session_id = raw.decode("ascii", "replace")
        session = self._store.get(session_id)
        if session is None or not session.is_active or session.scope != self.scope:
            log.warning(
                "the store named %s as active in scope %s but it is not; ignoring it", session_id, self.scope
            )
            return None
        return session

    def get(self, session_id: str) -> Session | None:
        return self._store.get(session_id)

    def tracking(self, active: Session) -> Tracking | None:
        tracking = Tracking.decode(self._store.get_meta(self._keys.tracking))
        return tracking if tracking is not None and tracking.session_id == active.id else None

    def state(self) -> ActiveSession | None:
        """The active session with its tracking."""
        active = self.active()
        return None if active is None else ActiveSession(self.scope, active, self.tracking(active))

    def stamp(self) -> Stamp | None:
        """Our last completed write of the current file."""
        return Stamp.decode(self._store.get_meta(self._keys.stamp))

    # --- changing ------------------------------------------------------------------

    def start(self, session: Session, tracking: Tracking, replaced: Session | None = None) -> None:
        """One batch: ``session`` becomes the active one (``replaced``, the one
        it ends, with it)."""
        meta = {self._keys.active: session.id.encode("ascii"), self._keys.tracking: tracking.encode()}
        if replaced is None:
            self._store.commit((session,), meta, events=((EventKind.STARTED, session),))
        else:
            events = ((EventKind.ENDED, replaced), (EventKind.STARTED, session))
            self._store.commit((replaced, session), meta, events=events)
        faults.point("manager.after_store")
        self._announce(Change(self.scope, replaced, ActiveSession(self.scope, session, tracking)))

    def end(self, ended: Session, *, pointed: bool = True) -> None:
        """One batch: ``ended`` (no longer active) recorded, and the pointer and
        tracking cleared -- unless it was not the one ``pointed`` at (a stray
        active record: the pointer is left alone)."""
        meta: dict[bytes, bytes | None] = {self._keys.active: None, self._keys.tracking: None}
        self._store.commit((ended,), meta if pointed else None, events=((EventKind.ENDED, ended),))
        faults.point("manager.after_store")
        if pointed:
            self._announce(Change(self.scope, ended, None))

    def activity(self, active: Session, moment: datetime, stamp: Stamp | None = None) -> Session:
        """A heartbeat at ``moment`` (wall time), at most one a second as
        measured on the boot clock: a wall clock set back must not silence
        heartbeats (and let the session go idle) until it catches up.
        ``stamp``: our write of the file, recorded with it (or alone, when
        no heartbeat is due)."""
        meta: dict[bytes, bytes | None] = {} if stamp is None else {self._keys.stamp: stamp.encode()}
        tracking = self.tracking(active)
        boot = self._clock.boot_at(moment)
        if tracking is not None and tracking.boot_id == self._clock.boot_id():
            due = boot - tracking.activity_boot >= HEARTBEAT_INTERVAL.total_seconds()
        else:  # restored after a reboot: the wall clock is all there is
            due = moment - active.last_activity_at >= HEARTBEAT_INTERVAL
        if not due:
            if meta:
                self._store.commit(meta=meta)
            return active
        moved = active.with_activity(moment)
        if tracking is None:  # lost: idleness is measured from here on
            tracking = Tracking(moved.id, self._clock.boot_id(), boot)
        if tracking.boot_id == self._clock.boot_id():  # else kept: it names the owner's boot
            owner = tracking.owner(moved)
            seen = moment if owner is not None and owner.alive(self._clock) else None
            tracking = tracking.with_activity(boot, seen)
            meta[self._keys.tracking] = tracking.encode()
        self._store.commit((moved,), meta, events=((EventKind.ACTIVITY, moved),))
        log.debug("heartbeat recorded for session %s", moved.id)
        self._announce(Change(self.scope, active, ActiveSession(self.scope, moved, tracking)))
        return moved

    def rewrite(self, before: Session, after: Session) -> None:
        """One batch: ``after`` replaces ``before``'s record (what it was, its
        memories: never its times or status); announced when it is active."""
        kinds = occurrence_kinds(before, after)
        self._store.commit((after,), replacing=(before,), events=tuple((kind, after) for kind in kinds))
        if after.is_active and self.active() == after:
            self._announce(Change(self.scope, before, ActiveSession(self.scope, after, self.tracking(after))))

    def latest(self) -> Session | None:
        """This scope's most recent session, active or not."""
        return next(iter(self._store.newest_first(scope=self.scope, errors=[])), None)

    def save_stamp(self, stamp: Stamp | None) -> None:
        """Record our completed write of the file (``None``: forget it, the
        file is gone for good)."""
        self._store.commit(meta={self._keys.stamp: None if stamp is None else stamp.encode()})

    def owner_alive(self, active: Session) -> None:
        """Record that ``active``'s owner lives now (the daemon's last word
        before it stops, so an exit while none runs is dated no earlier)."""
        tracking = self.tracking(active)
        owner = tracking.owner(active) if tracking else None
        if tracking is None or owner is None or not owner.alive(self._clock):
            return
        seen = tracking.with_activity(tracking.activity_boot, self._clock.now())
        self._store.commit(meta={self._keys.tracking: seen.encode()})

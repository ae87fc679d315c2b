"""What the manager announces: a scope's active session changed.

Every committed change of a scope's active session -- started, ended,
replaced, a heartbeat moving its last activity -- is announced to the
manager's listeners as a ``Change``, after its synced commit. The daemon's
components (rule watch, sweeper, snapshot timer, systemd status) follow
sessions this way instead of guessing what a request touched; the coming
event stream and user hooks plug in at the same seam.
"""

from __future__ import annotations

from agent.clock import Clock
from agent.lifecycle import Tracking, idle_deadline
from agent.owner import OwnerIdentity
from agent.session import Session
from agent.values import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    Listener = Callable[["Change"], None]

__all__ = ["ActiveSession", "Change", "OwnerExits"]  # and the type Listener, for annotations


class ActiveSession(Value):
    """A scope's active session with what its end rules need."""

    __slots__ = ("scope", "session", "tracking")

    scope: str
    session: Session
    tracking: Tracking | None

    def __init__(self, scope: str, session: Session, tracking: Tracking | None) -> None:
        self._set(scope=scope, session=session, tracking=tracking)

    @property
    def owner(self) -> OwnerIdentity | None:
        """The process the session is bound to, if any (and known)."""
        return self.tracking.owner(self.session) if self.tracking is not None else None

    def seconds_to_idle_end(self, clock: Clock) -> float | None:
        """Boot-clock seconds until the idle timeout could end it; ``None``
        without one."""
        return idle_deadline(self.session, self.tracking, clock)


class Change(Value):
    """``scope``'s active session was ``before`` and is now ``after`` (either
    ``None`` when none was or is active; the same id when a heartbeat moved
    its last activity)."""

    __slots__ = ("after", "before", "scope")

    scope: str
    before: Session | None
    after: ActiveSession | None

    def __init__(self, scope: str, before: Session | None, after: ActiveSession | None) -> None:
        self._set(scope=scope, before=before, after=after)


class OwnerExits:
    """Who knows when owner processes exited: the daemon's watch, passed
    into the manager (an embedded command has none: it asks the process
    table). The base knows nothing."""

    def exited_at(self, identity: OwnerIdentity) -> datetime | None:
        return None

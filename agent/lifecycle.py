"""How an active session ends when no one ends it: the idle timeout and the
owner process.

The rules are pure functions of the session, its ``Tracking`` and a clock,
so the daemon, an embedded command and a restart after a crash all decide
the same way, and tests can run them on simulated clocks.

* **Idle**: a session with an ``idle_timeout`` ends when that many seconds
  pass, on the boot clock, after its last activity; ``ended_at`` is the
  last activity plus ``idle_grace``, not the moment it was noticed.
* **Owner**: a session bound to a process ends when the process exits;
  ``ended_at`` is the exit as seen by the daemon's watch when one ran, else
  the last moment the owner is known to have been alive (its last recorded
  activity, or a clean stop of the daemon that saw it alive).

A rule is judged *as of* a moment: an edit of the current file made while
no daemon ran is applied at its mtime, after the rules as of that mtime --
so a heartbeat written after the session had gone idle does not revive it.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta

from agent.clock import Clock
from agent.owner import OwnerIdentity
from agent.session import EndReason, Session, from_micros, to_micros
from agent.values import Value

__all__ = ["DueEnd", "Tracking", "due_end", "idle_deadline"]


class Tracking(Value):
    """What the active session's rules need beyond its record, kept beside
    the pointer to it and written in the same batches: the boot clock at its
    last recorded activity, its owner's identity, and the last moment the
    owner was known to be alive."""

    __slots__ = ("activity_boot", "boot_id", "owner_seen_at", "owner_ticks", "session_id")

    session_id: str
    boot_id: str
    activity_boot: float  # boot-clock seconds at the last recorded activity
    owner_ticks: int | None  # the owner's start time, in ticks since boot
    owner_seen_at: datetime | None

    _FORMAT = struct.Struct("<36s36sqqq")

    def __init__(
        self,
        session_id: str,
        boot_id: str,
        activity_boot: float,
        owner_ticks: int | None = None,
        owner_seen_at: datetime | None = None,
    ) -> None:
        self._set(
            session_id=session_id,
            boot_id=boot_id,
            activity_boot=activity_boot,
            owner_ticks=owner_ticks,
            owner_seen_at=owner_seen_at,
        )

    @classmethod
    def begin(cls, session: Session, clock: Clock, owner: OwnerIdentity | None) -> Tracking:
        return cls(
            session.id,
            clock.boot_id(),
            clock.boot(),
            owner.start_ticks if owner else None,
            session.started_at if owner else None,
        )

    def owner(self, session: Session) -> OwnerIdentity | None:
        if session.owner_pid is None or self.owner_ticks is None or self.session_id != session.id:
            return None
        return OwnerIdentity(session.owner_pid, self.owner_ticks, self.boot_id)

    def with_activity(self, boot: float, owner_seen_at: datetime | None) -> Tracking:
        seen = self.owner_seen_at
        if owner_seen_at is not None and (seen is None or owner_seen_at > seen):
            seen = owner_seen_at
        return Tracking(self.session_id, self.boot_id, max(boot, self.activity_boot), self.owner_ticks, seen)

    def encode(self) -> bytes:
        return self._FORMAT.pack(
            self.session_id.encode("ascii"),
            self.boot_id.encode("ascii", "replace")[:36],
            round(self.activity_boot * 1e9),
            -1 if self.owner_ticks is None else self.owner_ticks,
            -1 if self.owner_seen_at is None else to_micros(self.owner_seen_at),
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> Tracking | None:
        """``None`` when missing or unreadable: the rules then fall back to
        the wall clock (idle) or cannot tell the owner (it is kept)."""
        if raw is None or len(raw) != cls._FORMAT.size:
            return None
        sid, boot_id, boot_ns, ticks, seen = cls._FORMAT.unpack(raw)
        try:
            return cls(
                sid.decode("ascii"),
                boot_id.rstrip(b"\0").decode("ascii"),
                boot_ns / 1e9,
                None if ticks < 0 else ticks,
                None if seen < 0 else from_micros(seen),
            )
        except (UnicodeDecodeError, OverflowError, ValueError):
            return None


class DueEnd(Value):
    """A rule says the session has ended: why, and when."""

    __slots__ = ("at", "reason")

    reason: EndReason
    at: datetime

    def __init__(self, reason: EndReason, at: datetime) -> None:
        self._set(reason=reason, at=at)


def _idle_seconds(session: Session, tracking: Tracking | None, clock: Clock, at: datetime | None) -> float:
    """How long the session had been idle at ``at`` (default: now)."""
    if tracking is not None and tracking.session_id == session.id and tracking.boot_id == clock.boot_id():
        boot = clock.boot() if at is None else clock.boot_at(at)
        return boot - tracking.activity_boot
    # Another boot (or no tracking): the wall clock is all there is.
    return ((at or clock.now()) - session.last_activity_at).total_seconds()


def idle_deadline(session: Session, tracking: Tracking | None, clock: Clock) -> float | None:
    """Seconds from now until the idle timeout; ``None`` without one."""
    if session.idle_timeout is None:
        return None
    return max(0.0, session.idle_timeout - _idle_seconds(session, tracking, clock, None))


def due_end(
    session: Session,
    tracking: Tracking | None,
    clock: Clock,
    *,
    at: datetime | None = None,
    owner_exited_at: datetime | None = None,
    owner_alive: bool = True,
) -> DueEnd | None:
    """The end a rule gives the active ``session`` as of ``at`` (default:
    now), the earliest if both apply; ``None`` if it lives on.

    ``owner_alive``/``owner_exited_at`` are the caller's look at the owner
    now: an exit with no known time counts only when judging as of now."""
    ends: list[DueEnd] = []
    timeout = session.idle_timeout
    if timeout is not None and _idle_seconds(session, tracking, clock, at) >= timeout:
        ends.append(DueEnd(EndReason.IDLE, session.last_activity_at + timedelta(seconds=session.idle_grace)))
    if not owner_alive:
        if owner_exited_at is not None:
            if at is None or owner_exited_at <= at:
                ends.append(DueEnd(EndReason.OWNER_EXITED, owner_exited_at))
        elif at is None:
            seen = tracking.owner_seen_at if tracking is not None else None
            last = max(session.last_activity_at, seen) if seen is not None else session.last_activity_at
            ends.append(DueEnd(EndReason.OWNER_EXITED, last))
    if not ends:
        return None
    return min(ends, key=lambda end: end.at)

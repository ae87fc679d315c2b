"""The daemon's watch on the active sessions' end rules, in every scope.

An owner's exit is seen by its own ``OwnerWatch`` (a pidfd, no polling); the
idle timeouts share one timer, armed for the earliest deadline. The timer
sleeps on the event loop's clock, which stops while the machine is
suspended, so it wakes at least every ``recheck`` seconds to look at the
boot clock: after a resume, an expired session ends within that time (or
at once, on the first event).

Re-arming after a change looks at the scopes that changed only: a request
in one scope costs the same with one scope active or hundreds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from agent.clock import Clock
from agent.errors import SessionError
from agent.manager import SessionManager
from agent.owner import OwnerIdentity
from agent.owner_watch import OwnerWatch
from agent.scope import DEFAULT_SCOPE
from agent.session import Session

__all__ = ["RuleWatch"]

log = logging.getLogger(__name__)

DueCallback = Callable[[frozenset[str], str], None]  # (scopes to settle, why)


class RuleWatch:
    """Keeps each active session's owner watched and its idle timeout timed;
    calls ``on_due(scopes, why)`` when a rule may have ended sessions."""

    def __init__(self, manager: SessionManager, clock: Clock, recheck: float, on_due: DueCallback) -> None:
        self._manager = manager
        self._clock = clock
        self._recheck = recheck
        self._on_due = on_due
        self.actives: dict[str, Session] = {}  # scope -> its active session, as last armed
        self._owners: dict[str, OwnerWatch] = {}
        self._deadlines: dict[str, float] = {}  # scope -> loop time its idle timeout could end it
        self._timer: asyncio.TimerHandle | None = None

    def exited_at(self, identity: OwnerIdentity) -> datetime | None:
        """When an owner we watch exited, if it has and we saw it (the
        manager's ``owner_exit_time``)."""
        for watch in self._owners.values():
            if watch.identity == identity:
                return watch.exited_at(identity)
        return None

    def rearm(self, scopes: Iterable[str] | None = None) -> None:
        """Look again at ``scopes`` (``None``: all, after a full settle)."""
        try:
            if scopes is None:
                fresh = self._manager.active_sessions()
                for scope in set(fresh) | set(self.actives):
                    self._arm(scope, fresh.get(scope))
            else:
                for scope in scopes:
                    self._arm(scope, self._manager.active(scope))
        except SessionError as exc:
            log.warning("could not arm the active sessions' rules: %s", exc)
        self._schedule()

    def _seconds_to_next(self) -> float | None:
        loop = asyncio.get_running_loop()
        return min((at - loop.time() for at in self._deadlines.values()), default=None)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for watch in self._owners.values():
            watch.stop()
        self._owners.clear()

    def _arm(self, scope: str, active: Session | None) -> None:
        if active is None:
            self.actives.pop(scope, None)
            self._deadlines.pop(scope, None)
            watch = self._owners.pop(scope, None)
            if watch is not None:
                watch.stop()
            return
        self.actives[scope] = active
        owner = self._manager.owner_of(active)
        watch = self._owners.get(scope)
        if owner is not None and watch is None:
            watch = self._owners[scope] = OwnerWatch(
                self._clock, lambda: self._on_due(frozenset({scope}), "the owner process exited")
            )
        if watch is not None:
            watch.watch(owner)
        wait = self._manager.seconds_to_next_rule(scope)
        if wait is None:
            self._deadlines.pop(scope, None)
        else:
            self._deadlines[scope] = asyncio.get_running_loop().time() + wait

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        wait = self._seconds_to_next()
        if wait is not None:
            delay = min(max(wait, 0.0) + 0.01, self._recheck)
            self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._on_due(frozenset(self._deadlines) or frozenset({DEFAULT_SCOPE}), "idle check")

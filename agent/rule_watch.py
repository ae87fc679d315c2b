"""The daemon's watch on the active sessions' end rules, in every scope.

An owner's exit is seen by its own watch (``OwnerWatches``: a pidfd, no
polling); the idle timeouts share one timer, armed for the earliest
deadline. The timer sleeps on the event loop's clock, which stops while the
machine is suspended, so it wakes at least every ``recheck`` seconds to
look at the boot clock: after a resume, an expired session ends within
that time (or at once, on the first event).

It follows the manager's changes (``on_change``): a change in one scope
re-arms that scope alone, from what the change carries, so a request costs
the same with one scope active or hundreds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.changes import ActiveSession, Change
from agent.clock import Clock
from agent.layout import DEFAULT_SCOPE
from agent.owner_watch import OwnerWatches

__all__ = ["RuleWatch"]

DueCallback = Callable[[frozenset[str], str], None]  # (scopes to settle, why)


class RuleWatch:
    """Keeps each active session's owner watched and its idle timeout timed;
    calls ``on_due(scopes, why)`` when a rule may have ended sessions."""

    def __init__(self, owners: OwnerWatches, clock: Clock, recheck: float, on_due: DueCallback) -> None:
        self._owners = owners
        self._clock = clock
        self._recheck = recheck
        self._on_due = on_due
        self._states: dict[str, ActiveSession] = {}  # scope -> its active session, as last told
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, states: dict[str, ActiveSession]) -> None:
        """Start from ``states`` (every scope's active session)."""
        for scope in set(self._states) - set(states):
            self._arm(scope, None)
        for scope, state in states.items():
            self._arm(scope, state)
        self._schedule()

    def on_change(self, change: Change) -> None:
        self._arm(change.scope, change.after)
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._owners.stop()

    def _arm(self, scope: str, state: ActiveSession | None) -> None:
        if state is None:
            self._states.pop(scope, None)
        else:
            self._states[scope] = state
        self._owners.watch(
            scope,
            state.owner if state is not None else None,
            lambda: self._on_due(frozenset({scope}), "the owner process exited"),
        )

    def _schedule(self, floor: float = 0.0) -> None:
        """The timer, for the earliest idle deadline (from the boot clock now),
        at least ``floor`` seconds away."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waits = [
            w for w in (s.seconds_to_idle_end(self._clock) for s in self._states.values()) if w is not None
        ]
        if waits:
            delay = min(max(min(waits), floor) + 0.01, self._recheck)
            self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        timed = frozenset(s for s, state in self._states.items() if state.session.idle_timeout is not None)
        self._on_due(timed or frozenset({DEFAULT_SCOPE}), "idle check")
        # Timed again: what did not end yet (a recheck after a suspend). One
        # that is overdue but could not be ended (a full disk) is the
        # reconciler's to retry: looked at again in a second, not spun on.
        self._schedule(floor=1.0)

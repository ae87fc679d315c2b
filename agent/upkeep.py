"""The daemon's upkeep timers: removing empty scopes, taking snapshots.

Neither polls. The sweeper is armed when a scope may have been left empty
(a session there ended, its directory changed) for when the first would
be due; the snapshot timer for when the next snapshot is due, and while
nothing changes it waits for the next change instead.
"""

from __future__ import annotations

import asyncio
import logging

from agent.changes import Change
from agent.clock import Clock
from agent.errors import SessionError
from agent.layout import DEFAULT_SCOPE
from agent.manager import SessionManager
from agent.reconciler import Reconciler

__all__ = ["SNAPSHOT_RECHECK", "SnapshotTimer", "Sweeper"]

log = logging.getLogger(__name__)

SNAPSHOT_RECHECK = 3600.0  # seconds: how often config.toml is looked at while snapshots are off


class Sweeper:
    """Removes the directories of scopes left empty (``ScopeDirs.sweep``)."""

    def __init__(self, manager: SessionManager, reconciler: Reconciler) -> None:
        self._manager = manager
        self._reconciler = reconciler
        self._timer: asyncio.TimerHandle | None = None
        self._at: float | None = None  # loop time the timer fires

    def on_change(self, change: Change) -> None:
        if change.scope != DEFAULT_SCOPE and change.after is None:
            self.plan()  # its scope may be left empty

    def plan(self, delay: float | None = None) -> None:
        """Sweep in ``delay`` seconds (``None``: once a scope left empty now
        is due), unless a sweep comes sooner."""
        if delay is None:
            try:
                delay = self._manager.scope_dirs.remove_after()
            except SessionError as exc:
                log.warning("could not plan the removal of empty scopes: %s", exc)
                return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay + 0.01
        if self._timer is not None and self._at is not None and self._at <= at:
            return
        self.stop()
        self._timer, self._at = loop.call_at(at, self.sweep), at

    def sweep(self) -> None:
        self._timer = self._at = None
        try:
            self._reconciler.check_data_dir()
            next_due = self._manager.scope_dirs.sweep(self._manager.remove_scope_dir)
        except SessionError as exc:
            log.warning("could not remove empty scopes: %s", exc)
            return
        if next_due is not None:
            self.plan(next_due)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._at = None


class SnapshotTimer:
    """Takes a snapshot when one is due and sessions changed since the last
    (see ``agent.snapshots``)."""

    def __init__(self, manager: SessionManager, clock: Clock) -> None:
        self._manager = manager
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._changed = True  # start-up takes one if it is due
        self._waiting_for_change = False

    def on_change(self, change: Change) -> None:
        self._changed = True
        if self._waiting_for_change:
            self._waiting_for_change = False
            self.look()

    def look(self) -> None:
        """Take one if due, then plan the next look."""
        self._timer = None
        if not self._changed:
            self._waiting_for_change = True  # the next change calls us again
            return
        from agent.snapshots import take_snapshot_if_due

        if take_snapshot_if_due(self._manager.data_dir, self._manager.store, self._clock.now()) is not None:
            self._changed = False
        delay = SNAPSHOT_RECHECK  # while off, or config.toml unusable: look again later
        try:
            from agent.snapshots import Snapshots

            due_in = Snapshots.configured(self._manager.data_dir).seconds_until_due(self._clock.now())
            if due_in is not None:
                delay = max(due_in, 1.0)
        except SessionError as exc:
            log.warning("cannot plan the next snapshot: %s", exc)
        self._timer = asyncio.get_running_loop().call_later(delay, self.look)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

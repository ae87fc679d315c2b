"""``ChangeFeed``: the manager's changes, passed on to the daemon's components.

The manager announces a change while it works (its lock held, the client
waiting for its reply); the feed only queues it, and passes the queue on at
the event loop's next turn -- after the reply has gone out -- to each
listener, in the order they were added.
"""

from __future__ import annotations

import asyncio
import logging

from agent.changes import Change

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent.changes import Listener

__all__ = ["ChangeFeed"]

log = logging.getLogger(__name__)


class ChangeFeed:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._queued: list[Change] = []
        self._flush: asyncio.Handle | None = None

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def __call__(self, change: Change) -> None:
        """The manager's listener: queue ``change``."""
        self._queued.append(change)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self._pass_on)

    def stop(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None

    def _pass_on(self) -> None:
        self._flush = None
        queued, self._queued = self._queued, []
        for change in queued:
            for listener in self._listeners:
                try:
                    listener(change)
                except Exception:  # a bug in one component: keep the traceback, keep running
                    log.exception("unexpected error while passing on a change of scope %s", change.scope)

"""``Feed``: what the manager and the store announce, passed on to the daemon's components.

The manager announces a ``Change`` while it works (its lock held, the client
waiting for its reply), and the store its committed events; a feed only
queues what it hears, and passes the queue on at the event loop's next
turn -- after the reply has gone out -- to each listener, in the order they
were added. It may hear from another thread (a request answered in one):
the turn is then asked for thread-safely. ``ChangeFeed`` carries the
manager's changes, ``EventFeed`` the event log's batches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from agent.changes import Change
from agent.events import Event

__all__ = ["ChangeFeed", "EventFeed", "Feed"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Feed(Generic[T]):
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._listeners: list[Callable[[T], None]] = []
        self._queued: list[T] = []
        self._lock = threading.Lock()
        self._flush: asyncio.Handle | None = None

    def add(self, listener: Callable[[T], None]) -> None:
        self._listeners.append(listener)

    def __call__(self, item: T) -> None:
        """The announcer's listener: queue ``item``."""
        with self._lock:
            self._queued.append(item)
            if self._flush is not None:
                return
            if threading.get_ident() == self._loop_thread:
                self._flush = self._loop.call_soon(self._pass_on)
            else:
                self._flush = self._loop.call_soon_threadsafe(self._pass_on)

    def stop(self) -> None:
        with self._lock:
            if self._flush is not None:
                self._flush.cancel()
                self._flush = None

    def _pass_on(self) -> None:
        with self._lock:
            self._flush = None
            queued, self._queued = self._queued, []
        for item in queued:
            for listener in self._listeners:
                try:
                    listener(item)
                except Exception:  # a bug in one component: keep the traceback, keep running
                    log.exception("unexpected error while passing on %r", type(item).__name__)


class ChangeFeed(Feed[Change]):
    """The manager's changes (``agent.changes``)."""


class EventFeed(Feed[tuple[Event, ...]]):
    """The event log's committed batches (``agent.event_log``)."""

"""The daemon's watch on the active session's owner process.

It learns of an exit without polling: a pidfd (``pidfd_open(2)``) becomes
readable when its process exits, and the event loop watches it like a
socket. Where pidfds are missing (Linux before 5.3), it falls back to
checking every ``FALLBACK_POLL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
from collections.abc import Callable
from datetime import datetime

from agent.changes import OwnerExits
from agent.clock import Clock
from agent.owner import OwnerIdentity

__all__ = ["FALLBACK_POLL", "OwnerWatch", "OwnerWatches"]

log = logging.getLogger(__name__)

FALLBACK_POLL = 5.0  # seconds, where pidfds are missing


class OwnerWatch:
    """Calls ``on_exit`` once when the watched owner exits, and remembers when."""

    def __init__(self, clock: Clock, on_exit: Callable[[], None]) -> None:
        self._clock = clock
        self._on_exit = on_exit
        self.identity: OwnerIdentity | None = None
        self._fd: int | None = None
        self._poll: asyncio.TimerHandle | None = None
        self._exited_at: datetime | None = None

    def watch(self, identity: OwnerIdentity | None) -> None:
        """Watch ``identity`` (``None``: nothing) instead of what was watched."""
        if identity == self.identity:
            return
        self.stop()
        self.identity = identity
        if identity is None:
            return
        loop = asyncio.get_running_loop()
        try:
            self._fd = os.pidfd_open(identity.pid)
        except (AttributeError, OSError) as exc:
            if isinstance(exc, ProcessLookupError):
                self._fd = None  # already gone: the check below tells
            else:
                log.debug("no pidfd for owner %d (%s); checking every %g s", identity.pid, exc, FALLBACK_POLL)
                self._poll = loop.call_later(FALLBACK_POLL, self._check)
                return
        else:
            loop.add_reader(self._fd, self._check)
        # Opened after the identity was taken: if the pid was reused in
        # between, the identity no longer matches, and that is an exit.
        if not identity.alive(self._clock):
            loop.call_soon(self._check)

    def exited_at(self, identity: OwnerIdentity) -> datetime | None:
        """When the watched ``identity`` exited, if it has and we saw it."""
        if identity != self.identity:
            return None
        if self._exited_at is None and self._gone():
            self._exited_at = self._clock.now()
        return self._exited_at

    def stop(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        self.identity = None
        self._exited_at = None

    def _gone(self) -> bool:
        assert self.identity is not None
        if self._fd is not None:
            poller = select.poll()  # not select(): a daemon with many subscribers has fds past 1,024
            poller.register(self._fd, select.POLLIN)
            if poller.poll(0):
                return True
        return not self.identity.alive(self._clock)

    def _check(self) -> None:
        if self.identity is None:
            return
        if self.exited_at(self.identity) is None:
            if self._fd is None:
                self._poll = asyncio.get_running_loop().call_later(FALLBACK_POLL, self._check)
            return
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
        self._on_exit()


class OwnerWatches(OwnerExits):
    """One ``OwnerWatch`` per scope with an owned active session; tells the
    manager when a watched owner exited (``OwnerExits``)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._watches: dict[str, OwnerWatch] = {}

    def watch(self, scope: str, identity: OwnerIdentity | None, on_exit: Callable[[], None]) -> None:
        """Watch ``identity`` as ``scope``'s owner (``None``: none); ``on_exit``
        once it exits."""
        watch = self._watches.get(scope)
        if identity is None:
            if watch is not None:
                self._watches.pop(scope).stop()
            return
        if watch is None:
            watch = self._watches[scope] = OwnerWatch(self._clock, on_exit)
        watch.watch(identity)

    def exited_at(self, identity: OwnerIdentity) -> datetime | None:
        for watch in self._watches.values():
            if watch.identity == identity:
                return watch.exited_at(identity)
        return None

    def stop(self) -> None:
        for watch in self._watches.values():
            watch.stop()
        self._watches.clear()

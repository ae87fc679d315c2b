"""``SyncService``: the daemon's part in sharing history through a sync dir.

It ships this machine's events (``agent.sync_ship``) a moment after they
are committed (``SHIP_DELAY``: the events of one burst go out as one
segment), and takes in the other machines' segments (``agent.sync_intake``)
when their folders change (watched with ``watchfiles``) -- and, in any
case, every ``[sync] rescan`` seconds: a network file system reports no changes
made on another machine, a sync folder comes back after an unmount, a
full disk gets room again. Both run in a worker thread, off the loop;
neither is on a transition's path (the service hears of events after
their commit).

``[sync]`` is read again at every turn: setting, changing or removing the
sync dir takes effect without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from agent.clock import Clock
from agent.config import load_settings
from agent.errors import SessionError
from agent.events import Event
from agent.store import SessionStore
from agent.sync_intake import Intake
from agent.sync_settings import SyncSettings

__all__ = ["RESCAN", "SyncService"]

log = logging.getLogger(__name__)

T = TypeVar("T")

RESCAN = 30.0  # seconds between two looks at config.toml while no sync dir is set
SHIP_DELAY = 0.05  # seconds: a burst's events go out together
# The watch's wake-ups while nothing happens (ms): watchfiles looks for
# changes every step, even when there are none. Measured with 100,000 remote
# sessions held: 20 ms cost 0.55 % of a core idle, 100 ms 0.35 % (as without
# a sync dir), and a session still reaches another machine 5 ms after the
# engine's own latency (250 ms made it a whole second more).
WATCH_STEP = 100


class SyncService:
    def __init__(self, store: SessionStore, data_dir: Path, clock: Clock) -> None:
        self._store = store
        self._data_dir = data_dir
        self._clock = clock
        self._wake = asyncio.Event()
        self._ship_due = True
        self._intake_due = True
        self._intake = Intake()
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._watched: tuple[Path | None, tuple[int, int] | None] = (None, None)
        self._ship_problem: str | None = None
        self._working: asyncio.Future[Any] | None = None  # the thread's work under way
        self._last_problem_said: str | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sync")

    def on_events(self, events: tuple[Event, ...]) -> None:
        """The event feed's listener: ship soon."""
        self._ship_due = True
        self._wake.set()

    def status(self) -> dict[str, Any] | None:
        """The ``sync`` part of ``status`` (``None``: no sync dir)."""
        from agent.sync_status import sync_status

        sync = self._settings()
        if sync is None:
            return None
        return sync_status(self._store, sync, self._clock.now(), self._ship_problem, self._intake.problems)

    async def stop(self) -> None:
        """Stop looking; wait for a shipment or intake under way in its thread
        (a thread cannot be cancelled: the store must outlive what it does)."""
        for task in (self._watch, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._working is not None:
            with contextlib.suppress(Exception):
                await self._working

    def _settings(self) -> SyncSettings | None:
        try:
            return load_settings(self._data_dir).sync
        except SessionError:
            return None

    async def _run(self) -> None:
        while True:
            sync = self._settings()
            self._follow_folder(sync)
            if sync is not None:
                await self._turn(sync)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), RESCAN if sync is None else sync.rescan)
            except TimeoutError:  # the rescan: both
                self._ship_due = self._intake_due = True
            if self._ship_due:
                await asyncio.sleep(SHIP_DELAY)

    async def _turn(self, sync: SyncSettings) -> None:
        from agent.sync_ship import SyncUnavailable, own_host, ship

        if self._ship_due:
            self._ship_due = False
            try:
                await self._in_thread(ship, self._store, sync, self._clock.now())
                self._ship_problem = None
            except (SyncUnavailable, SessionError) as exc:
                self._ship_problem = str(exc)
                if str(exc) != self._last_problem_said:
                    log.warning("sync: nothing shipped: %s", exc)
                self._last_problem_said = str(exc)
            except Exception:
                log.exception("sync: unexpected error while shipping; trying again later")
        if self._intake_due:
            self._intake_due = False
            try:
                own = own_host(self._store, sync)
                changed = await self._in_thread(
                    self._intake.take_in, self._store, sync, own, self._clock.now()
                )
                if changed:
                    log.debug("sync: %d remote sessions taken in", changed)
            except SessionError as exc:
                log.warning("sync: could not take in other machines' segments: %s", exc)
            except Exception:
                log.exception("sync: unexpected error while taking segments in; trying again later")

    async def _in_thread(self, work: Callable[..., T], *args: object) -> T:
        """``work`` in a worker thread, known to ``stop`` until it is over."""
        working = asyncio.ensure_future(asyncio.to_thread(work, *args))
        self._working = working
        return await asyncio.shield(working)

    def _follow_folder(self, sync: SyncSettings | None) -> None:
        """Watch the sync dir -- again when it is another directory now (it
        was removed and made anew, unmounted, mounted: a watch goes silent)."""
        folder = None if sync is None else sync.dir
        identity = _identity(folder)
        if (folder, identity) == self._watched and self._watch is not None and not self._watch.done():
            return
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._watched = (folder, identity)
        if folder is not None and identity is not None:
            self._watch = asyncio.create_task(self._watch_folder(folder), name="sync watch")

    async def _watch_folder(self, folder: Path) -> None:
        """Wake the intake when a file in the sync dir changes (our own
        writes too: cheap, a listing finds nothing new)."""
        import watchfiles

        try:
            async for _ in watchfiles.awatch(folder, debounce=50, step=WATCH_STEP, recursive=True):
                self._intake_due = True
                self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # gone, unmounted: the rescan looks again
            log.info("sync: stopped watching %s (%s); looking at it every [sync] rescan", folder, exc)


def _identity(folder: Path | None) -> tuple[int, int] | None:
    """The directory's device and inode (``None``: none is there)."""
    if folder is None:
        return None
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None

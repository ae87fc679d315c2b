"""Watching the current-session file for edits made by other programs.

watchfiles (inotify underneath) watches the data dir, not the file: a watch
on the file would follow its inode and go silent after the first atomic
replace. The data dir's parent is watched too, because a watch on a
directory that is moved or deleted goes silent without a word; seeing the
data dir's entry change in its parent is how the watcher notices, and then
it sets the watches up again (on the nearest existing ancestor while the
data dir is missing).

Events carry no decisions: each burst only means "look at the file again".
The manager decides from what is on disk, which is also how the daemon's
own writes are told apart from edits (see ``SessionManager``).

Latency is between one and two ``step``s (watchfiles' Rust loop wakes every
``step`` ms and yields once a wake finds no new events, or after
``debounce`` ms of continuous events). Each wake costs a little CPU even when
nothing happens, so ``step`` trades latency for idle cost; the defaults come
from the measurement in the README's Performance section.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, awatch

__all__ = ["DEFAULT_DEBOUNCE_MS", "DEFAULT_STEP_MS", "FileWatcher", "WatchSettings"]

log = logging.getLogger(__name__)

DEFAULT_STEP_MS = 30
DEFAULT_DEBOUNCE_MS = 200
STEP_ENV = "SESSION_AGENT_WATCH_STEP_MS"
DEBOUNCE_ENV = "SESSION_AGENT_WATCH_DEBOUNCE_MS"
_MAX_STEP_MS = 1000
_MAX_DEBOUNCE_MS = 10_000
_RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # after the watch itself fails


@dataclass(frozen=True)
class WatchSettings:
    """How often the watcher wakes (``step_ms``) and how long a burst of
    events may keep it collecting before it reports (``debounce_ms``)."""

    step_ms: int = DEFAULT_STEP_MS
    debounce_ms: int = DEFAULT_DEBOUNCE_MS

    def __post_init__(self) -> None:
        if not 1 <= self.step_ms <= _MAX_STEP_MS:
            raise ValueError(f"the watch step must be 1 to {_MAX_STEP_MS} ms, not {self.step_ms}")
        if not 0 <= self.debounce_ms <= _MAX_DEBOUNCE_MS:
            raise ValueError(f"the watch debounce must be 0 to {_MAX_DEBOUNCE_MS} ms, not {self.debounce_ms}")

    @classmethod
    def resolve(cls, step_ms: int | None = None, debounce_ms: int | None = None) -> WatchSettings:
        """Option > environment > default, like every other setting."""
        if step_ms is None:
            step_ms = _env_int(STEP_ENV, DEFAULT_STEP_MS)
        if debounce_ms is None:
            debounce_ms = _env_int(DEBOUNCE_ENV, DEFAULT_DEBOUNCE_MS)
        return cls(step_ms=step_ms, debounce_ms=debounce_ms)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number of milliseconds") from None


DirIdentity = tuple[int, int]  # st_dev, st_ino


def dir_identity(path: Path) -> DirIdentity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class FileWatcher:
    """Calls ``on_change`` after each burst of events on ``file``.

    ``on_change`` is also called each time the watches are (re)established,
    to catch edits made while nothing watched. ``on_dir_replaced`` is called
    when the data dir comes back as a different directory than the one the
    watcher started with (the store that was in it is gone with it).
    """

    def __init__(
        self,
        file: Path,
        settings: WatchSettings,
        *,
        on_change: Callable[[], None],
        on_dir_replaced: Callable[[], None],
    ) -> None:
        self.file = file
        self.dir = file.parent
        self.settings = settings
        self._on_change = on_change
        self._on_dir_replaced = on_dir_replaced
        self._identity = dir_identity(self.dir)
        # The file and every directory on the way to it: an event on one of
        # the directories means the watches must be set up again.
        self._layout = {str(self.dir), *(str(p) for p in self.dir.parents)}
        self._wanted = {str(file), *self._layout}
        self._missing_reported = False
        self.established = asyncio.Event()  # set once the first watches are up

    async def run(self) -> None:
        """Watch until cancelled."""
        failures = 0
        while True:
            try:
                await self._watch_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watch itself failed: inotify limits, permissions
                delay = _RETRY_DELAYS[min(failures, len(_RETRY_DELAYS) - 1)]
                failures += 1
                log.error("watching %s failed: %s; retrying in %g s", self.dir, exc, delay)
                self.established.set()  # start-up goes on; edits wait for the retry
                await asyncio.sleep(delay)

    async def _watch_once(self) -> None:
        """One set of watches, until the directory layout changes."""
        targets = self._targets()
        stop = asyncio.Event()  # our own: cancelling awatch sets the one it has
        changes = awatch(
            *targets,
            watch_filter=self._wanted_event,
            debounce=self.settings.debounce_ms,
            step=self.settings.step_ms,
            stop_event=stop,
            recursive=False,
        )
        pending = asyncio.ensure_future(anext(changes))
        try:
            # awatch sets up its inotify watches synchronously on its first
            # step, which runs before we resume (tasks run in FIFO order): from
            # here on no edit goes unseen, so look at the file once now.
            await asyncio.sleep(0)
            present = self._check_dir()
            if present:
                self._on_change()
            self.established.set()
            while True:
                batch = await pending
                if any(path in self._layout for _, path in batch):
                    log.debug("the directories around %s changed: watching again", self.file)
                    return
                if present:
                    self._on_change()
                pending = asyncio.ensure_future(anext(changes))
        finally:
            stop.set()
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
            await changes.aclose()

    def _targets(self) -> list[str]:
        parent = next(p for p in self.dir.parents if p.is_dir())
        if self.dir.is_dir():
            return [str(self.dir), str(parent)]
        return [str(parent)]

    def _check_dir(self) -> bool:
        """Report a vanished or replaced data dir; ``False`` while it is missing
        (then only the ancestors are watched, for its return)."""
        identity = dir_identity(self.dir)
        if identity is None:
            if not self._missing_reported:
                log.error("the data dir %s vanished; waiting for it to come back", self.dir)
                self._missing_reported = True
            return False
        if self._missing_reported:
            log.warning("the data dir %s is back", self.dir)
            self._missing_reported = False
        if identity != self._identity:
            self._on_dir_replaced()
        return True

    def _wanted_event(self, change: Change, path: str) -> bool:
        return path in self._wanted

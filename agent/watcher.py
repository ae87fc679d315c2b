"""Watching the current-session files for edits made by other programs.

watchfiles (inotify underneath) watches directories, not the files: a watch
on a file would follow its inode and go silent after the first atomic
replace. One watch set, without recursion (the store's own directory under
the data dir must not wake us at every write): the data dir (the default
scope's file), its parent, the ``scopes`` directory and each scope's
directory in it. A watch on a directory that is moved or deleted goes silent
without a word; seeing the data dir's entry change in its parent is how the
watcher notices, and then it sets the watches up again (on the nearest
existing ancestor while the data dir is missing). The same happens when a
scope's directory comes or goes: the watches are set up again, so a scope
created by an editor (``mkdir -p``, then ``start`` written) is watched from
then on, and everything is looked at once, for what changed in between.

Events carry no decisions: each burst only means "look at these scopes'
files again".
The manager decides from what is on disk, which is also how the daemon's
own writes are told apart from edits (see ``SessionManager``).

Latency is between one and two ``step``s (watchfiles' Rust loop wakes every
``step`` ms and yields once a wake finds no new events, or after
``debounce`` ms of continuous events). Each wake costs a little CPU even when
nothing happens, so ``step`` trades latency for idle cost; the defaults come
from the measurement in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, awatch

from agent.environment import WATCH_DEBOUNCE_ENV, WATCH_STEP_ENV
from agent.layout import CURRENT_FILE_NAME, SCOPES_DIR
from agent.scope import DEFAULT_SCOPE, scope_problem

__all__ = ["DEFAULT_DEBOUNCE_MS", "DEFAULT_STEP_MS", "FileWatcher", "WatchSettings"]

log = logging.getLogger(__name__)

DEFAULT_STEP_MS = 30
DEFAULT_DEBOUNCE_MS = 200
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
            step_ms = _env_int(WATCH_STEP_ENV, DEFAULT_STEP_MS)
        if debounce_ms is None:
            debounce_ms = _env_int(WATCH_DEBOUNCE_ENV, DEFAULT_DEBOUNCE_MS)
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
    """Calls ``on_change(scopes)`` after each burst of events on the current
    files of ``scopes``.

    ``on_change(None)`` (every scope) is called each time the watches are
    (re)established, to catch edits made while nothing watched.
    ``on_dir_replaced`` is called when the data dir comes back as a
    different directory than the one the watcher started with (the store
    that was in it is gone with it).
    """

    def __init__(
        self,
        data_dir: Path,
        settings: WatchSettings,
        *,
        on_change: Callable[[frozenset[str] | None], None],
        on_dir_replaced: Callable[[], None],
    ) -> None:
        self.dir = data_dir
        self.file = data_dir / CURRENT_FILE_NAME
        self.scopes_dir = data_dir / SCOPES_DIR
        self.settings = settings
        self._on_change = on_change
        self._on_dir_replaced = on_dir_replaced
        self._identity = dir_identity(self.dir)
        # Every directory on the way to the data dir: an event on one of
        # them means the watches must be set up again.
        self._layout = {str(self.dir), *(str(p) for p in self.dir.parents)}
        self._scopes_path = str(self.scopes_dir)
        self._watched_scopes: frozenset[str] = frozenset()
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
            # here on no edit goes unseen, so look at the files once now.
            await asyncio.sleep(0)
            present = self._check_dir()
            if present:
                self._on_change(None)
            self.established.set()
            while True:
                batch = await pending
                if any(path in self._layout or path == self._scopes_path for _, path in batch):
                    log.debug("the directories around %s changed: watching again", self.file)
                    return
                scopes = frozenset(filter(None, (self._scope_of(path) for _, path in batch)))
                came_or_went = any(os.path.dirname(path) == self._scopes_path for _, path in batch)
                if came_or_went and self._scope_dirs() != self._watched_scopes:
                    log.debug("scopes came or went in %s: watching again", self.scopes_dir)
                    return
                if present and scopes:
                    self._on_change(scopes)
                pending = asyncio.ensure_future(anext(changes))
        finally:
            stop.set()
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
            await changes.aclose()

    def _targets(self) -> list[str]:
        parent = next(p for p in self.dir.parents if p.is_dir())
        self._watched_scopes = frozenset()
        if not self.dir.is_dir():
            return [str(parent)]
        targets = [str(self.dir), str(parent)]
        if _is_real_dir(self.scopes_dir):
            self._watched_scopes = self._scope_dirs()
            targets.append(self._scopes_path)
            targets += [str(self.scopes_dir / name) for name in sorted(self._watched_scopes)]
        return targets

    def _scope_dirs(self) -> frozenset[str]:
        """The scopes with a directory (a real one: a symlink is not followed)."""
        try:
            with os.scandir(self.scopes_dir) as entries:
                return frozenset(
                    e.name
                    for e in entries
                    if e.is_dir(follow_symlinks=False) and scope_problem(e.name) is None
                )
        except OSError:
            return frozenset()

    def _scope_of(self, path: str) -> str | None:
        """The scope whose file ``path`` is, or whose directory it is."""
        if path == str(self.file):
            return DEFAULT_SCOPE
        head, name = os.path.split(path)
        if head == self._scopes_path:
            return name if scope_problem(name) is None else None
        grand, scope = os.path.split(head)
        if name == CURRENT_FILE_NAME and grand == self._scopes_path and scope_problem(scope) is None:
            return scope
        return None

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
        return path in self._layout or path == self._scopes_path or self._scope_of(path) is not None


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False

"""``ScopeDirs``: the directories of the scopes other than the default one.

A scope's directory (``<data dir>/scopes/<name>``) is made at its first
start, private, never through a symlink, and at most ``MAX_SCOPES`` of them
at once. A scope left empty -- no session active, nothing in the directory
-- loses its directory after ``config.toml``'s ``scopes.remove_empty_after``
(judged by the directory's mtime, which moves when its file goes).
``rmdir`` refuses a directory with anything in it, so a ``start`` written a
moment before removal is never lost to it.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

from agent.config import REMOVE_EMPTY_SCOPES_AFTER, load_settings
from agent.current_file import CurrentFile
from agent.errors import ConfigError, InvalidArgumentError, SessionIOError
from agent.layout import DEFAULT_SCOPE, SCOPES_DIR, scope_dir
from agent.paths import ensure_private_dir
from agent.scope import scope_problem

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MAX_SCOPES", "ScopeDirs"]

log = logging.getLogger(__name__)

MAX_SCOPES = 1024  # scope directories at once; a start in one more is refused


class ScopeDirs:
    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._root = data_dir / SCOPES_DIR
        self._prepared: set[str] = set()  # scopes whose directory this process made sure of

    @property
    def limit(self) -> int:
        """How many scopes may have a directory (or an active session) at once."""
        return MAX_SCOPES

    def names(self) -> list[str]:
        """The names of the directories under ``scopes`` (valid scope names or not)."""
        try:
            with os.scandir(self._root) as entries:
                return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise SessionIOError(f"cannot list {self._root}: {exc.strerror}") from None

    def scopes(self) -> list[str]:
        """The scopes that have a directory, by name. A directory whose name
        is not a scope name is left alone (logged at debug)."""
        found = []
        for name in sorted(self.names()):
            if scope_problem(name) is None:
                found.append(name)
            else:
                log.debug("ignored %s: %s is not a scope name", self._root / name, name)
        return found

    def check(self, scope: str) -> None:
        """A scope's directory (and ``scopes``) must be a real directory: a
        symlink planted there is refused, never followed."""
        if scope == DEFAULT_SCOPE:
            return
        for path in (self._root, scope_dir(self._data_dir, scope)):
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                return
            except OSError as exc:
                raise SessionIOError(f"cannot look at {path}: {exc.strerror}") from None
            if not stat.S_ISDIR(mode):
                raise SessionIOError(
                    f"{path} is not a directory (a symlink is not followed here); "
                    f"remove it so that scope {scope} can be used"
                )

    def prepare(self, scope: str, file: CurrentFile) -> None:
        """Create ``scope``'s directory (its first use), private, refusing
        symlinks, and at most ``MAX_SCOPES`` of them; clear what a crash
        left in it."""
        directory = scope_dir(self._data_dir, scope)
        if scope == DEFAULT_SCOPE or (scope in self._prepared and os.path.isdir(directory)):
            return
        if not os.path.lexists(directory) and len(self.names()) >= MAX_SCOPES:
            raise InvalidArgumentError(
                f"there are already {MAX_SCOPES} scopes with a directory in {directory.parent}; "
                "end sessions in scopes no longer used (their directories are then removed) "
                "or remove those directories"
            )
        ensure_private_dir(directory.parent, allow_symlink=False)
        ensure_private_dir(directory, allow_symlink=False)
        if file.remove_leftovers():
            log.debug("removed leftover temporary files in %s", directory)
        self._prepared.add(scope)

    def remove(self, scope: str) -> bool:
        """``rmdir`` the directory of ``scope``; whether it went (it does not
        when anything is in it)."""
        if scope == DEFAULT_SCOPE:
            return False
        try:
            os.rmdir(scope_dir(self._data_dir, scope))
        except OSError:
            return False
        self._prepared.discard(scope)
        return True

    def remove_after(self) -> int:
        """How long, in seconds, a scope stays empty before its directory is
        removed (``config.toml``'s ``scopes.remove_empty_after``)."""
        try:
            return load_settings(self._data_dir).remove_empty_scopes_after
        except ConfigError as exc:
            log.error("%s; removing empty scopes after the default %d s", exc, REMOVE_EMPTY_SCOPES_AFTER)
            return REMOVE_EMPTY_SCOPES_AFTER

    def sweep(self, remove: Callable[[str], bool]) -> float | None:
        """Call ``remove`` (which checks that no session is active there) for
        each scope whose directory is empty and unchanged for longer than
        ``remove_after``. Seconds until the next empty one is due, ``None``
        when none is left to wait for."""
        names = self.names()
        if not names:
            return None
        after = self.remove_after()
        next_due: float | None = None
        for name in names:
            if scope_problem(name) is not None:
                continue
            directory = scope_dir(self._data_dir, name)
            try:
                changed = os.lstat(directory).st_mtime
                empty = not os.listdir(directory)
            except OSError:
                continue
            if not empty:
                continue
            due = changed + after - time.time()
            if due <= 0 and remove(name):
                log.info("removed the directory of scope %s: empty for %d s", name, after)
            elif due > 0:
                next_due = due if next_due is None else min(next_due, due)
        return next_due

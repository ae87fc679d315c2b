"""Snapshots of the store: consistent copies to restore from.

A snapshot is a RocksDB checkpoint in ``<data_dir>/snapshots/<UTC time>``:
the memtable is flushed first, so the write-ahead log is never the only
copy of the work since the last one, and the store's files are hard links
(immutable files; a snapshot costs little until compaction replaces
them). Each is made under a temporary name and renamed when complete, so a
crash never leaves half a snapshot under a real name.

The daemon takes one when the newest is older than ``config.toml``'s
``[snapshots] every`` (default 1 h) and a session changed since, and at
start-up; embedded commands take one as they close, on the same rule.
``[snapshots] keep`` (default 6) are kept; ``every = 0`` turns them off.

Hard links share their inode: a store file damaged *in place* on disk is
damaged in the snapshots that link it too. ``doctor`` reads each snapshot
through, and ``repair`` uses the newest one that reads clean.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from agent.errors import SessionIOError, StorageError
from agent.layout import SNAPSHOTS_DIR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent.store import SessionStore

__all__ = ["Snapshots", "snapshot_time", "take_snapshot_if_due"]

_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_TEMP_PREFIX = ".partial-"

log = logging.getLogger(__name__)


def _parse_name(name: str) -> datetime:
    """``datetime.strptime(name, _FORMAT)``, by hand: strptime imports
    ``_strptime`` (3 ms, on every embedded command's close)."""
    date, tee, rest = name.partition("T")
    clock, dot, fraction = rest.partition(".")
    digits = date + clock + fraction.removesuffix("Z")
    if not (tee and dot and fraction.endswith("Z") and len(date) == 8 and len(clock) == 6):
        raise ValueError(f"{name!r} is not a snapshot's name")
    if len(fraction) != 7 or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"{name!r} is not a snapshot's name")
    return datetime(
        int(date[:4]),
        int(date[4:6]),
        int(date[6:]),
        int(clock[:2]),
        int(clock[2:4]),
        int(clock[4:]),
        int(fraction[:6]),
        tzinfo=UTC,
    )


def take_snapshot_if_due(data_dir: Path, store: SessionStore, now: datetime) -> Path | None:
    """A snapshot of ``store`` if ``config.toml``'s interval has passed since
    the newest; never raises (a missed snapshot fails nothing)."""
    from agent.errors import ConfigError

    try:
        snapshots = Snapshots.configured(data_dir)
    except ConfigError as exc:
        log.warning("no snapshot taken: %s", exc)
        return None
    return snapshots.take_if_due(store, now)


def snapshot_time(path: Path) -> datetime | None:
    """When the snapshot at ``path`` was taken (from its name)."""
    try:
        return _parse_name(path.name)
    except ValueError:
        return None


class Snapshots:
    """The snapshots of one data dir's store."""

    def __init__(self, data_dir: Path, every: int = 0, keep: int = 0) -> None:
        self.directory = data_dir / SNAPSHOTS_DIR
        self.every = every  # seconds; 0: none taken
        self.keep = keep

    @classmethod
    def configured(cls, data_dir: Path) -> Snapshots:
        """As ``config.toml`` sets them; ``ConfigError`` when it cannot be used."""
        from agent.config import load_settings

        settings = load_settings(data_dir)
        return cls(data_dir, settings.snapshot_every, settings.snapshot_keep)

    def all(self) -> list[Path]:
        """Complete snapshots, newest first."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SessionIOError(f"cannot list {self.directory}: {exc.strerror}") from None
        found = [
            Path(e.path) for e in entries if e.is_dir(follow_symlinks=False) and snapshot_time(Path(e.path))
        ]
        return sorted(found, key=lambda p: p.name, reverse=True)

    def due(self, now: datetime) -> bool:
        """Whether one should be taken now (the newest is ``every`` old)."""
        return self.seconds_until_due(now) == 0.0

    def seconds_until_due(self, now: datetime) -> float | None:
        """How long until one is due; ``None`` while they are turned off."""
        if self.every <= 0:
            return None
        newest = self.all()
        taken = snapshot_time(newest[0]) if newest else None
        if taken is None:
            return 0.0
        return max(0.0, self.every - (now - taken).total_seconds())

    def take(self, store: SessionStore, now: datetime) -> Path:
        """A new snapshot of ``store``, then the oldest beyond ``keep`` removed."""
        from agent.paths import ensure_private_dir

        ensure_private_dir(self.directory, allow_symlink=False)
        name = now.strftime(_FORMAT)
        partial = self.directory / f"{_TEMP_PREFIX}{name}"
        final = self.directory / name
        shutil.rmtree(partial, ignore_errors=True)
        store.checkpoint(partial)
        try:
            os.rename(partial, final)
            _fsync_dir(self.directory)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise SessionIOError(f"cannot complete the snapshot {final}: {exc.strerror}") from None
        self._prune()
        return final

    def take_if_due(self, store: SessionStore, now: datetime) -> Path | None:
        """``take`` when ``due``; a failure is logged, not raised: a missed
        snapshot must not fail the command or the daemon."""
        try:
            if not self.due(now):
                return None
            taken = self.take(store, now)
        except (StorageError, SessionIOError) as exc:
            log.warning("could not take a snapshot of the store: %s", exc)
            return None
        log.info("took a snapshot of the store: %s", taken)
        return taken

    def _prune(self) -> None:
        for old in self.all()[max(self.keep, 1) :]:
            shutil.rmtree(old, ignore_errors=True)
        try:
            leftovers = [e.path for e in os.scandir(self.directory) if e.name.startswith(_TEMP_PREFIX)]
        except OSError:
            return
        for leftover in leftovers:  # a crash in the middle of an earlier one
            shutil.rmtree(leftover, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Taking in: the other machines' segments, from their folders of the sync
dir, into the store's view of remote sessions (``agent.remote_view``).

Each subfolder of the sync dir but this machine's is a host's (hidden ones
-- ``.stfolder``, ``.stversions`` -- are a sync engine's). Of each, the
segments not yet taken in are read, checked whole (``agent.segments``) and
kept; the rest of the folder is passed over: temp files and partial
downloads silently (they become segments when whole), conflict copies and
stray files with a note in ``sync status``. A segment that is damaged,
truncated, oversized or says another host is skipped with a warning naming
the file, and read again if it changes (a sync engine finishing it).
Nothing local is ever touched.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from agent.errors import StorageError
from agent.segments import FileKind, Segment, SegmentError, classify, read_segment, segment_name
from agent.store import SessionStore
from agent.sync_settings import SyncSettings, host_name_problem

__all__ = ["HostFolder", "Intake", "list_hosts", "take_in_quietly"]

log = logging.getLogger(__name__)

MAX_WORKERS = 4  # processes reading segments at once, for a large intake
SETTLE_AFTER = 10_000  # sessions taken in at once, after which the memtable is written out


class HostFolder:
    """What one host's folder holds: its segments' numbers, and what else."""

    def __init__(self, host: str, path: Path) -> None:
        self.host = host
        self.path = path
        self.segments: list[int] = []
        self.conflicts: list[str] = []
        self.strays: list[str] = []
        self.problem: str | None = None

    def scan(self) -> HostFolder:
        try:
            names = sorted(os.listdir(self.path))
        except OSError as exc:
            self.problem = f"cannot read {self.path}: {exc.strerror}"
            return self
        for name in names:
            kind, number = classify(name)
            if kind is FileKind.SEGMENT and number is not None:
                self.segments.append(number)
            elif kind is FileKind.CONFLICT:
                self.conflicts.append(name)
            elif kind is FileKind.STRAY:
                self.strays.append(name)
        return self


def list_hosts(sync: SyncSettings, own: str) -> tuple[list[HostFolder], list[str]]:
    """The other hosts' folders, and notes on what else is in the sync dir."""
    notes: list[str] = []
    try:
        names = sorted(os.listdir(sync.dir))
    except OSError as exc:
        return [], [f"cannot read the sync folder {sync.dir}: {exc.strerror}"]
    found = []
    for name in names:
        if name.startswith(".") or name == own:
            continue
        path = sync.dir / name
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            if classify(name)[0] is not FileKind.TEMP:
                notes.append(f"{path} is not a host's folder: passed over")
            continue
        problem = host_name_problem(name)
        if problem:
            notes.append(f"{path}: {problem}: passed over")
            continue
        found.append(HostFolder(name, path).scan())
    return found, notes


class Intake:
    """Takes in segments; remembers (for the life of the process) the files
    it warned about, so a bad file is said once -- and again when it changes."""

    def __init__(self) -> None:
        self._warned: dict[Path, tuple[int, int]] = {}
        self.problems: dict[str, list[str]] = {}  # host -> the files skipped, and why

    def take_in(self, store: SessionStore, sync: SyncSettings, own: str, now: datetime) -> int:
        """Take in every segment not taken in yet; the sessions changed."""
        hosts, notes = list_hosts(sync, own)
        for note in notes:
            self._once(Path(note.split(":", 1)[0]), note)
        pending: list[tuple[HostFolder, int]] = []
        for folder in hosts:
            self.problems.setdefault(folder.host, [])
            if folder.problem:
                self._once(folder.path, folder.problem)
                continue
            intake = store.remote.intake(folder.host)
            pending += [(folder, n) for n in folder.segments if not intake.has(n)]
        changed = 0
        for (folder, number), outcome in _read_all(pending):
            path = folder.path / segment_name(number)
            if isinstance(outcome, Segment):
                changed += store.remote.take(outcome, now)
                self._warned.pop(path, None)
            elif outcome is not None and self._once(path, f"sync: skipped: {outcome}"):
                problems = self.problems[folder.host]
                problems[:] = [*problems[-7:], outcome]
        if changed >= SETTLE_AFTER:
            store.remote.settle()
        return changed

    def _once(self, path: Path, message: str) -> bool:
        try:
            info = os.lstat(path)
            version = (info.st_size, info.st_mtime_ns)
        except OSError:
            version = (-1, -1)
        if self._warned.get(path) == version:
            return False
        self._warned[path] = version
        log.warning("%s", message)
        return True


def _read(path: str, host: str, number: int) -> Segment | str | None:
    """A segment, or what is wrong with its file (``None``: gone)."""
    try:
        return read_segment(Path(path), host, number)
    except FileNotFoundError:
        return None  # replaced by a baseline while we looked
    except SegmentError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"


def _read_all(
    pending: list[tuple[HostFolder, int]],
) -> Iterator[tuple[tuple[HostFolder, int], Segment | str | None]]:
    """Each pending segment read and checked, in order: many of them (a new
    machine's first intake, a week of another's) by worker processes beside
    this one, each segment's sessions checked and encoded there."""
    jobs = [(str(folder.path / segment_name(n)), folder.host, n) for folder, n in pending]
    workers = min(os.cpu_count() or 1, MAX_WORKERS, len(pending) // 2)
    if workers < 2:
        for item, job in zip(pending, jobs, strict=True):
            yield item, _read(*job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fork of the daemon would copy its threads' locks (RocksDB's, the watcher's)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcomes = pool.map(_read, *zip(*jobs, strict=True))
        yield from zip(pending, outcomes, strict=True)


def take_in_quietly(store: SessionStore, sync: SyncSettings, own: str, now: datetime) -> None:
    """``take_in`` for a command: a store that cannot be written is no failure
    of the command that only reads (it answers with what was taken in)."""
    try:
        Intake().take_in(store, sync, own, now)
    except StorageError as exc:
        log.warning("sync: could not take in other machines' segments: %s", exc)

"""Opening and closing the RocksDB store: options, the one-process lock, errors.

Every open uses the same raw-mode options (a single open with other options
rewrites ``rocksdict-config.json`` and breaks later opens), and one process
at a time has the store open (see ``open_db``). What is stored, and how, is
``agent.store``'s.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from rocksdict import BottommostLevelCompaction, CompactOptions, DBRecoveryMode, Options, Rdict

from agent.errors import StorageError, StoreDamagedError, StoreLockedError

__all__ = [
    "CF_EVENTS",
    "CF_META",
    "CF_REMOTE",
    "CF_SCOPES",
    "CF_SESSIONS",
    "MAX_SMALL_FILES",
    "close_db",
    "column_families",
    "holds_a_store",
    "merge_small_files",
    "open_db",
    "open_db_read_only",
    "options",
    "release_lock",
    "store_lock",
]

log = logging.getLogger(__name__)

CF_SESSIONS = "sessions"
CF_META = "meta"
CF_SCOPES = "scopes"
CF_EVENTS = "events"
CF_REMOTE = "remote"  # other machines' sessions (agent.remote_view)

MAX_SMALL_FILES = 16  # per column family, before a close merges them
_MERGE_ALL_BELOW = 4 << 20  # bytes: a family this small is merged whole (about 100,000 sessions)
_held_locks: dict[Path, int] = {}  # store path -> fd holding its flock, while open here
_pinned_locks: set[Path] = set()  # held by store_lock: close_db leaves them held


def options(*, create: bool) -> Options:
    """The options every open uses (the raw mode must never change; see
    the module's docstring), chosen for a store whose every acknowledged
    write was synced:

    * ``create``: make a new store only where there is none at all. With
      RocksDB's default, a store that lost its ``CURRENT`` file is taken
      for none: a new empty store is made over it, and the old files are
      then deleted as obsolete -- every session gone, without an error.
    * the write-ahead log's recovery mode is ``tolerate_corrupted_tail_records``:
      the one damage a crash can leave in the log of a synced store is a
      torn last record, a write that was never acknowledged. Damage
      anywhere else means acknowledged writes were lost, and the open is
      refused; the default (``point_in_time``) would silently stop at the
      damage and drop every later write, completed sessions coming back
      active.
    * paranoid checks: a damaged file found while the store runs stops its
      writes instead of spreading the damage.
    """
    chosen = Options(raw_mode=True)
    chosen.create_if_missing(create)
    chosen.create_missing_column_families(True)
    chosen.set_wal_recovery_mode(DBRecoveryMode.tolerate_corrupted_tail_records())
    chosen.set_paranoid_checks(True)
    chosen.set_keep_log_file_num(2)
    chosen.set_max_log_file_size(1 << 20)
    return chosen


def column_families(present: list[str] | None = None) -> dict[str, Options]:
    """Every family, or of those the ``present`` ones (a read-only open of a
    store written before a family existed cannot create it)."""
    names = (CF_SESSIONS, CF_META, CF_SCOPES, CF_EVENTS, CF_REMOTE)
    return {name: Options(raw_mode=True) for name in names if present is None or name in present}


def holds_a_store(db_path: Path) -> bool:
    """Whether ``db_path`` has any of a store's own files: then it is opened
    as the store it is, or refused -- never made anew. (A first open that
    died before writing anything leaves only RocksDB's info log, its LOCK
    and rocksdict's config: that is still no store.)"""
    try:
        names = os.listdir(db_path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot read the store's directory {db_path}: {exc.strerror}") from None
    return any(
        name == "CURRENT" or name.startswith("MANIFEST-") or name.endswith((".sst", ".log")) for name in names
    )


def open_db(path: str | os.PathLike[str], *, wait: float = 0.0) -> Rdict:
    """Open the store at ``path``, creating it only where there is none.

    One process at a time has a store open: a ``flock`` on ``<path>.lock``
    (holding the holder's pid, for error messages) is taken before RocksDB
    opens and kept until ``close_db``. If another process holds it, retry
    for up to ``wait`` seconds, then raise ``StoreLockedError``. RocksDB's
    own LOCK alone is not enough: rocksdict rewrites its config file and
    RocksDB rotates its info log *before* taking that lock, so two processes
    opening at once would step on each other's files.

    A store that exists but cannot be opened as it is raises
    ``StoreDamagedError`` and is left untouched (see ``options``).
    """
    db_path = Path(path).absolute()
    ours = db_path in _held_locks  # reopened in this process without close_db
    if not ours:
        _held_locks[db_path] = _take_lock(db_path, wait)
    try:
        existing = holds_a_store(db_path)
        return Rdict(str(db_path), options(create=not existing), column_families=column_families())
    except Exception as exc:
        if not ours:
            os.close(_held_locks.pop(db_path))
        if isinstance(exc, StorageError):
            raise
        raise _open_error(db_path, exc) from None


def open_db_read_only(path: str | os.PathLike[str]) -> Rdict:
    """Open the store at ``path`` to read it as it is on disk, even while
    another process (the daemon) has it open: no lock, nothing written,
    never created. ``StoreDamagedError`` as ``open_db``."""
    from rocksdict import AccessType

    db_path = Path(path).absolute()
    if not holds_a_store(db_path):
        raise StorageError(f"there is no store at {db_path}")
    try:
        present = Rdict.list_cf(str(db_path), options(create=False))
        return Rdict(
            str(db_path),
            options(create=False),
            column_families=column_families(present),
            access_type=AccessType.read_only(),
        )
    except Exception as exc:
        raise _open_error(db_path, exc) from None


def _open_error(db_path: Path, exc: Exception) -> StorageError:
    """What a failed open means, in RocksDB's words (it raises plain
    ``Exception``s: the message's status prefix tells them apart)."""
    message = str(exc)
    if "lock" in message.lower() and "IO error" in message:
        return StoreLockedError(db_path, holder_pid=None)
    if message.startswith(("Corruption", "Invalid argument", "Not implemented")) or (
        "No such file or directory" in message
    ):
        return StoreDamagedError(db_path, _plain_problem(db_path, message))
    return StorageError(f"cannot open the store {db_path}: {message}")


def _plain_problem(db_path: Path, message: str) -> str:
    if "CURRENT: does not exist" in message or "CURRENT: No such file" in message:
        return "its CURRENT file, which names the rest, is missing"
    return message.replace(str(db_path) + "/", "")


@contextlib.contextmanager
def store_lock(path: str | os.PathLike[str], wait: float) -> Iterator[None]:
    """Hold the store's lock for a while (``repair`` moves the store away
    and back under it); ``open_db`` in this process then opens it as its own."""
    db_path = Path(path).absolute()
    _held_locks[db_path] = _take_lock(db_path, wait)
    _pinned_locks.add(db_path)
    try:
        yield
    finally:
        _pinned_locks.discard(db_path)
        fd = _held_locks.pop(db_path, None)
        if fd is not None:
            os.close(fd)


def close_db(db: Rdict) -> None:
    """Close ``db`` and let other processes open it (the lock is let go
    even when closing fails: the process is done with the store)."""
    path = Path(db.path())
    try:
        db.close()
    except Exception as exc:
        raise StorageError(f"cannot close the store: {exc}") from None
    finally:
        release_lock(path)


def release_lock(path: Path) -> None:
    """Let other processes open the store at ``path``."""
    if path in _pinned_locks:
        return  # held by store_lock around this open: released there
    fd = _held_locks.pop(path, None)
    if fd is not None:
        os.close(fd)  # releases the flock


def _take_lock(db_path: Path, wait: float) -> int:
    lock_path = db_path.with_name(db_path.name + ".lock")
    try:
        db_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        reason = "it is a symlink" if exc.errno == errno.ELOOP else exc.strerror
        raise StorageError(f"cannot lock {lock_path}: {reason}") from None
    deadline = time.monotonic() + wait
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = _read_pid(fd)
                os.close(fd)
                raise StoreLockedError(db_path, holder) from None
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.02)
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot lock {lock_path}: {exc.strerror}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


def merge_small_files(families: Iterable[tuple[Rdict, bytes | None]]) -> None:
    """Merge the small files that short-lived processes leave behind.

    Each close flushes what was written here into a new file. Keys are
    ordered by start time, so RocksDB moves each such file down whole
    (nothing overlaps it) and never merges them: an embedded CLI command
    per file, every one of them opened by the next command (measured:
    open grew from 7 to 18 ms over 600 commands). Past
    ``MAX_SMALL_FILES``, close merges them: the whole family while it is
    small, else from the smallest key written here on -- the recent end,
    where those files are, not the whole history.
    """
    try:
        for family, lowest in families:
            if _file_count(family) <= MAX_SMALL_FILES:
                continue
            size = int(family.property_int_value("rocksdb.live-sst-files-size") or 0)
            begin = None if size <= _MERGE_ALL_BELOW else lowest
            compaction = CompactOptions()
            compaction.set_bottommost_level_compaction(BottommostLevelCompaction.force())
            family.compact_range(begin, None, compaction)
    except Exception as exc:  # a missed tidy-up is not worth failing a command for
        log.warning("could not merge the store's small files: %s", exc)


def _file_count(family: Rdict) -> int:
    return sum(int(family.property_int_value(f"rocksdb.num-files-at-level{n}") or 0) for n in range(7))

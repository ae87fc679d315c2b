"""The RocksDB store: opening it, durable writes, decoding, ordered scans.

Layout: column family ``sessions`` maps the session id (ASCII of the
canonical UUID) to an encoded record; ``meta`` holds the few keys the
manager needs to find the active session without a scan. Ids are UUIDv7,
so the newest sessions are at the end of ``sessions`` and listing recent
ones never touches older history.

Every open uses the same raw-mode options (a single open with other options
rewrites ``rocksdict-config.json`` and breaks later opens), and every
acknowledged change is one synced write batch.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from agent import faults
from agent.errors import StorageError, StoreLockedError
from agent.session import Session, decode_record, encode_record

__all__ = ["CF_META", "CF_SESSIONS", "SessionStore", "open_db"]

CF_SESSIONS = "sessions"
CF_META = "meta"


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    options.set_keep_log_file_num(2)
    options.set_max_log_file_size(1 << 20)
    return options


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "LOCK" in text or "lock hold" in text


def open_db(path: str | os.PathLike[str], *, wait: float = 0.0) -> Rdict:
    """Open (creating if missing) the store at ``path``.

    If another process holds it, retry for up to ``wait`` seconds, then raise
    ``StoreLockedError``. Opens are serialized by a ``flock`` on a file beside
    the store, because rocksdict rewrites its config file before RocksDB
    takes its own lock, and two opens racing on that file could tear it.
    """
    db_path = Path(path)
    deadline = time.monotonic() + wait
    pause = 0.002
    while True:
        try:
            with _opening_lock(db_path):
                return Rdict(
                    str(db_path),
                    _options(),
                    column_families={
                        CF_SESSIONS: Options(raw_mode=True),
                        CF_META: Options(raw_mode=True),
                    },
                )
        except StorageError:
            raise
        except Exception as exc:
            if not _is_lock_error(exc):
                raise StorageError(f"cannot open the store {db_path}: {exc}") from None
            if time.monotonic() >= deadline:
                raise StoreLockedError(db_path, holder_pid=None) from None
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.05)


class _opening_lock:
    """Holds ``<db>.lock`` (flock) while RocksDB opens; never follows a symlink."""

    def __init__(self, db_path: Path) -> None:
        self._path = db_path.with_name(db_path.name + ".lock")
        self._fd = -1

    def __enter__(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self._fd = os.open(self._path, flags, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            if self._fd >= 0:
                os.close(self._fd)
            reason = "it is a symlink" if exc.errno == errno.ELOOP else exc.strerror
            raise StorageError(f"cannot lock {self._path}: {reason}") from None

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._fd)  # closing releases the flock


class SessionStore:
    """The one owner of an open ``Rdict``: typed reads, synced batches, scans."""

    def __init__(self, db: Rdict) -> None:
        self._db = db
        try:
            self._sessions = db.get_column_family(CF_SESSIONS)
            self._meta = db.get_column_family(CF_META)
            self._sessions_handle = db.get_column_family_handle(CF_SESSIONS)
            self._meta_handle = db.get_column_family_handle(CF_META)
        except Exception as exc:
            raise StorageError(f"the store has no usable column families: {exc}") from None
        self._sync = WriteOptions()
        self._sync.sync = True
        self._closed = False

    def get(self, session_id: str) -> Session | None:
        key = session_id.encode("ascii")
        try:
            value = self._sessions.get(key)
        except Exception as exc:
            raise StorageError(f"cannot read session {session_id}: {exc}") from None
        return None if value is None else decode_record(key, value)

    def get_meta(self, key: bytes) -> bytes | None:
        try:
            value = self._meta.get(key)
        except Exception as exc:
            raise StorageError(f"cannot read {key.decode()} from the store: {exc}") from None
        return value if isinstance(value, bytes) else None

    def commit(
        self,
        sessions: tuple[Session, ...] = (),
        meta: Mapping[bytes, bytes | None] | None = None,
    ) -> None:
        """Write sessions and meta keys (``None`` deletes) in one synced batch."""
        batch = WriteBatch(raw_mode=True)
        for session in sessions:
            batch.put(session.id.encode("ascii"), encode_record(session), self._sessions_handle)
        for key, value in (meta or {}).items():
            if value is None:
                batch.delete(key, self._meta_handle)
            else:
                batch.put(key, value, self._meta_handle)
        try:
            faults.point("store.commit")
            self._db.write(batch, self._sync)
        except Exception as exc:
            raise StorageError(f"cannot write to the store: {exc}") from None

    def newest_first(
        self, *, floor: str | None = None, errors: list[StorageError] | None = None
    ) -> Iterator[Session]:
        """Sessions from the newest back to the key ``floor`` (inclusive).

        A corrupt record is appended to ``errors`` when given (the listing
        goes on), and raised otherwise.
        """
        floor_key = floor.encode("ascii") if floor else b""
        try:
            for key, value in self._sessions.items(backwards=True):
                if not isinstance(key, bytes) or not isinstance(value, bytes):
                    raise StorageError("the sessions column family holds non-bytes data")
                if key < floor_key:
                    return
                try:
                    yield decode_record(key, value)
                except StorageError as exc:
                    if errors is None:
                        raise
                    errors.append(exc)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"cannot scan the store: {exc}") from None

    def close(self) -> None:
        """Drop every handle first: RocksDB keeps its LOCK while any is alive."""
        if self._closed:
            return
        self._closed = True
        del self._sessions, self._meta, self._sessions_handle, self._meta_handle
        try:
            self._db.close()
        except Exception as exc:
            raise StorageError(f"cannot close the store: {exc}") from None

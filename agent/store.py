"""The session store: durable writes, decoding, ordered scans, the key schema.

Layout: column family ``sessions`` maps the session id (ASCII of the
canonical UUID) to an encoded record; ``meta`` holds the few keys needed to
find the active session of each scope without a scan (``ScopeKeys``);
``scopes`` holds the indexes, ``<scope>\0<id>`` and ``\x01<project>\0<id>``
-> empty, written in the same batch as each record, so listing one scope
or one project never reads another's records (``agent.store_keys``).
Ids are UUIDv7, so the newest sessions are at the end of ``sessions`` (and
of each scope's range of ``scopes``) and listing recent ones never touches
older history.

Stores written before scopes have records without index entries, all in the
default scope. The first batch this version writes notes the newest key
found at its open (``META_INDEX_FLOOR``): the default scope is listed from
the index down to that key, and from ``sessions`` below it. Nothing is
rewritten; nothing is asked of the user.

Every acknowledged change is one synced write batch, with its events
(``agent.event_log``, the ``events`` family) in the same batch. Opening and
locking the store is ``agent.database``'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rocksdict import Rdict, ReadOptions, WriteBatch, WriteOptions

from agent import faults
from agent.clock import Clock, default_clock
from agent.database import (
    CF_EVENTS,
    CF_META,
    CF_REMOTE,
    CF_SCOPES,
    CF_SESSIONS,
    close_db,
    merge_small_files,
    open_db,
    release_lock,
)
from agent.errors import OutcomeUnknownError, StorageError
from agent.event_log import EventLog
from agent.events import EventKind
from agent.record import Summary, decode_record, encode_record, ended_span, summarize_record
from agent.remote_view import RemoteView
from agent.scope import DEFAULT_SCOPE, scope_problem
from agent.session import Session
from agent.store_keys import META_INDEX_FLOOR, META_LONGEST, ScopeKeys, project_index_key, scope_index_key

__all__ = ["SessionStore"]  # its keys: agent.store_keys

_ID_CEILING = b"\x7f"  # above every id (ASCII)

log = logging.getLogger(__name__)


class SessionStore:
    """The one owner of an open ``Rdict``: typed reads, synced batches, scans."""

    def __init__(self, db: Rdict, *, read_only: bool = False, clock: Clock | None = None) -> None:
        self._read_only = read_only  # opened by open_db_read_only: no lock of ours to drop
        self._path = Path(db.path())
        self._db: Rdict | None = None
        # One commit at a time gets the next event numbers (the daemon commits
        # from its loop and, for imports, from a thread).
        self._commit_lock = threading.Lock()
        self.events = EventLog((clock or default_clock()).now)
        self.remote = RemoteView()  # other machines' sessions
        self._attach(db)
        self._sync = WriteOptions()
        self._sync.sync = True
        # Long scans (a listing, a report, an export) read past the block
        # cache: filling it with every block they pass would grow the
        # process by the size of the history read (measured: +32 MB for
        # 200,000 sessions, 205 MB peak for an export of 1,000,000).
        self._passing = ReadOptions()
        self._passing.fill_cache(False)  # type: ignore[call-arg]  # the stub omits the flag it takes
        self._closed = False
        self._lowest_written: bytes | None = None  # the smallest session key written here
        self._lowest_indexed: bytes | None = None  # the smallest index entry written here
        stored = self.get_meta(META_INDEX_FLOOR)
        self._index_floor = stored if stored is not None else self.newest_key()
        self._floor_unsaved = stored is None  # saved with the first batch this version writes
        longest = self.get_meta(META_LONGEST)
        # None: a store from before the key (``longest_ended`` finds it out once).
        self._longest = int(longest) if longest is not None and longest.isdigit() else None
        self._longest_unsaved = self._longest is None and self.newest_key() == b""
        if self._longest_unsaved:  # a new store: nothing ended yet; saved with its first batch
            self._longest = 0

    def checkpoint(self, target: Path) -> None:
        """A consistent copy of the store at ``target`` (which must not
        exist): the memtables flushed, the files hard-linked."""
        from rocksdict import Checkpoint

        try:  # a checkpoint flushes every column family's memtable first
            maker = Checkpoint(self._ensure_open())
            try:
                maker.create_checkpoint(str(target))
            finally:
                del maker  # it pins the store open
        except Exception as exc:
            raise StorageError(f"cannot take a snapshot at {target}: {exc}") from None

    def lost(self, session_id: str) -> bool:
        """Whether ``session_id``, named by one of our current files, must
        be a session this store acknowledged and then lost: unknown to it,
        newer than any it holds, and not older than the store itself (an
        older id is a stray, not a witness)."""
        from agent.session_id import session_id_floor

        if self.get(session_id) is not None:
            return False
        created = self.created_at()
        if created is None or session_id < session_id_floor(created):
            return False
        return session_id.encode("ascii") > self.newest_key()

    def created_at(self) -> datetime | None:
        """When the store was made (its ``IDENTITY`` file, written once at
        creation), or ``None`` if that cannot be read."""
        try:
            stamp = os.stat(self._path / "IDENTITY").st_mtime
        except Exception:  # OSError, or rocksdict failing to say where the store is
            return None
        return datetime.fromtimestamp(stamp, UTC)

    def _attach(self, db: Rdict) -> None:
        try:
            self._sessions = db.get_column_family(CF_SESSIONS)
            self._meta = db.get_column_family(CF_META)
            self._index = db.get_column_family(CF_SCOPES)
            self._sessions_handle = db.get_column_family_handle(CF_SESSIONS)
            self._meta_handle = db.get_column_family_handle(CF_META)
            self._index_handle = db.get_column_family_handle(CF_SCOPES)
        except Exception as exc:
            raise StorageError(f"the store has no usable column families: {exc}") from None
        try:
            self.events.attach(db.get_column_family(CF_EVENTS), db.get_column_family_handle(CF_EVENTS))
        except Exception:
            if not self._read_only:
                raise StorageError("the store has no events column family") from None
            self.events.attach(None, None)  # read only, written before the log existed: none yet
        try:
            self.remote.attach(db, db.get_column_family(CF_REMOTE), db.get_column_family_handle(CF_REMOTE))
        except Exception:
            if not self._read_only:
                raise StorageError("the store has no remote column family") from None
            self.remote.attach(None, None, None)  # read only, from before sync: nothing taken in
        self._db = db

    def _detach(self) -> Rdict | None:
        """Drop every handle (RocksDB keeps its LOCK while any is alive)."""
        db, self._db = self._db, None
        self.events.detach()
        self.remote.detach()
        for name in ("_sessions", "_meta", "_index", "_sessions_handle", "_meta_handle", "_index_handle"):
            self.__dict__.pop(name, None)
        return db

    def _ensure_open(self) -> Rdict:
        """The open store; after a failed write whose reopening failed too,
        try again now: the fault (a full disk, an I/O error) may be gone."""
        if self._db is None:
            self._reopen()
        assert self._db is not None
        return self._db

    def _reopen(self) -> None:
        """Close and open the store again: after a failed write RocksDB
        refuses every later one until it is reopened (its background error),
        and reopening recovers what its log holds."""
        db = self._detach()
        if db is not None:
            with contextlib.suppress(Exception):
                db.close()
        self._attach(open_db(self._path))  # our lock is still held: open_db keeps it

    def _holds(self, sessions: tuple[Session, ...], meta: Mapping[bytes, bytes | None]) -> bool | None:
        """Whether the store holds exactly what a batch wrote: ``True`` all
        of it, ``False`` none of it, ``None`` part (never, for a batch)."""
        found = [self._sessions_get(s.id.encode("ascii")) == encode_record(s) for s in sessions]
        found += [self.get_meta(key) == value for key, value in meta.items()]
        if all(found):
            return True
        return False if not any(found) else None

    def newest_key(self) -> bytes:
        """The newest session's key (``b""`` in an empty store)."""
        self._ensure_open()
        try:
            newest = next(iter(self._sessions.keys(backwards=True)), None)
        except Exception as exc:
            raise StorageError(f"cannot scan the store: {exc}") from None
        return newest if isinstance(newest, bytes) else b""

    def get(self, session_id: str) -> Session | None:
        key = session_id.encode("ascii")
        value = self._sessions_get(key)
        return None if value is None else decode_record(key, value)

    def get_meta(self, key: bytes) -> bytes | None:
        self._ensure_open()
        try:
            value = self._meta.get(key)
        except Exception as exc:
            raise StorageError(f"cannot read {key.decode()} from the store: {exc}") from None
        return value if isinstance(value, bytes) else None

    def commit(
        self,
        sessions: tuple[Session, ...] = (),
        meta: Mapping[bytes, bytes | None] | None = None,
        *,
        replacing: tuple[Session, ...] = (),
        events: tuple[tuple[EventKind, Session], ...] = (),
    ) -> None:
        """Write sessions (with their index entries), meta keys (``None``
        deletes) and the ``events`` of the change in one synced batch;
        ``replacing``: what those sessions' records held before, when their
        project may have changed (its old index entry goes). If the write
        fails, what it did is found out before anything is said
        (``_after_failed_write``)."""
        with self._commit_lock:
            self._commit(sessions, meta, replacing, events)

    def _commit(
        self,
        sessions: tuple[Session, ...],
        meta: Mapping[bytes, bytes | None] | None,
        replacing: tuple[Session, ...],
        occurrences: tuple[tuple[EventKind, Session], ...],
    ) -> None:
        self._ensure_open()
        batch = WriteBatch(raw_mode=True)
        projects = {s.id: s.details.project for s in sessions}
        for old in replacing:
            if old.details.project is not None and old.details.project != projects.get(old.id):
                batch.delete(
                    project_index_key(old.details.project, old.id.encode("ascii")), self._index_handle
                )
        for session in sessions:
            key = session.id.encode("ascii")
            batch.put(key, encode_record(session), self._sessions_handle)
            if session.details.project is not None:
                batch.put(project_index_key(session.details.project, key), b"", self._index_handle)
            entry = scope_index_key(session.scope, key)
            batch.put(entry, b"", self._index_handle)
            if self._lowest_indexed is None or entry < self._lowest_indexed:
                self._lowest_indexed = entry
            if self._lowest_written is None or key < self._lowest_written:
                self._lowest_written = key
        meta = dict(meta or {})
        if self._floor_unsaved:
            meta[META_INDEX_FLOOR] = self._index_floor
        longest = max((_wall_micros(s) for s in sessions if s.ended_at is not None), default=0)
        if self._longest is not None and (longest > self._longest or self._longest_unsaved):
            meta[META_LONGEST] = str(max(longest, self._longest)).encode("ascii")
        for key, value in meta.items():
            if value is None:
                batch.delete(key, self._meta_handle)
            else:
                batch.put(key, value, self._meta_handle)
        events = self.events.stage(batch, occurrences)
        try:
            faults.point("store.commit")
            self._ensure_open().write(batch, self._sync)
        except Exception as exc:
            # Returns only if the batch is on disk (the reopening read the log's end anew).
            self._after_failed_write(sessions, meta, exc)
        self.events.committed(events)
        self._floor_unsaved = False
        if self._longest is not None:
            self._longest = max(longest, self._longest)
            self._longest_unsaved = False
        faults.point("store.after_commit")

    def longest_ended(self) -> timedelta:
        """The longest wall time of any ended session held: a session that
        overlaps a moment started at most this long before it (or is
        active). A store from before this bound was kept is read once, by
        its records' headers, and the bound saved (unless read-only)."""
        if self._longest is None:
            found = max(
                (ended_span(value) for _, value in self._records(b"", None, backwards=False)), default=0
            )
            if not self._read_only:
                self.commit(meta={META_LONGEST: str(found).encode("ascii")})
            self._longest = found
        return timedelta(microseconds=self._longest)

    def _after_failed_write(
        self, sessions: tuple[Session, ...], meta: Mapping[bytes, bytes | None], exc: Exception
    ) -> None:
        """Find out what a failed write did, and say only that: reopen the
        store and read back. Not there: it did not happen (``StorageError``).
        There (recovered from the log, and made durable by the reopening's
        flush): it did, and this returns. Unreadable: ``OutcomeUnknownError``."""
        problem = str(exc) if isinstance(exc, StorageError) else f"cannot write to the store: {exc}"
        try:
            self._reopen()
            held = self._holds(sessions, dict(meta))
        except StorageError as again:
            raise OutcomeUnknownError(
                f"{problem}; the store could not be read back ({again}), so the change may or may not "
                "have taken effect: check with `session-agent current` or `session-agent list`"
            ) from None
        if held is False:
            raise StorageError(f"{problem} (nothing was written: the store was read back)")
        if held is None:
            raise OutcomeUnknownError(f"{problem}; the store holds part of the change")
        log.warning("a write to the store failed (%s), but reading back found it complete", problem)

    def meta_with_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The meta keys that start with ``prefix``, and their values."""
        self._ensure_open()
        try:
            for key, value in self._meta.items(from_key=prefix):
                if not isinstance(key, bytes) or not key.startswith(prefix):
                    return
                if isinstance(value, bytes):
                    yield key, value
        except Exception as exc:
            raise StorageError(f"cannot scan the store's meta keys: {exc}") from None

    def pointed_scopes(self) -> list[str]:
        """Scopes whose active pointer is set: the default first, then by name."""
        scopes = [DEFAULT_SCOPE] if self.get_meta(ScopeKeys.ACTIVE) is not None else []
        for key, _ in self.meta_with_prefix(ScopeKeys.ACTIVE + b"/"):
            name = ScopeKeys.scope_of(key)
            if scope_problem(name) is None:
                scopes.append(name)
        return scopes

    def newest_first(
        self,
        *,
        scope: str | None = None,
        floor: str | None = None,
        before: str | None = None,
        errors: list[StorageError] | None = None,
        project: str | None = None,
    ) -> Iterator[Session]:
        """Sessions of ``scope`` (``None``: every scope) from the newest (or
        the newest before the key ``before``) back to the key ``floor``
        (inclusive); of ``project`` alone, if given (its index range only).

        A corrupt record is appended to ``errors`` when given (the listing
        goes on), and raised otherwise.
        """
        floor_key = floor.encode("ascii") if floor else b""
        ceiling = before.encode("ascii") if before else None
        if project is not None:
            for key in self._indexed(project_index_key(project, b""), floor_key, ceiling):
                session = self._read(key, errors)
                if session is not None and scope in (None, session.scope):
                    yield session
            return
        if scope is None:
            yield from self._scan(floor_key, ceiling, errors)
            return
        # The default scope's older records predate the index: above the
        # index floor it has them all, below it the records themselves tell.
        unindexed = self._index_floor if scope == DEFAULT_SCOPE else b""
        for key in self._indexed(scope_index_key(scope, b""), max(floor_key, unindexed), ceiling):
            if key == unindexed:
                break
            session = self._read(key, errors)
            if session is not None:
                yield session
        if unindexed and unindexed >= floor_key:
            from_floor = ceiling is None or ceiling > unindexed
            older = self._scan(
                floor_key, unindexed if from_floor else ceiling, errors, include_top=from_floor
            )
            yield from (s for s in older if s.scope == scope)

    def _read(self, key: bytes, errors: list[StorageError] | None) -> Session | None:
        value = self._sessions_get(key)
        if value is None:
            return None  # an index entry is written with its record: not expected
        return self._decoded(key, value, errors)

    def _indexed(self, prefix: bytes, floor_key: bytes, ceiling: bytes | None) -> Iterator[bytes]:
        """Ids in an index range (a scope's, a project's), newest first, from
        below ``ceiling`` down to ``floor_key`` (inclusive)."""
        start = prefix + (ceiling if ceiling is not None else _ID_CEILING)
        self._ensure_open()
        try:
            for entry in self._index.keys(backwards=True, from_key=start):
                if not isinstance(entry, bytes) or not entry.startswith(prefix):
                    return
                key = entry[len(prefix) :]
                if key == ceiling:
                    continue
                if key < floor_key:
                    return
                yield key
        except Exception as exc:
            raise StorageError(f"cannot scan the store's scope index: {exc}") from None

    def _sessions_get(self, key: bytes) -> bytes | None:
        self._ensure_open()
        try:
            value = self._sessions.get(key)
        except Exception as exc:
            raise StorageError(f"cannot read session {key.decode('ascii', 'replace')}: {exc}") from None
        return value if isinstance(value, bytes) else None

    def _scan(
        self,
        floor_key: bytes,
        ceiling: bytes | None,
        errors: list[StorageError] | None,
        *,
        include_top: bool = False,
    ) -> Iterator[Session]:
        for key, value in self._records(floor_key, ceiling, backwards=True, include_top=include_top):
            session = self._decoded(key, value, errors)
            if session is not None:
                yield session

    def summaries(
        self, *, floor: str, before: str, errors: list[StorageError] | None = None
    ) -> Iterator[Summary]:
        """Every session's ``Summary`` from below ``before`` down to ``floor``
        (inclusive), newest first: a report's one backward pass."""
        for key, value in self._records(floor.encode("ascii"), before.encode("ascii"), backwards=True):
            try:
                yield summarize_record(key, value)
            except StorageError as exc:
                if errors is None:
                    raise
                errors.append(exc)

    def oldest_first(
        self, *, floor: str | None = None, before: str | None = None, errors: list[StorageError] | None = None
    ) -> Iterator[Session]:
        """Every session from the key ``floor`` (inclusive) up to ``before``
        (exclusive), oldest first: one forward pass, for an export."""
        floor_key = floor.encode("ascii") if floor else b""
        ceiling = before.encode("ascii") if before else None
        for key, value in self._records(floor_key, ceiling, backwards=False):
            session = self._decoded(key, value, errors)
            if session is not None:
                yield session

    def _records(
        self, floor_key: bytes, ceiling: bytes | None, *, backwards: bool, include_top: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """The raw records with keys from ``floor_key`` up to ``ceiling``
        (excluded unless ``include_top``; ``None``: no end), in either
        direction, read past the block cache (``_passing``)."""
        self._ensure_open()
        start = ceiling if backwards else floor_key
        try:
            for key, value in self._sessions.items(
                backwards=backwards, from_key=start, read_opt=self._passing
            ):
                if not isinstance(key, bytes) or not isinstance(value, bytes):
                    raise StorageError("the sessions column family holds non-bytes data")
                if ceiling is not None and (key > ceiling or (key == ceiling and not include_top)):
                    if backwards:
                        continue
                    return
                if key < floor_key:
                    if backwards:
                        return
                    continue
                yield key, value
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"cannot scan the store: {exc}") from None

    @staticmethod
    def _decoded(key: bytes, value: bytes, errors: list[StorageError] | None) -> Session | None:
        try:
            return decode_record(key, value)
        except StorageError as exc:
            if errors is None:
                raise
            errors.append(exc)
            return None

    def close(self) -> None:
        """Drop every handle first: RocksDB keeps its LOCK while any is alive."""
        if self._closed:
            return
        self._closed = True
        if not self._read_only and self._db is not None:
            self._merge_small_files()
        db = self._detach()
        if self._read_only:
            if db is not None:
                db.close()
        elif db is not None:
            close_db(db)
        else:  # closed already by a failed reopening: only our lock is left
            release_lock(self._path)

    def _merge_small_files(self) -> None:
        """See ``agent.database.merge_small_files``: the families, each with
        the smallest key written here (where the small files are)."""
        families = [
            (self._meta, None),
            (self._sessions, self._lowest_written),
            (self._index, self._lowest_indexed),
        ]
        events = self.events.small_files()
        merge_small_files((*families, *((events,) if events else ())))


def _wall_micros(session: Session) -> int:
    assert session.ended_at is not None
    return max(0, (session.ended_at - session.started_at) // timedelta(microseconds=1))

"""``EventLog``: the store's numbered record of every change of a session.

The log is the ``events`` column family: ``seq`` (8 bytes, big-endian) ->
the event (``agent.events``). The store writes a change's events in the
*same* synced batch as the change (``SessionStore.commit``), so the log and
the sessions never disagree, whichever process made the change (the daemon,
or a command that opened the store itself). Sequence numbers are given at
commit, one after another, and the counter moves only once the batch is on
disk: a failed write leaves no hole.

Retention (``[events]`` in config.toml): the newest ``keep`` events, none
older than ``max_age``. Every ``TRIM_EVERY`` events (fewer for a small
``keep``) the committing batch
also deletes what fell out -- one range deletion, found without reading the
log (by count) or by a binary search over it (by age), never a scan.

Listeners (``listen``) hear of each committed batch's events, in the
committing thread, after the write: the daemon passes them on to its
subscribers and hooks (``agent.change_feed``).
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from rocksdict import ColumnFamily, Rdict, ReadOptions, WriteBatch

from agent.config import Retention
from agent.errors import StorageError
from agent.events import Event, EventKind
from agent.session import Session

__all__ = ["TRIM_EVERY", "EventLog", "seq_key"]

log = logging.getLogger(__name__)

TRIM_EVERY = 1024  # events between two trims
_KEY = struct.Struct(">Q")

EventsListener = Callable[[tuple[Event, ...]], None]


def seq_key(seq: int) -> bytes:
    return _KEY.pack(seq)


class EventLog:
    """The ``events`` family of an open store (``None``: a store opened read
    only that has none yet -- an empty log)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now
        self._family: Rdict | None = None
        self._handle: ColumnFamily | None = None
        self._last = 0
        self._lowest_written: bytes | None = None  # the first key this process wrote
        self._listeners: list[EventsListener] = []
        self._listeners_lock = threading.Lock()
        self.retention = Retention()
        self._passing = ReadOptions()
        self._passing.fill_cache(False)  # type: ignore[call-arg]  # the stub omits the flag it takes

    def attach(self, family: Rdict | None, handle: ColumnFamily | None) -> None:
        """Read the log's end from ``family`` (at open, and after a reopening)."""
        self._family, self._handle = family, handle
        self._last = self._edge(backwards=True)

    def detach(self) -> None:
        self._family = self._handle = None

    def small_files(self) -> tuple[Rdict, bytes | None] | None:
        """The family and the first key written here, for the store's close
        to merge the small files it left (``agent.database.merge_small_files``):
        keys only grow, so RocksDB would never merge them itself."""
        return None if self._family is None else (self._family, self._lowest_written)

    @property
    def last_seq(self) -> int:
        """The newest committed event's number (0: none yet)."""
        return self._last

    def first_seq(self) -> int:
        """The oldest event still kept (``last_seq + 1`` when none is)."""
        first = self._edge(backwards=False)
        return first if first else self._last + 1

    def listen(self, listener: EventsListener) -> Callable[[], None]:
        """Call ``listener`` with each committed batch's events; returns the
        unsubscribe."""
        with self._listeners_lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    # --- writing (the store's commit, under its lock) -----------------------------

    def stage(
        self, batch: WriteBatch, occurrences: tuple[tuple[EventKind, Session], ...]
    ) -> tuple[Event, ...]:
        """Put ``occurrences`` into ``batch`` as the next events (and, when
        due, the trim of what retention lets go)."""
        if not occurrences or self._handle is None:
            return ()
        now = self._now()
        events = tuple(
            Event(self._last + n, kind, now, session) for n, (kind, session) in enumerate(occurrences, 1)
        )
        for event in events:
            batch.put(seq_key(event.seq), event.encode(), self._handle)
        if self._lowest_written is None:
            self._lowest_written = seq_key(events[0].seq)
        newest = events[-1].seq
        every = max(1, min(TRIM_EVERY, self.retention.keep // 8))  # a small log is kept small
        if newest // every != self._last // every:
            self._stage_trim(batch, newest, now)
        return events

    def committed(self, events: tuple[Event, ...]) -> None:
        """``events`` are on disk: the counter moves, the listeners hear."""
        if not events:
            return
        self._last = events[-1].seq
        with self._listeners_lock:
            listeners = tuple(self._listeners)
        for listener in listeners:
            try:
                listener(events)
            except Exception:  # a listener's bug must not turn a durable commit into an error
                log.exception("unexpected error while passing on events %d-%d", events[0].seq, self._last)

    def _stage_trim(self, batch: WriteBatch, newest: int, now: datetime) -> None:
        keep_from = max(1, newest - self.retention.keep + 1)
        if self.retention.max_age:
            cutoff = now - timedelta(seconds=self.retention.max_age)
            keep_from = max(keep_from, min(self.first_after(cutoff), newest))
        if keep_from > 1:
            batch.delete_range(seq_key(0), seq_key(keep_from), self._handle)

    # --- reading --------------------------------------------------------------------

    def after(self, seq: int, limit: int | None = None) -> Iterator[Event]:
        """The kept events after ``seq``, oldest first (at most ``limit``)."""
        family = self._family
        if family is None:
            return
        count = 0
        try:
            for key, value in family.items(from_key=seq_key(seq + 1), read_opt=self._passing):
                if limit is not None and count >= limit:
                    return
                if not isinstance(key, bytes) or not isinstance(value, bytes) or len(key) != _KEY.size:
                    raise StorageError("the events column family holds a key of another form")
                count += 1
                yield Event.decode(_KEY.unpack(key)[0], value)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"cannot read the event log: {exc}") from None

    def get(self, seq: int) -> Event | None:
        family = self._family
        if family is None:
            return None
        try:
            value = family.get(seq_key(seq))
        except Exception as exc:
            raise StorageError(f"cannot read event {seq}: {exc}") from None
        return Event.decode(seq, value) if isinstance(value, bytes) else None

    def first_after(self, moment: datetime) -> int:
        """The first kept event recorded at or after ``moment`` (``last_seq +
        1`` if none): a binary search, the log being in the order of time
        (a wall clock set back only blurs the edge)."""
        low, high = self.first_seq(), self._last + 1
        while low < high:
            middle = (low + high) // 2
            event = self.get(middle)
            if event is not None and event.at < moment:
                low = middle + 1
            else:
                high = middle
        return low

    def _edge(self, *, backwards: bool) -> int:
        family = self._family
        if family is None:
            return 0
        try:
            key = next(iter(family.keys(backwards=backwards)), None)
        except Exception as exc:
            raise StorageError(f"cannot read the event log: {exc}") from None
        return _KEY.unpack(key)[0] if isinstance(key, bytes) and len(key) == _KEY.size else 0

"""``RemoteView``: other machines' sessions, as their segments said them.

The store's ``remote`` column family, apart from this machine's sessions
(``sessions``), so a remote session can never become a current session, be
ended, tagged or counted here, and never collides with a local id:

* ``s<id>`` -> version 1, the epoch (4 bytes), the ``seq`` (8 bytes), the
  host's name (its length, then it), then the session's record
  (``agent.record``). Of each session the version with the highest
  ``(epoch, seq)`` is kept, whatever order its segments arrived in. An id
  already held for another host stays that host's (a copied store ships
  the same sessions under two names; the first is kept, the other counted).
* ``a<id>`` -> empty: the sessions active as last heard (a report over a
  range finds them without reading older history);
* ``m/longest`` -> the longest ended remote session (microseconds): a
  report reads only the ids that can overlap its range;
* ``h<host>`` -> what was taken in from that host (``HostIntake``, JSON):
  which of its segments, the newest one's header, when.

It is a replica of the sync folder: written without a sync of its own
(a crash loses at most the last segments taken in, and their numbers with
them: they are read again), and never a source of truth for anything local.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from rocksdict import ColumnFamily, Rdict, ReadOptions, WriteBatch

from agent.errors import StorageError
from agent.record import Summary, decode_record, ended_span, is_active_record, summarize_record
from agent.session import Session, format_time

TYPE_CHECKING = False  # every store opens this module: nothing it does not need at once
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from agent.segments import Segment

__all__ = ["HostIntake", "RemoteView"]

_HEADER = struct.Struct(">BIQB")  # version, epoch, seq, host length
_VERSION = 1
_SESSION = b"s"
_HOST = b"h"
_LONGEST = b"m/longest"
_ACTIVE = b"a"  # + id: the remote sessions active as last heard (a report finds them without a scan)


class HostIntake:
    """What was taken in from one host: its segments' numbers (as ranges),
    the newest segment's header and when it was taken in, the sessions
    refused because another host has them."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        self.done: list[list[int]] = [list(r) for r in data.get("done", [])]
        self.newest: dict[str, Any] | None = data.get("newest")
        self.taken_at: str | None = data.get("taken_at")
        self.claimed_elsewhere: int = int(data.get("claimed_elsewhere", 0))

    def has(self, number: int) -> bool:
        return any(low <= number <= high for low, high in self.done)

    def add(self, number: int) -> None:
        ranges = sorted([*self.done, [number, number]])
        merged: list[list[int]] = []
        for low, high in ranges:
            if merged and low <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        self.done = merged

    @property
    def segments(self) -> int:
        return sum(high - low + 1 for low, high in self.done)

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "newest": self.newest,
            "taken_at": self.taken_at,
            "claimed_elsewhere": self.claimed_elsewhere,
        }


def _encode(host: str, epoch: int, seq: int, record: bytes) -> bytes:
    name = host.encode("ascii")
    return _HEADER.pack(_VERSION, epoch, seq, len(name)) + name + record


def _split(value: bytes) -> tuple[str, tuple[int, int], int]:
    """The host, the version ``(epoch, seq)`` and where the record starts."""
    version, epoch, seq, length = _HEADER.unpack_from(value)
    if version != _VERSION:
        raise ValueError(f"remote record version {version}")
    start = _HEADER.size + length
    return value[_HEADER.size : start].decode("ascii"), (epoch, seq), start


class RemoteView:
    """The ``remote`` family of an open store (``None``: a store opened read
    only that has none yet -- nothing taken in)."""

    def __init__(self) -> None:
        self._db: Rdict | None = None
        self._family: Rdict | None = None
        self._handle: ColumnFamily | None = None
        self._passing = ReadOptions()
        self._passing.fill_cache(False)  # type: ignore[call-arg]  # the stub omits the flag it takes

    def attach(self, db: Rdict | None, family: Rdict | None, handle: ColumnFamily | None) -> None:
        self._db, self._family, self._handle = db, family, handle

    def detach(self) -> None:
        self._db = self._family = self._handle = None

    # --- taking segments in ----------------------------------------------------------

    def take(self, segment: Segment, taken_at: datetime) -> int:
        """Keep what ``segment`` says newer than what is held; the number of
        sessions it changed here."""
        db, family, handle = self._db, self._family, self._handle
        if db is None or family is None or handle is None:
            raise StorageError("the store has no remote column family (opened read only)")
        intake = self.intake(segment.host)
        newest: dict[bytes, tuple[int, bytes]] = {}
        for seq, session_id, record in segment.records:  # in order: the last of each is its newest here
            newest[_SESSION + session_id.encode("ascii")] = (seq, record)
        keys: list[str | int | float | bytes | bool] = list(newest)
        try:
            held: list[object] = family.get(keys) or [] if keys else []
        except Exception as exc:
            raise StorageError(f"cannot read the remote sessions: {exc}") from None
        batch = WriteBatch(raw_mode=True)
        changed = 0
        longest = self.longest()
        for key, value in zip(newest, held, strict=True):
            seq, record = newest[key]
            if isinstance(value, bytes):
                host, version, _ = _split(value)
                if host != segment.host:
                    intake.claimed_elsewhere += 1
                    continue
                if version >= (segment.epoch, seq):
                    continue
            batch.put(key, _encode(segment.host, segment.epoch, seq, record), handle)
            if is_active_record(record):
                batch.put(_ACTIVE + key[1:], b"", handle)
            else:
                batch.delete(_ACTIVE + key[1:], handle)
            longest = max(longest, ended_span(record))
            changed += 1
        intake.add(segment.number)
        if intake.newest is None or segment.number >= int(intake.newest.get("segment", -1)):
            intake.newest = {
                "segment": segment.number,
                "epoch": segment.epoch,
                "kind": segment.kind,
                "last": segment.last,
                "written_at": format_time(segment.written_at),
            }
        intake.taken_at = format_time(taken_at)
        import json

        batch.put(_HOST + segment.host.encode("ascii"), json.dumps(intake.to_dict()).encode(), handle)
        batch.put(_LONGEST, str(longest).encode("ascii"), handle)
        try:
            db.write(batch)
        except Exception as exc:
            raise StorageError(f"cannot write the remote sessions: {exc}") from None
        return changed

    def settle(self) -> None:
        """After a large intake: write the family's memtable out (its memory
        back; the daemon stays small once the first big intake is done)."""
        family = self._family
        if family is not None:
            try:
                family.flush(True)
            except Exception as exc:
                raise StorageError(f"cannot flush the remote sessions: {exc}") from None

    def longest(self) -> int:
        """The longest wall time of any ended remote session (microseconds):
        a report reads only the ids that can overlap its range."""
        raw = self._get(_LONGEST)
        return int(raw) if raw is not None and raw.isdigit() else 0

    def intake(self, host: str) -> HostIntake:
        import json

        raw = self._get(_HOST + host.encode("ascii"))
        return HostIntake(json.loads(raw) if raw else None)

    def intakes(self) -> dict[str, HostIntake]:
        """Every host something was taken in from."""
        import json

        found = {}
        for key, value in self._items(_HOST, backwards=False):
            found[key[1:].decode("ascii")] = HostIntake(json.loads(value))
        return found

    # --- reading ---------------------------------------------------------------------

    def get(self, session_id: str) -> tuple[str, Session] | None:
        raw = self._get(_SESSION + session_id.encode("ascii"))
        if raw is None:
            return None
        return self._decode(_SESSION + session_id.encode("ascii"), raw)

    def newest_first(
        self, host: str | None = None, before: str | None = None, errors: list[StorageError] | None = None
    ) -> Iterator[tuple[str, Session]]:
        """``(host, session)``, newest first (of ``host`` alone if given),
        from below the id ``before``."""
        start = _SESSION + (before.encode("ascii") if before else b"\x7f")
        return self._sessions(host, errors, backwards=True, start=start, skip=before is not None)

    def oldest_first(
        self, host: str | None = None, errors: list[StorageError] | None = None
    ) -> Iterator[tuple[str, Session]]:
        """``(host, session)``, oldest first (of ``host`` alone if given)."""
        return self._sessions(host, errors, backwards=False, start=_SESSION, skip=False)

    def _sessions(
        self,
        host: str | None,
        errors: list[StorageError] | None,
        *,
        backwards: bool,
        start: bytes,
        skip: bool,
    ) -> Iterator[tuple[str, Session]]:
        for key, value in self._items(_SESSION, backwards=backwards, start=start):
            if skip and key == start:
                continue
            try:
                owner, _, _ = _split(value)
                if host is not None and owner != host:
                    continue
                yield self._decode(key, value)
            except (StorageError, ValueError, struct.error) as exc:
                problem = StorageError(f"remote session {key[1:].decode('ascii', 'replace')}: {exc}")
                if errors is None:
                    raise problem from None
                errors.append(problem)

    def summaries(
        self,
        host: str | None = None,
        errors: list[StorageError] | None = None,
        *,
        floor: str = "",
        before: str | None = None,
    ) -> Iterator[tuple[str, Summary]]:
        """The remote sessions in brief (of ``host`` alone if given), newest
        first, from below the id ``before`` down to the id ``floor``."""
        start = _SESSION + (before.encode("ascii") if before else b"\x7f")
        lowest = _SESSION + floor.encode("ascii")
        for key, value in self._items(_SESSION, backwards=True, start=start):
            if key < lowest:
                return
            try:
                owner, _, begins = _split(value)
                if host is None or owner == host:
                    yield owner, summarize_record(key[1:], value[begins:])
            except (StorageError, ValueError, struct.error) as exc:
                problem = StorageError(f"remote session {key[1:].decode('ascii', 'replace')}: {exc}")
                if errors is None:
                    raise problem from None
                errors.append(problem)

    def active_summaries(self, host: str | None = None) -> Iterator[tuple[str, Summary]]:
        """The remote sessions active as last heard, in brief."""
        for key, _ in self._items(_ACTIVE, backwards=False):
            value = self._get(_SESSION + key[1:])
            if value is None:
                continue
            owner, _, begins = _split(value)
            if host is None or owner == host:
                yield owner, summarize_record(key[1:], value[begins:])

    def hosts(self) -> list[str]:
        return sorted(self.intakes())

    @staticmethod
    def _decode(key: bytes, value: bytes) -> tuple[str, Session]:
        host, _, start = _split(value)
        return host, decode_record(key[1:], value[start:])

    def _get(self, key: bytes) -> bytes | None:
        family = self._family
        if family is None:
            return None
        try:
            value = family.get(key)
        except Exception as exc:
            raise StorageError(f"cannot read the remote sessions: {exc}") from None
        return value if isinstance(value, bytes) else None

    def _items(
        self, prefix: bytes, *, backwards: bool, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        family = self._family
        if family is None:
            return
        first = start if start is not None else (prefix + b"\xff" if backwards else prefix)
        try:
            for key, value in family.items(backwards=backwards, from_key=first, read_opt=self._passing):
                if not isinstance(key, bytes) or not isinstance(value, bytes) or not key.startswith(prefix):
                    if isinstance(key, bytes) and (key > prefix if not backwards else key < prefix):
                        return
                    continue
                yield key, value
        except Exception as exc:
            raise StorageError(f"cannot read the remote sessions: {exc}") from None

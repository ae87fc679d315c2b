"""Shipping: this machine's changes, from a durable cursor, into its folder
of the sync dir as segments (``agent.segments``).

The cursor is the last event (``agent.event_log``) shipped; it is kept in
the store's meta (``sync/ship``) and moved only once the segment holding
that event is on disk (synced, renamed, the folder synced). So a process
killed mid-write, a full disk or a sync folder gone for a while ships, when
it can again, everything after the cursor: at least once, in order. What
went out twice (killed after the rename, before the cursor moved) is the
same versions again, which readers take for what they are (the newest
``(epoch, seq)`` of each session wins): nothing twice in effect.

A *baseline* ships every session as it stands: the first shipment of a
machine (its history before the sync dir was set), after the log was
trimmed past the cursor (``[events]`` retention: the changes in between
are gone, the sessions are not), after the store was restored (the event
numbers start again: a new epoch), and when the folder holds more than
``COMPACT_AFTER`` segments (then the older ones, all said again by the
baseline, are deleted).

Identity: the state names the host it shipped as and the machine (its
machine id) it shipped from. A store that turns up on another machine
(restored, copied) ships nothing until ``[sync] host`` is set -- to the
same name to go on as that host, or to a new one. A hostname changed on
the same machine keeps the name already shipped under. A store that never
shipped under a name does not write into a folder of that name that holds
segments already (another store's: two machines named alike, a data dir
made anew): it says so and waits to be given another name.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from agent import faults
from agent.errors import SessionError
from agent.segments import (
    FileKind,
    Segment,
    classify,
    encode_segment,
    record_line,
    segment_name,
    write_segment,
)
from agent.session import Session, format_time
from agent.store import SessionStore
from agent.sync_settings import SyncSettings

__all__ = [
    "COMPACT_AFTER",
    "SHIP_KEY",
    "ShipState",
    "SyncUnavailable",
    "own_host",
    "ship",
    "ship_state",
    "shipped",
]

log = logging.getLogger(__name__)

SHIP_KEY = b"sync/ship"
COMPACT_AFTER = 256  # segments in this machine's folder before a baseline replaces them
_EVENTS_PER_SEGMENT = 4096
_SESSIONS_PER_SEGMENT = 4096
_SEGMENT_BYTES = 4 << 20  # a segment is cut once this big (readers take up to 16 MiB)


class SyncUnavailable(SessionError):
    """Nothing can be shipped now (the folder is missing, the disk full, the
    identity in question); the message says why and what to do."""


class ShipState:
    """Where shipping stands (``sync/ship`` in the store's meta)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.host: str = data["host"]
        self.machine: str = data.get("machine") or ""
        self.epoch: int = int(data.get("epoch", 1))
        self.cursor: int | None = data.get("cursor")  # None: a baseline first
        self.segment: int = int(data.get("segment", 0))  # the newest written
        self.written_at: str | None = data.get("written_at")
        self.fresh = False  # not shipped under this name yet: its folder must hold nothing

    def encode(self) -> bytes:
        return json.dumps(
            {
                "host": self.host,
                "machine": self.machine,
                "epoch": self.epoch,
                "cursor": self.cursor,
                "segment": self.segment,
                "written_at": self.written_at,
            }
        ).encode()


def ship_state(store: SessionStore) -> ShipState | None:
    raw = store.get_meta(SHIP_KEY)
    if raw is None:
        return None
    try:
        return ShipState(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        log.warning("the sync state in the store is unreadable: shipping starts again with a baseline")
        return None


def own_host(store: SessionStore, sync: SyncSettings) -> str:
    """The name this machine ships as (or will, at its first shipment)."""
    state = ship_state(store)
    if state is not None and (sync.host is None or sync.host == state.host):
        return state.host
    return sync.identity


def this_machine() -> str:
    from agent.place import this_host

    hostname, machine_id = this_host()
    return machine_id or f"hostname:{hostname}"


def ship(store: SessionStore, sync: SyncSettings, now: datetime) -> int:
    """Ship what the cursor has not reached; the number of segments
    written. ``SyncUnavailable`` when nothing can be shipped now (the cursor
    stays where it is)."""
    state = _identity(store, sync)
    folder = _own_folder(sync, state)
    _remove_own_temp_files(folder)
    present = _segment_numbers(folder)
    if present and state.fresh:
        raise SyncUnavailable(
            f"{folder} already holds {len(present)} segments of host {state.host!r} that this store did "
            "not write (another store ships as that host): set another [sync] host in config.toml, or "
            "move that folder away if this store is to take its place"
        )
    if present and present[-1] > state.segment:
        _resume_from(folder, present[-1], state, store, now)
    written = 0
    last = store.events.last_seq
    cursor = state.cursor
    if cursor is not None and cursor > last:
        log.warning(
            "sync: this store's events end at %d, before the %d shipped (restored from a snapshot?): "
            "shipping everything again, as a new epoch",
            last,
            cursor,
        )
        state.epoch += 1
        cursor = None
    elif cursor is not None and cursor + 1 < store.events.first_seq() and cursor < last:
        log.info("sync: events after %d were trimmed before they were shipped: shipping a baseline", cursor)
        cursor = None
    if cursor is None or len(present) > COMPACT_AFTER:
        written += _baseline(store, sync, state, folder, present=present, now=now)
        cursor = state.cursor
    assert cursor is not None
    while cursor < store.events.last_seq:
        batch = list(store.events.after(cursor, _EVENTS_PER_SEGMENT))
        if not batch:
            break
        if batch[0].seq > cursor + 1:  # trimmed while this shipment ran: the sessions as they stand
            log.info(
                "sync: events after %d were trimmed before they were shipped: shipping a baseline", cursor
            )
            written += _baseline(store, sync, state, folder, present=_segment_numbers(folder), now=now)
            cursor = state.cursor
            assert cursor is not None
            continue
        newest: dict[str, tuple[int, Session]] = {}
        for event in batch:
            newest.pop(event.session.id, None)  # re-inserted: the order is the newest change's
            newest[event.session.id] = (event.seq, event.session)
        first, final = cursor + 1, batch[-1].seq
        for part in _cut(list(newest.values()), sync, state.host):
            _write(state, folder, "events", span=(first, final), part=part, now=now)
            written += 1
        cursor = state.cursor = final
        _save(store, state, now)
    return written


def _resume_from(folder: Path, newest: int, state: ShipState, store: SessionStore, now: datetime) -> None:
    """The folder holds a segment the state does not know of: the process
    that wrote it was killed before it moved the cursor. Go on after it,
    not ship its events again (if it is whole and of this epoch)."""
    from agent.segments import SegmentError, read_segment

    try:
        segment = read_segment(folder / segment_name(newest), state.host, newest)
    except (SegmentError, OSError) as exc:
        log.warning("sync: %s; writing after it", exc)
        state.segment = newest
        return
    state.segment = newest
    if segment.epoch == state.epoch and state.cursor is not None and segment.last > state.cursor:
        state.cursor = segment.last
    _save(store, state, now)


def _identity(store: SessionStore, sync: SyncSettings) -> ShipState:
    machine = this_machine()
    state = ship_state(store)
    name = sync.identity
    if state is None:
        return _fresh(name, machine)
    if state.machine != machine and sync.host is None:
        raise SyncUnavailable(
            f"this store shipped as host {state.host!r} from another machine: set [sync] host in "
            f'config.toml -- host = "{state.host}" to go on as that host (this is it, moved), '
            "or a new name to ship as a new host"
        )
    if name != state.host:
        if sync.host is None:  # the hostname changed on the same machine: the name shipped under stays
            return state
        log.warning("sync: shipping as host %r (was %r): everything is shipped again", name, state.host)
        return _fresh(name, machine)
    state.machine = machine
    return state


def _fresh(host: str, machine: str) -> ShipState:
    state = ShipState({"host": host, "machine": machine, "epoch": 1, "cursor": None})
    state.fresh = True
    return state


def _own_folder(sync: SyncSettings, state: ShipState) -> Path:
    root = sync.dir
    try:
        entries = [n for n in os.listdir(root) if not n.startswith(".")]
    except FileNotFoundError:
        raise SyncUnavailable(f"the sync folder {root} does not exist (not mounted?)") from None
    except OSError as exc:
        raise SyncUnavailable(f"cannot read the sync folder {root}: {exc.strerror}") from None
    folder = root / state.host
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        if state.segment and not entries:
            raise SyncUnavailable(
                f"the sync folder {root} is empty, though this machine shipped {state.segment} segments "
                "to it: is it mounted? (shipping goes on when it is back)"
            ) from None
        if state.segment:
            log.warning("sync: %s is gone: shipping everything again", folder)
            state.cursor = None
        try:
            os.mkdir(folder, 0o700)
        except OSError as exc:
            raise SyncUnavailable(f"cannot make {folder}: {exc.strerror}") from None
        return folder
    except OSError as exc:
        raise SyncUnavailable(f"cannot read {folder}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SyncUnavailable(f"{folder} is not a directory (a symlink?): move it away")
    if info.st_uid != os.getuid():
        raise SyncUnavailable(f"{folder} is not yours: this machine writes only to a folder of its own user")
    return folder


def _segment_numbers(folder: Path) -> list[int]:
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise SyncUnavailable(f"cannot read {folder}: {exc.strerror}") from None
    return sorted(n for kind, n in map(classify, names) if kind is FileKind.SEGMENT and n is not None)


def _remove_own_temp_files(folder: Path) -> None:
    """A temp file of ours is a write that never finished (a process killed
    mid-write): its events are still after the cursor."""
    try:
        for name in os.listdir(folder):
            if name.startswith(".seg-") and name.endswith(".tmp"):
                os.unlink(folder / name)
    except OSError:
        pass


def _baseline(
    store: SessionStore,
    sync: SyncSettings,
    state: ShipState,
    folder: Path,
    *,
    present: list[int],
    now: datetime,
) -> int:
    """Every session as it stands at the log's end, then the segments before
    it deleted (each said again by the baseline)."""
    at = store.events.last_seq
    written = 0
    sessions = ((at, s) for s in store.oldest_first(errors=[]))
    for part in _cut(sessions, sync, state.host):
        _write(state, folder, "baseline", span=(0, at), part=part, now=now)
        written += 1
    if not written:  # an empty store: an empty baseline says where shipping stands
        _write(state, folder, "baseline", span=(0, at), part=[], now=now)
        written = 1
    state.cursor = at
    _save(store, state, now)
    for number in present:
        if number < state.segment - written + 1:
            try:
                os.unlink(folder / segment_name(number))
            except OSError as exc:
                log.warning("sync: cannot delete the old segment %s: %s", segment_name(number), exc.strerror)
    if present:
        log.info("sync: baseline of %d segments written as %r", written, state.host)
    return written


def _cut(records: Iterable[tuple[int, Session]], sync: SyncSettings, host: str) -> Iterator[list[bytes]]:
    """``records`` (``(seq, session)``) as shipped, in parts of a segment's size."""
    part: list[bytes] = []
    size = 0
    for seq, session in records:
        line = record_line(seq, shipped(session, sync, host))
        part.append(line)
        size += len(line)
        if len(part) >= _SESSIONS_PER_SEGMENT or size >= _SEGMENT_BYTES:
            yield part
            part, size = [], 0
    if part:
        yield part


def shipped(session: Session, sync: SyncSettings, host: str) -> dict[str, object]:
    """A session as it leaves this machine: no owner pid (a number that
    means nothing elsewhere), its host named as shipped, the fields of
    ``[sync] omit`` left out."""
    data = session.to_dict()
    data["owner_pid"] = None
    machine = session.details.host.machine_id if session.details.host else None
    data["host"] = {"hostname": host, "machine_id": machine}
    for name in sync.omit:
        data[name] = [] if name == "tags" else {} if name == "labels" else None
    return data


def _write(
    state: ShipState,
    folder: Path,
    kind: str,
    *,
    span: tuple[int, int],
    part: list[bytes],
    now: datetime,
) -> None:
    number = state.segment + 1
    header = Segment(state.host, number, state.epoch, kind, span[0], span[1], now, ())
    try:
        write_segment(folder, number, encode_segment(header, part))
    except OSError as exc:
        raise SyncUnavailable(f"cannot write {folder / segment_name(number)}: {exc.strerror}") from None
    faults.point("sync.after_rename")
    state.segment = number
    state.written_at = format_time(now)


def _save(store: SessionStore, state: ShipState, now: datetime) -> None:
    store.commit(meta={SHIP_KEY: state.encode()})

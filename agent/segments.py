"""Segment files: how one machine's history travels through a sync folder.

A machine writes only its own subfolder of the sync dir (named by its host
name, ``agent.sync_settings``), and only whole files: each segment is
written to a hidden temp file, synced, and renamed into place, so a reader
(or a sync engine) never sees half of one under a segment's name. A
segment is never rewritten; the writer only adds new ones (and deletes old
ones once a newer baseline holds all they said: ``agent.sync_ship``).

``seg-000000000042.jsonl`` -- the number, twelve digits -- is JSON lines.
The first line describes the file::

    {"format": "session-agent-sync", "version": 1, "host": "laptop",
     "segment": 42, "epoch": 1, "kind": "events", "first": 101, "last": 150,
     "records": 37, "written_at": "2026-11-30T09:12:03.120000Z",
     "sha256": "<of every byte after this line>"}

and each further line is one session as a change left it, with the event
number (``seq``) of that change (a reader names its host by the folder it
came from, whatever the record says)::

    {"seq": 150, "session": {... as `session-agent show --json` ...}}

``kind`` is ``events`` (the sessions changed by events ``first`` to
``last``, the newest version of each) or ``baseline`` (every session as it
stood at event ``last``: a new machine's first shipment, and what replaces
old segments). A reader keeps, of each session, the version with the
highest ``(epoch, seq)``: segments may arrive in any order, twice, or
after a newer baseline. The epoch grows when the writer's numbering starts
again (its store was restored from a snapshot).

Anything else in a host folder is not data: hidden and temp files (ours
while written, a sync engine's partial downloads), conflict copies
(``*.sync-conflict-*``, ``* (conflicted copy ...)``) and stray files are
passed over; a segment whose header, checksum, record count, host or
number does not match, or that is larger than ``MAX_SEGMENT_BYTES``, is
refused whole (``SegmentError`` names the file and what is wrong).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import re
import stat
from datetime import datetime
from pathlib import Path

from agent import faults
from agent.record import encode_record
from agent.session import Session, format_time, parse_time
from agent.values import Value

__all__ = [
    "FORMAT",
    "MAX_SEGMENT_BYTES",
    "FileKind",
    "Segment",
    "SegmentError",
    "classify",
    "read_segment",
    "record_line",
    "segment_name",
    "write_segment",
]

FORMAT = "session-agent-sync"
VERSION = 1
MAX_SEGMENT_BYTES = 16 << 20  # a reader refuses anything larger
_NAME = re.compile(r"seg-(\d{12})\.jsonl")
_CONFLICT = re.compile(r"sync-conflict|conflicted copy|\bconflict\b", re.IGNORECASE)


class FileKind(enum.Enum):
    SEGMENT = "segment"
    TEMP = "temp"  # hidden, or a partial download: someone is still writing it
    CONFLICT = "conflict"  # a sync engine's conflict copy
    STRAY = "stray"  # anything else


def segment_name(number: int) -> str:
    return f"seg-{number:012d}.jsonl"


def classify(name: str) -> tuple[FileKind, int | None]:
    """What a file in a host folder is, by its name (and its number, for a
    segment)."""
    found = _NAME.fullmatch(name)
    if found:
        return FileKind.SEGMENT, int(found.group(1))
    if _CONFLICT.search(name):
        return FileKind.CONFLICT, None
    if name.startswith((".", "~")) or name.endswith(("~", ".tmp", ".part", ".partial")):
        return FileKind.TEMP, None
    return FileKind.STRAY, None


class SegmentError(Exception):
    """A segment that cannot be taken as data; the message names the file."""


class Segment(Value):
    """One segment's content: ``records`` are ``(seq, session id, the
    session's record)`` (``agent.record``: checked whole, as a session), in
    order."""

    __slots__ = ("epoch", "first", "host", "kind", "last", "number", "records", "written_at")

    host: str
    number: int
    epoch: int
    kind: str  # "events" or "baseline"
    first: int
    last: int
    written_at: datetime
    records: tuple[tuple[int, str, bytes], ...]

    def __init__(  # noqa: PLR0917 -- a header's fields
        self,
        host: str,
        number: int,
        epoch: int,
        kind: str,
        first: int,
        last: int,
        written_at: datetime,
        records: tuple[tuple[int, str, bytes], ...],
    ) -> None:
        self._set(
            host=host,
            number=number,
            epoch=epoch,
            kind=kind,
            first=first,
            last=last,
            written_at=written_at,
            records=records,
        )


def record_line(seq: int, session: dict[str, object]) -> bytes:
    """One record's line, as a segment holds it."""
    line = json.dumps({"seq": seq, "session": session}, separators=(",", ":"), ensure_ascii=False)
    return line.encode() + b"\n"


def encode_segment(segment: Segment, lines: list[bytes]) -> bytes:
    """The file's bytes: ``segment``'s header, then ``lines`` (``record_line``)."""
    body = b"".join(lines)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "host": segment.host,
        "segment": segment.number,
        "epoch": segment.epoch,
        "kind": segment.kind,
        "first": segment.first,
        "last": segment.last,
        "records": len(lines),
        "written_at": format_time(segment.written_at),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


def write_segment(folder: Path, number: int, data: bytes) -> Path:
    """Write ``data`` as segment ``number`` of ``folder``, whole or not at
    all: a temp file, synced, renamed into place, the folder synced. An
    ``OSError`` leaves no file behind under the segment's name."""
    target = folder / segment_name(number)
    temp = folder / f".{segment_name(number)}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        faults.point("sync.before_rename")
        os.rename(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    sync_folder(folder)
    return target


def sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_segment(path: Path, host: str, number: int) -> Segment:
    """Segment ``number`` of ``host``'s folder, checked whole;
    ``SegmentError`` (naming the file) for anything that is not one, or
    ``OSError`` when it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SegmentError(f"{path} is not a regular file")
        if info.st_size > MAX_SEGMENT_BYTES:
            raise SegmentError(f"{path} is larger than {MAX_SEGMENT_BYTES} bytes")
        chunks = []
        left = MAX_SEGMENT_BYTES + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > MAX_SEGMENT_BYTES:
        raise SegmentError(f"{path} is larger than {MAX_SEGMENT_BYTES} bytes")
    try:
        return _parse(data, host, number)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise SegmentError(f"{path} is not a valid segment: {exc}") from None


def _parse(data: bytes, host: str, number: int) -> Segment:
    head, newline, body = data.partition(b"\n")
    if not newline:
        raise ValueError("it has no header line (a truncated file?)")
    header = json.loads(head)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"its first line is not a {FORMAT} header")
    if header.get("version") != VERSION:
        raise ValueError(f"format version {header.get('version')!r} (this version reads {VERSION})")
    if header.get("host") != host:
        raise ValueError(f"it says it is from host {header.get('host')!r}, but it is in {host!r}'s folder")
    if header.get("segment") != number:
        raise ValueError(f"it says it is segment {header.get('segment')!r}, but its name says {number}")
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise ValueError("its checksum does not match its content (truncated or damaged)")
    kind, epoch, first, last = (
        header.get("kind"),
        header.get("epoch"),
        header.get("first"),
        header.get("last"),
    )
    if kind not in ("events", "baseline"):
        raise ValueError(f"unknown kind {kind!r}")
    if not (_whole(epoch) and _whole(first) and _whole(last)) or not first <= last:  # type: ignore[operator]
        raise ValueError("its epoch and sequence range are not whole numbers in order")
    epoch, first, last = int(epoch), int(first), int(last)  # type: ignore[arg-type]
    lines = body.split(b"\n")
    if lines.pop() != b"" or len(lines) != header.get("records"):
        raise ValueError(f"it holds {len(lines)} records, its header says {header.get('records')!r}")
    records: list[tuple[int, str, bytes]] = []
    for number_in_file, line in enumerate(lines, 2):
        item = json.loads(line)
        if not isinstance(item, dict) or not _whole(item.get("seq")) or not first <= item["seq"] <= last:
            raise ValueError(f"line {number_in_file} is not a record of events {first} to {last}")
        shipped = item.get("session")
        if not isinstance(shipped, dict):
            raise ValueError(f"line {number_in_file} holds no session")
        said = shipped.get("host")
        machine = said.get("machine_id") if isinstance(said, dict) else None
        shipped["host"] = {"hostname": host, "machine_id": machine}  # named by its folder, whatever it says
        session = Session.from_dict(shipped)
        records.append((item["seq"], session.id, encode_record(session)))
    return Segment(
        host, number, epoch, kind, first, last, parse_time(header.get("written_at")), tuple(records)
    )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

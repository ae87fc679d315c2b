"""Sessions in: our own JSON lines, Timewarrior's ``timew export`` JSON,
and Watson's frames file.

A file is read and every record checked before anything is written: a bad
one is named with its line number, and nothing of that file is imported.
Then the new sessions are written in one synced batch. Importing the same
file again adds nothing: a session keeps its id (ours), or gets one derived
from its source's identity (``derived_session_id``: the same record, the
same id, still ordered by start time).

Mapping: a peer's interval or frame becomes an ended session (``end_reason``
``imported``) with its times, its whole span as active time (a timer a
user started and stopped), the source program as ``tool`` and as its
scope; Watson's project becomes ``project`` and its frame id
``external_id``; tags stay tags (a space or comma in one becomes ``_``);
Timewarrior's annotation becomes ``title``. Our own sessions come back as
they were, but one still active in the file is ended at its last sign of
life (``imported``): it cannot be active here. An interval Timewarrior is
still tracking (no end) is left out and counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from agent.activity import ACTIVITY_GAP, Activity
from agent.details import MAX_TAGS, MAX_TITLE, Details
from agent.errors import InvalidArgumentError
from agent.session import EndReason, Session, SessionStatus, to_micros
from agent.session_id import derived_session_id

__all__ = ["IMPORT_FORMATS", "MAX_IMPORT_BYTES", "Imported", "read_file", "read_sessions"]

IMPORT_FORMATS = ("jsonl", "timewarrior", "watson")
MAX_IMPORT_BYTES = 256 << 20
_TAG_UNSAFE = re.compile(r"[\s,]+")


class Imported:
    """What a file holds: its sessions, and what was left out (and why)."""

    def __init__(self, sessions: list[Session], left_out: list[str]) -> None:
        self.sessions = sessions
        self.left_out = left_out


def read_file(path: str, form: str) -> Imported:
    """``read_sessions`` of the regular file at ``path`` (at most
    ``MAX_IMPORT_BYTES``). Opened without blocking and checked before it is
    read: a FIFO or a device in its place is refused, never waited on."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidArgumentError(f"{path} is not a regular file")
        chunks, size = [], 0
        while size <= MAX_IMPORT_BYTES:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > MAX_IMPORT_BYTES:
        raise InvalidArgumentError(f"{path} is larger than {MAX_IMPORT_BYTES >> 20} MiB: split it")
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _bad(path, raw.count(b"\n", 0, exc.start) + 1, "not UTF-8 text") from None
    return read_sessions(text, form, path)


def read_sessions(text: str, form: str, source: str) -> Imported:
    """The sessions of ``text`` (a file's content, named ``source`` in
    errors) in the format ``form``; ``InvalidArgumentError`` naming the
    line of the first bad record."""
    if form == "jsonl":
        return _jsonl(text, source)
    if form == "timewarrior":
        return _timewarrior(text, source)
    if form == "watson":
        return _watson(text, source)
    raise InvalidArgumentError(f"unknown import format {form!r}: use one of {', '.join(IMPORT_FORMATS)}")


def _bad(source: str, line: int, problem: object) -> InvalidArgumentError:
    return InvalidArgumentError(f"{source}, line {line}: {problem}; nothing was imported")


# --- ours -----------------------------------------------------------------------------


def _jsonl(text: str, source: str) -> Imported:
    sessions = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            session = Session.from_dict(json.loads(line))
        except (ValueError, InvalidArgumentError) as exc:
            raise _bad(source, number, exc) from None
        if session.status is SessionStatus.ACTIVE:
            session = session.terminated(
                SessionStatus.COMPLETED, EndReason.IMPORTED, max(session.last_activity_at, session.started_at)
            )
        sessions.append(session)
    return Imported(sessions, [])


# --- the peers ------------------------------------------------------------------------


def _elements(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """The elements of a JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    lines = _Lines(text)
    position = _skip(text, 0)
    if position >= len(text) or text[position] != "[":
        raise _bad(source, lines.at(position), "not a JSON array")
    position = _skip(text, position + 1)
    if position < len(text) and text[position] == "]":
        return
    while True:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise _bad(source, lines.at(exc.pos), f"not JSON: {exc.msg}") from None
        yield lines.at(position), value
        position = _skip(text, end)
        if position < len(text) and text[position] == ",":
            position = _skip(text, position + 1)
            continue
        if position < len(text) and text[position] == "]":
            return
        raise _bad(source, lines.at(position), "expected , or ] in the array")


class _Lines:
    """Line numbers of positions met in increasing order, each counted once
    (a count from the start every time would be quadratic)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._position = 0
        self._line = 1

    def at(self, position: int) -> int:
        if position < self._position:
            return self._text.count("\n", 0, position) + 1
        self._line += self._text.count("\n", self._position, position)
        self._position = position
        return self._line


def _skip(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _tags(raw: object, source: str, line: int) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise _bad(source, line, "tags must be a list of strings")
    tags = []
    for tag in raw:
        cleaned = _TAG_UNSAFE.sub("_", tag.strip()).lstrip("+-")
        if cleaned and cleaned not in tags:
            tags.append(cleaned)
    return tuple(tags[:MAX_TAGS])


def _peer_session(
    identity: bytes, start: datetime, end: datetime, tool: str, details: dict[str, Any]
) -> Session:
    if end < start:
        raise ValueError(f"it ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    micros = (to_micros(start), to_micros(end))
    return Session(
        id=derived_session_id(start, identity),
        started_at=start,
        ended_at=end,
        status=SessionStatus.COMPLETED,
        memory_count=0,
        last_activity_at=end,
        end_reason=EndReason.IMPORTED,
        scope=tool,
        details=Details(tool=tool, **details),
        activity=Activity(ACTIVITY_GAP, (micros,)),
    )


def _one_line(text: str) -> str | None:
    """A peer's annotation as a title: one line, at most ``MAX_TITLE``
    bytes (a longer one is cut at a character boundary)."""
    line = " ".join("".join(ch if ch >= " " and ch != "\x7f" else " " for ch in text).split())
    return line.encode("utf-8")[:MAX_TITLE].decode("utf-8", "ignore") or None


def _timew_time(raw: object) -> datetime:
    if not isinstance(raw, str):
        raise ValueError(f"a time must be text like 20261124T090000Z, not {raw!r}")
    return datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _timewarrior(text: str, source: str) -> Imported:
    sessions, open_intervals = [], 0
    for line, interval in _elements(text, source):
        try:
            if not isinstance(interval, dict):
                raise ValueError("an interval is a JSON object")
            if "end" not in interval:
                open_intervals += 1
                continue
            start, end = _timew_time(interval.get("start")), _timew_time(interval["end"])
            tags = _tags(interval.get("tags"), source, line)
            annotation = interval.get("annotation")
            if annotation is not None and not isinstance(annotation, str):
                raise ValueError("annotation must be text")
            title = " ".join(annotation.split())[:256] if annotation else None
            identity = json.dumps(
                ["timewarrior", interval["start"], interval["end"], list(tags), title]
            ).encode()
            sessions.append(
                _peer_session(identity, start, end, "timewarrior", {"tags": tags, "title": title})
            )
        except (ValueError, InvalidArgumentError) as exc:
            raise _bad(source, line, exc) from None
    left_out = [f"{open_intervals} interval(s) still being tracked (no end)"] if open_intervals else []
    return Imported(sessions, left_out)


def _watson(text: str, source: str) -> Imported:
    sessions = []
    for line, frame in _elements(text, source):
        try:
            if not isinstance(frame, list) or len(frame) < 4:
                raise ValueError("a frame is [start, stop, project, id, tags?, updated_at?]")
            start_ts, stop_ts, project, frame_id = frame[:4]
            for value in (start_ts, stop_ts):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"a frame's times are Unix timestamps, not {value!r}")
            if not isinstance(project, str) or not isinstance(frame_id, str):
                raise ValueError("a frame's project and id are text")
            tags = _tags(frame[4] if len(frame) > 4 else None, source, line)
            start = datetime.fromtimestamp(start_ts, UTC)
            end = datetime.fromtimestamp(stop_ts, UTC)
            details = {"project": project.strip() or None, "tags": tags, "external_id": frame_id or None}
            sessions.append(_peer_session(b"watson\0" + frame_id.encode(), start, end, "watson", details))
        except (ValueError, OverflowError, OSError, InvalidArgumentError) as exc:
            raise _bad(source, line, exc) from None
    return Imported(sessions, [])

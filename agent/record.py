"""A session's record in the store: its encoding, versioned, and its decoding.

Decoding runs the same validation as every other way a ``Session`` is made,
which is how a corrupt record is caught: any failure is a ``StorageError``
naming the key.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator

from agent.activity import Activity
from agent.details import NO_DETAILS, Details, GitState, Host
from agent.encoding import Reader, write_str, write_varint
from agent.errors import InvalidArgumentError, StorageError
from agent.layout import DEFAULT_SCOPE
from agent.session import EndReason, Session, SessionStatus, from_micros, to_micros

__all__ = [
    "RECORD_VERSION",
    "Summary",
    "decode_record",
    "encode_record",
    "ended_span",
    "is_active_record",
    "summarize_record",
]

RECORD_VERSION = 4
# v1: version, status code, started_at, ended_at (-1 = none), last_activity_at
# (microseconds since the epoch), memory_count. The id is the key, not stored.
# v2: v1, then end reason code (0 = none), owner pid, idle timeout and idle
# grace in seconds (0 = none). v1 records are read as ended for an unknown
# reason, with no owner and no timeout.
# v3: v2, then the scope's name: its length in one byte and its ASCII (length
# 0: the default scope). v1 and v2 records belong to the default scope.
# v4: v3, then what the session was and when it was active, as sections: a
# field's number, the payload's length (a varint), the payload. Only the
# fields a session has are written; a v1-v3 record has none of them (and no
# activity: its active time is unknown). See _FIELDS.
_RECORD_V1 = struct.Struct("<BBqqqQ")
_RECORD_V2 = struct.Struct("<BBqqqQBIII")
_LAYOUTS = {1: _RECORD_V1, 2: _RECORD_V2, 3: _RECORD_V2, 4: _RECORD_V2}
# Section numbers of v4 (never reuse one; add new ones at the end).
_CWD, _PROJECT, _GIT, _TOOL, _EXTERNAL_ID, _PARENT, _TAGS, _TITLE, _LABELS, _HOST, _ACTIVITY = range(1, 12)
_TEXT_FIELDS = {_CWD: "cwd", _PROJECT: "project", _TOOL: "tool", _EXTERNAL_ID: "external_id", _TITLE: "title"}
_STATUS_CODES = {
    SessionStatus.ACTIVE: 1,
    SessionStatus.COMPLETED: 2,
    SessionStatus.ABANDONED: 3,
}
_STATUS_BY_CODE = {code: status for status, code in _STATUS_CODES.items()}
_REASON_CODES = {reason: code for code, reason in enumerate(EndReason, start=1)}
_REASON_BY_CODE = {code: reason for reason, code in _REASON_CODES.items()}


def encode_record(session: Session) -> bytes:
    ended = to_micros(session.ended_at) if session.ended_at is not None else -1
    scope = b"" if session.scope == DEFAULT_SCOPE else session.scope.encode("ascii")
    fixed = _RECORD_V2.pack(
        RECORD_VERSION,
        _STATUS_CODES[session.status],
        to_micros(session.started_at),
        ended,
        to_micros(session.last_activity_at),
        session.memory_count,
        _REASON_CODES[session.end_reason] if session.end_reason else 0,
        session.owner_pid or 0,
        session.idle_timeout or 0,
        session.idle_grace,
    )
    return fixed + bytes((len(scope),)) + scope + _encode_sections(session)


def _encode_sections(session: Session) -> bytes:
    details, out = session.details, bytearray()

    def section(number: int, payload: bytes) -> None:
        out.append(number)
        write_varint(out, len(payload))
        out.extend(payload)

    for number, name in _TEXT_FIELDS.items():
        value = getattr(details, name)
        if value is not None:
            section(number, value.encode("utf-8"))
    if details.git is not None:
        git = bytearray((details.git.worktree | (details.git.branch is not None) << 1,))
        write_str(git, details.git.root)
        write_str(git, details.git.branch or details.git.commit or "")
        if details.git.branch is not None:
            write_str(git, details.git.commit or "")
        section(_GIT, bytes(git))
    if details.parent is not None:
        section(_PARENT, details.parent.encode("ascii"))
    if details.tags:
        tags = bytearray()
        write_varint(tags, len(details.tags))
        for tag in details.tags:
            write_str(tags, tag)
        section(_TAGS, bytes(tags))
    if details.labels:
        labels = bytearray()
        write_varint(labels, len(details.labels))
        for key, value in details.labels:
            write_str(labels, key)
            write_str(labels, value)
        section(_LABELS, bytes(labels))
    if details.host is not None:
        host = bytearray()
        write_str(host, details.host.hostname)
        write_str(host, details.host.machine_id or "")
        section(_HOST, bytes(host))
    if session.activity is not None:
        section(_ACTIVITY, session.activity.encode())
    return bytes(out)


def _sections(raw: bytes, start: int) -> Iterator[tuple[int, int, int]]:
    """The v4 sections from ``start``: (number, payload start, payload end),
    each number once."""
    reader = Reader(raw, start)
    seen = 0  # a bit per section number
    while not reader.done:
        number = raw[reader.position]
        reader.position += 1
        if seen >> number & 1:
            raise ValueError(f"section {number} twice")
        seen |= 1 << number
        size = reader.varint()
        begin = reader.position
        end = begin + size
        if end > reader.end:
            raise ValueError("a truncated field")
        reader.position = end
        yield number, begin, end


def _decode_sections(raw: bytes, start: int) -> tuple[Details, Activity | None]:
    fields: dict[str, object] = {}
    activity = None
    for number, begin, end in _sections(raw, start):
        name = _TEXT_FIELDS.get(number)
        if name is not None:
            fields[name] = raw[begin:end].decode("utf-8")
            continue
        payload = Reader(raw, begin, end)
        if number == _GIT:
            flags, root, branch_or_commit = payload.take(1)[0], payload.str(), payload.str()
            has_branch = bool(flags & 2)
            commit = payload.str() if has_branch else branch_or_commit
            fields["git"] = GitState(
                root, branch_or_commit if has_branch else None, commit or None, bool(flags & 1)
            )
        elif number == _PARENT:
            fields["parent"] = raw[begin:end].decode("ascii")
        elif number == _TAGS:
            fields["tags"] = [payload.str() for _ in range(payload.varint())]
        elif number == _LABELS:
            fields["labels"] = {payload.str(): payload.str() for _ in range(payload.varint())}
        elif number == _HOST:
            hostname, machine_id = payload.str(), payload.str()
            fields["host"] = Host(hostname, machine_id or None)
        elif number == _ACTIVITY:
            activity = Activity.decode(raw[begin:end])
        else:
            raise ValueError(f"unknown section {number}")
        if number in (_GIT, _TAGS, _LABELS, _HOST) and not payload.done:
            raise ValueError(f"trailing bytes in section {number}")
    return Details(**fields), activity  # type: ignore[arg-type]


class Summary:
    """What a record says in brief -- when, where, on what, when active --
    read without building (and validating) a whole ``Session``: a report
    over years of history reads this, several times faster. Times are
    microseconds since the epoch; ``end`` is ``None`` while active."""

    __slots__ = ("end", "host", "id", "project", "scope", "spans", "start", "tags", "tool")

    def __init__(  # noqa: PLR0917 -- a record's fields
        self,
        id: str,
        scope: str,
        start: int,
        end: int | None,
        project: str | None,
        tool: str | None,
        tags: tuple[str, ...],
        spans: tuple[tuple[int, int], ...] | None,
    ) -> None:
        self.id, self.scope, self.start, self.end = id, scope, start, end
        self.project, self.tool, self.tags, self.spans = project, tool, tags, spans
        self.host: str | None = None  # the machine's, in a report over several (agent.host_choice)

    @classmethod
    def of(cls, session: Session) -> Summary:
        d = session.details
        return cls(
            session.id,
            session.scope,
            to_micros(session.started_at),
            None if session.ended_at is None else to_micros(session.ended_at),
            d.project,
            d.tool,
            d.tags,
            None if session.activity is None else session.activity.spans,
        )


def summarize_record(key: bytes, value: bytes) -> Summary:
    """``Summary`` of a record; ``StorageError`` if its structure is broken
    (its fields are not validated one by one, as ``decode_record`` does)."""
    try:
        version = value[0] if value else 0
        layout = _LAYOUTS.get(version)
        if layout is None:
            raise ValueError(f"unknown record version {version}")
        scope, project, tool, spans = DEFAULT_SCOPE, None, None, None
        tags: tuple[str, ...] = ()
        if version >= 3 and len(value) > layout.size:
            scope_end = layout.size + 1 + value[layout.size]
            scope = value[layout.size + 1 : scope_end].decode("ascii") or DEFAULT_SCOPE
            if version >= 4:
                for number, begin, end in _sections(value, scope_end):
                    if number == _PROJECT:
                        project = value[begin:end].decode("utf-8")
                    elif number == _TOOL:
                        tool = value[begin:end].decode("utf-8")
                    elif number == _TAGS:
                        payload = Reader(value, begin, end)
                        tags = tuple(payload.str() for _ in range(payload.varint()))
                    elif number == _ACTIVITY:
                        spans = Activity.decode(value[begin:end]).spans
        _, _, started, ended, *_ = _RECORD_V1.unpack_from(value)
        return Summary(
            key.decode("ascii"), scope, started, None if ended == -1 else ended, project, tool, tags, spans
        )
    except (ValueError, IndexError, UnicodeDecodeError, struct.error) as exc:
        shown = key.decode("ascii", "backslashreplace")
        raise StorageError(f"session record {shown} is corrupt: {exc}") from None


@functools.lru_cache(maxsize=1024)
def decode_record(key: bytes, value: bytes) -> Session:
    """Decode and validate; any failure is a ``StorageError`` naming the key.

    Memoized by the record's bytes (sessions are immutable values): the
    daemon reads a scope's active session on every command, and decoding
    and validating its details is most of what a read costs."""
    shown_key = key.decode("ascii", "backslashreplace")
    try:
        if not value:
            raise ValueError("empty record")
        version = value[0]
        layout = _LAYOUTS.get(version)
        if layout is None:
            raise ValueError(f"unknown record version {version}")
        scope, details, active_spans = DEFAULT_SCOPE, NO_DETAILS, None
        if version >= 3:
            scope_end = layout.size + 1 + value[layout.size] if len(value) > layout.size else len(value) + 1
            if scope_end > len(value) or (version == 3 and scope_end != len(value)):
                raise ValueError(f"{len(value)} bytes do not hold a version {version} record")
            scope = value[layout.size + 1 : scope_end].decode("ascii") or DEFAULT_SCOPE
            if version >= 4:
                details, active_spans = _decode_sections(value, scope_end)
        elif len(value) != layout.size:
            raise ValueError(f"{len(value)} bytes, expected {layout.size} for version {version}")
        _, code, started, ended, activity, count, *rules = layout.unpack(value[: layout.size])
        if code not in _STATUS_BY_CODE:
            raise ValueError(f"unknown status code {code}")
        status = _STATUS_BY_CODE[code]
        if rules:
            reason_code, owner, idle, grace = rules
            if reason_code and reason_code not in _REASON_BY_CODE:
                raise ValueError(f"unknown end reason code {reason_code}")
            reason = _REASON_BY_CODE.get(reason_code)
        else:  # version 1
            reason = None if status is SessionStatus.ACTIVE else EndReason.UNKNOWN
            owner = idle = grace = 0
        return Session(
            id=key.decode("ascii"),
            started_at=from_micros(started),
            ended_at=None if ended == -1 else from_micros(ended),
            status=status,
            memory_count=count,
            last_activity_at=from_micros(activity),
            end_reason=reason,
            owner_pid=owner or None,
            idle_timeout=idle or None,
            idle_grace=grace,
            scope=scope,
            details=details,
            activity=active_spans,
        )
    except (ValueError, OverflowError, UnicodeDecodeError, struct.error, InvalidArgumentError) as exc:
        raise StorageError(f"session record {shown_key} is corrupt: {exc}") from None


def is_active_record(value: bytes) -> bool:
    """Whether a record is of an active session, from its fixed header."""
    layout = _LAYOUTS.get(value[0]) if value else None
    if layout is None or len(value) < _RECORD_V1.size:
        return False
    return bool(_RECORD_V1.unpack_from(value)[3] == -1)


def ended_span(value: bytes) -> int:
    """An ended session's wall time in microseconds, read from its record's
    fixed header alone (0 while active, or if the header cannot be read):
    cheap enough for a pass over a whole store."""
    layout = _LAYOUTS.get(value[0]) if value else None
    if layout is None or len(value) < _RECORD_V1.size:
        return 0
    _, _, started, ended, *_ = _RECORD_V1.unpack_from(value)
    return max(0, ended - started) if ended != -1 else 0

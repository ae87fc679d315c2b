"""A session's record in the store: its encoding, versioned, and its decoding.

Decoding runs the same validation as every other way a ``Session`` is made,
which is how a corrupt record is caught: any failure is a ``StorageError``
naming the key.
"""

from __future__ import annotations

import struct

from agent.errors import StorageError
from agent.layout import DEFAULT_SCOPE
from agent.session import EndReason, Session, SessionStatus, from_micros, to_micros

__all__ = ["RECORD_VERSION", "decode_record", "encode_record"]

RECORD_VERSION = 3
# v1: version, status code, started_at, ended_at (-1 = none), last_activity_at
# (microseconds since the epoch), memory_count. The id is the key, not stored.
# v2: v1, then end reason code (0 = none), owner pid, idle timeout and idle
# grace in seconds (0 = none). v1 records are read as ended for an unknown
# reason, with no owner and no timeout.
# v3: v2, then the scope's name: its length in one byte and its ASCII (length
# 0: the default scope). v1 and v2 records belong to the default scope.
_RECORD_V1 = struct.Struct("<BBqqqQ")
_RECORD_V2 = struct.Struct("<BBqqqQBIII")
_LAYOUTS = {1: _RECORD_V1, 2: _RECORD_V2, 3: _RECORD_V2}
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
    return fixed + bytes((len(scope),)) + scope


def decode_record(key: bytes, value: bytes) -> Session:
    """Decode and validate; any failure is a ``StorageError`` naming the key."""
    shown_key = key.decode("ascii", "backslashreplace")
    try:
        if not value:
            raise ValueError("empty record")
        version = value[0]
        layout = _LAYOUTS.get(version)
        if layout is None:
            raise ValueError(f"unknown record version {version}")
        scope = DEFAULT_SCOPE
        if version >= 3:
            scope = _decode_scope(value[layout.size :], version)
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
        )
    except (ValueError, OverflowError, UnicodeDecodeError, struct.error) as exc:
        raise StorageError(f"session record {shown_key} is corrupt: {exc}") from None


def _decode_scope(tail: bytes, version: int) -> str:
    if not tail or len(tail) != 1 + tail[0]:
        raise ValueError(f"{_RECORD_V2.size + len(tail)} bytes do not hold a version {version} record")
    return tail[1:].decode("ascii") or DEFAULT_SCOPE

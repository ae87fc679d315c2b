"""The session model: ``Session``, ``SessionStatus``, ids and record encoding.

A ``Session`` is immutable; each transition returns a new one, so a value
read from the store can never be half-updated. Every constructor path runs
the same validation, which is how a corrupt record is caught on decode.
"""

from __future__ import annotations

import enum
import os
import struct
import threading
from datetime import UTC, datetime, timedelta

from agent.errors import InvalidSessionIdError, StorageError
from agent.values import Value

__all__ = [
    "RECORD_VERSION",
    "Session",
    "SessionStatus",
    "decode_record",
    "encode_record",
    "format_time",
    "new_session_id",
    "parse_session_id",
    "session_id_floor",
    "utc_now",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# A canonical UUID is 36 characters; "urn:uuid:" plus braces is the longest
# spelling accepted. Anything longer is rejected before parsing.
_MAX_ID_INPUT = 47
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class SessionStatus(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    ABANDONED = "abandoned"

    @property
    def is_terminated(self) -> bool:
        return self is not SessionStatus.ACTIVE


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, the one spelling of times in JSON."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _to_micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


# --- ids --------------------------------------------------------------------

_id_lock = threading.Lock()
_last_id_state = (0, 0)  # (unix ms, 74 random bits) of the last id made here


def new_session_id(at: datetime | None = None) -> str:
    """A UUIDv7 (RFC 9562): its text sorts by creation time.

    Ids made in this process are strictly increasing even within one
    millisecond or when the clock steps back, so key order is start order.
    """
    global _last_id_state
    millis = _to_micros(at or utc_now()) // 1000
    with _id_lock:
        last_millis, last_rand = _last_id_state
        if millis <= last_millis:
            millis, rand = last_millis, last_rand + 1 + _random_bits(16)
            if rand >= 1 << 74:
                millis, rand = last_millis + 1, _random_bits(74)
        else:
            rand = _random_bits(74)
        _last_id_state = (millis, rand)
    rand_a, rand_b = rand >> 62, rand & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return _uuid_text(value)


def _random_bits(bits: int) -> int:
    """From the OS's CSPRNG, like ``secrets``, without importing it (and
    ``hashlib`` with it) on the CLI's path."""
    return int.from_bytes(os.urandom((bits + 7) // 8), "big") >> (-bits % 8)


def _uuid_text(value: int) -> str:
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _canonical_uuid(text: str) -> str | None:
    """The canonical form of a UUID spelling (hyphens anywhere or none,
    braces, ``urn:uuid:``, any case), or ``None``. Stricter than
    ``uuid.UUID``, which also lets ``int()`` accept signs and underscores;
    and ``uuid`` costs milliseconds to import on the CLI's path."""
    digits = text.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
    if len(digits) != 32 or not _HEX_DIGITS.issuperset(digits):
        return None
    return _uuid_text(int(digits, 16))


def session_id_floor(moment: datetime) -> str:
    """The smallest UUIDv7 text of ``moment``'s millisecond, for range scans."""
    millis = max(0, _to_micros(moment) // 1000)
    return _uuid_text((millis << 80) | (0x7 << 76))


def parse_session_id(raw: str) -> str:
    """Validate an id from outside and return its canonical lower-case form.

    The usual UUID spellings are taken (see ``_canonical_uuid``); nothing
    else is, so no outside string becomes a store key or a path without
    passing here.
    """
    if not raw or not raw.strip():
        raise InvalidSessionIdError(raw, "it is empty")
    if len(raw) > _MAX_ID_INPUT:
        raise InvalidSessionIdError(raw, f"it is {len(raw)} characters long")
    canonical = _canonical_uuid(raw.strip())
    if canonical is None:
        raise InvalidSessionIdError(raw, "it is not a UUID")
    return canonical


# --- the model --------------------------------------------------------------


class Session(Value):
    """One span of work. Times are timezone-aware UTC.

    Invariants (checked on every construction): ``ended_at`` is set exactly
    when the status is terminated; ``started_at <= last_activity_at``, and
    both are ``<= ended_at`` once ended; ``memory_count >= 0``.
    Immutable, compared and hashed by value.
    """

    __slots__ = ("ended_at", "id", "last_activity_at", "memory_count", "started_at", "status")

    id: str
    started_at: datetime
    ended_at: datetime | None
    status: SessionStatus
    memory_count: int
    last_activity_at: datetime

    def __init__(  # noqa: PLR0917 -- a record's fields, in their order
        self,
        id: str,
        started_at: datetime,
        ended_at: datetime | None,
        status: SessionStatus,
        memory_count: int,
        last_activity_at: datetime,
    ) -> None:
        self._set(
            id=id,
            started_at=started_at,
            ended_at=ended_at,
            status=status,
            memory_count=memory_count,
            last_activity_at=last_activity_at,
        )
        problem = self._problem()
        if problem:
            raise ValueError(f"invalid session {self.id!r}: {problem}")

    def _replace(self, **changes: object) -> Session:
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return Session(**fields)

    def _problem(self) -> str | None:
        if not isinstance(self.id, str) or _canonical_uuid(self.id) is None:
            return "id is not a UUID"
        if _canonical_uuid(self.id) != self.id:
            return "id is not a canonical UUID"
        if not isinstance(self.status, SessionStatus):
            return f"unknown status {self.status!r}"
        times = [self.started_at, self.last_activity_at]
        if self.ended_at is not None:
            times.append(self.ended_at)
        for moment in times:
            if not isinstance(moment, datetime) or moment.utcoffset() != timedelta(0):
                return f"time {moment!r} is not timezone-aware UTC"
        if (self.ended_at is None) != (self.status is SessionStatus.ACTIVE):
            return f"status {self.status.value} with ended_at {self.ended_at}"
        if self.last_activity_at < self.started_at:
            return "last activity before start"
        if self.ended_at is not None and self.ended_at < self.last_activity_at:
            return "ended before its last activity"
        if not isinstance(self.memory_count, int) or self.memory_count < 0:
            return f"memory_count {self.memory_count!r} is not a count"
        return None

    @classmethod
    def begin(cls, at: datetime | None = None) -> Session:
        now = at or utc_now()
        return cls(
            id=new_session_id(now),
            started_at=now,
            ended_at=None,
            status=SessionStatus.ACTIVE,
            memory_count=0,
            last_activity_at=now,
        )

    @property
    def is_active(self) -> bool:
        return self.status is SessionStatus.ACTIVE

    def completed(self, at: datetime | None = None) -> Session:
        return self.terminated(SessionStatus.COMPLETED, at)

    def abandoned(self, at: datetime | None = None) -> Session:
        return self.terminated(SessionStatus.ABANDONED, at)

    def terminated(self, status: SessionStatus, at: datetime | None = None) -> Session:
        if not status.is_terminated:
            raise ValueError("a session can only be terminated as completed or abandoned")
        if not self.is_active:
            raise ValueError(f"session {self.id} is already {self.status.value}")
        # A clock that stepped back must not produce an end before the start.
        ended = max(at or utc_now(), self.last_activity_at)
        return self._replace(status=status, ended_at=ended)

    def with_activity(self, at: datetime) -> Session:
        if not self.is_active:
            raise ValueError(f"session {self.id} is {self.status.value}")
        return self._replace(last_activity_at=max(at, self.last_activity_at))

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of a session, as the CLI and the socket print it."""
        return {
            "id": self.id,
            "status": self.status.value,
            "started_at": format_time(self.started_at),
            "ended_at": format_time(self.ended_at) if self.ended_at else None,
            "memory_count": self.memory_count,
            "last_activity_at": format_time(self.last_activity_at),
        }

    @classmethod
    def from_dict(cls, data: object) -> Session:
        """The inverse of ``to_dict``, for sessions that arrive as JSON (the
        daemon's replies). ``ValueError`` names what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"a session is a JSON object, not {type(data).__name__}")
        try:
            ended = data["ended_at"]
            return cls(
                id=data["id"],
                started_at=_parse_time(data["started_at"]),
                ended_at=None if ended is None else _parse_time(ended),
                status=SessionStatus(data["status"]),
                memory_count=data["memory_count"],
                last_activity_at=_parse_time(data["last_activity_at"]),
            )
        except KeyError as exc:
            raise ValueError(f"a session lacks the field {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(f"a session has a field of the wrong type: {exc}") from None


def _parse_time(text: object) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"time {text!r} is not a string")
    return datetime.fromisoformat(text).astimezone(UTC)


# --- record encoding ----------------------------------------------------------

RECORD_VERSION = 1
# v1: version, status code, started_at, ended_at (-1 = none), last_activity_at
# (microseconds since the epoch), memory_count. The id is the key, not stored.
_RECORD_V1 = struct.Struct("<BBqqqQ")
_STATUS_CODES = {
    SessionStatus.ACTIVE: 1,
    SessionStatus.COMPLETED: 2,
    SessionStatus.ABANDONED: 3,
}
_STATUS_BY_CODE = {code: status for status, code in _STATUS_CODES.items()}


def encode_record(session: Session) -> bytes:
    ended = _to_micros(session.ended_at) if session.ended_at is not None else -1
    return _RECORD_V1.pack(
        RECORD_VERSION,
        _STATUS_CODES[session.status],
        _to_micros(session.started_at),
        ended,
        _to_micros(session.last_activity_at),
        session.memory_count,
    )


def decode_record(key: bytes, value: bytes) -> Session:
    """Decode and validate; any failure is a ``StorageError`` naming the key."""
    shown_key = key.decode("ascii", "backslashreplace")
    try:
        if not value:
            raise ValueError("empty record")
        if value[0] != RECORD_VERSION:
            raise ValueError(f"unknown record version {value[0]}")
        if len(value) != _RECORD_V1.size:
            raise ValueError(f"{len(value)} bytes, expected {_RECORD_V1.size}")
        _, code, started, ended, activity, count = _RECORD_V1.unpack(value)
        if code not in _STATUS_BY_CODE:
            raise ValueError(f"unknown status code {code}")
        return Session(
            id=key.decode("ascii"),
            started_at=_from_micros(started),
            ended_at=None if ended == -1 else _from_micros(ended),
            status=_STATUS_BY_CODE[code],
            memory_count=count,
            last_activity_at=_from_micros(activity),
        )
    except (ValueError, OverflowError, UnicodeDecodeError) as exc:
        raise StorageError(f"session record {shown_key} is corrupt: {exc}") from None

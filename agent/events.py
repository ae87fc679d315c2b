"""Events: what happened to a session, numbered, as the event log keeps them.

Every change of a session is an ``Event``: ``started``, ``ended`` (its
reason in the session), ``activity`` (a heartbeat recorded), ``updated``
(what it was: project, tags, title, ...), ``counted`` (memories). Each has
a sequence number (``seq``, from 1, one more per event, never reused while
the log lasts), the moment it was recorded (``at``, UTC) and the session as
the change left it -- so a consumer has the metadata without asking.

The wire form (the socket's ``subscribe``, ``session-agent events --json``,
a hook's stdin) is one JSON object::

    {"seq": 42, "kind": "ended", "at": "2026-11-30T09:12:03.120000Z",
     "session": {... as `session-agent show --json` ...}}

and, where events were trimmed before a reader got them, a ``Gap``::

    {"seq": 41, "kind": "gap", "from": 3, "to": 41}

(events 3 to 41 are gone; reading goes on after 41).

Stored (``agent.event_log``): key = ``seq`` as 8 bytes big-endian; value =
version 1, kind code, ``at`` in microseconds (8 bytes, signed), the id's
length and the id, then the session's record (``agent.record``).
"""

from __future__ import annotations

import enum
import fnmatch
import struct
from datetime import datetime

from agent.errors import InvalidArgumentError, StorageError
from agent.record import decode_record, encode_record
from agent.session import Session, format_time, from_micros, parse_time, to_micros
from agent.values import Value

__all__ = ["KINDS", "Event", "EventFilter", "EventKind", "Gap", "occurrence_kinds", "parse_kinds"]


class EventKind(enum.Enum):
    STARTED = "started"
    ENDED = "ended"
    ACTIVITY = "activity"
    UPDATED = "updated"
    COUNTED = "counted"


KINDS = tuple(kind.value for kind in EventKind)
_CODES = {kind: code for code, kind in enumerate(EventKind, start=1)}  # stored: never renumber
_KINDS_BY_CODE = {code: kind for kind, code in _CODES.items()}
_HEADER = struct.Struct(">BBqB")  # version, kind, at (µs), id length
_VERSION = 1


class Event(Value):
    """One change of one session, as the log numbered it."""

    __slots__ = ("at", "kind", "seq", "session")

    seq: int
    kind: EventKind
    at: datetime
    session: Session

    def __init__(self, seq: int, kind: EventKind, at: datetime, session: Session) -> None:
        self._set(seq=seq, kind=kind, at=at, session=session)

    def to_wire(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "kind": self.kind.value,
            "at": format_time(self.at),
            "session": self.session.to_dict(),
        }

    @classmethod
    def from_wire(cls, data: dict[str, object]) -> Event:
        """The inverse of ``to_wire``; ``ValueError`` names what is wrong."""
        seq = data.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValueError(f"an event's seq is a positive whole number, not {seq!r}")
        try:
            kind = EventKind(data.get("kind"))
        except ValueError:
            raise ValueError(f"unknown event kind {data.get('kind')!r}") from None
        return cls(seq, kind, parse_time(data.get("at")), Session.from_dict(data.get("session")))

    def encode(self) -> bytes:
        key = self.session.id.encode("ascii")
        head = _HEADER.pack(_VERSION, _CODES[self.kind], to_micros(self.at), len(key))
        return head + key + encode_record(self.session)

    @classmethod
    def decode(cls, seq: int, raw: bytes) -> Event:
        """``StorageError`` for a record this version cannot read."""
        try:
            version, code, at, length = _HEADER.unpack_from(raw)
            if version != _VERSION or code not in _KINDS_BY_CODE:
                raise ValueError(f"version {version}, kind {code}")
            start = _HEADER.size
            key = raw[start : start + length]
            session = decode_record(key, raw[start + length :])
        except (struct.error, ValueError) as exc:
            raise StorageError(f"event {seq} is damaged or of an unknown form ({exc})") from None
        return cls(seq, _KINDS_BY_CODE[code], from_micros(at), session)


class Gap(Value):
    """Events ``first`` to ``last`` are no longer kept: a reader asked for
    them after retention trimmed them (``[events]`` in config.toml)."""

    __slots__ = ("first", "last")

    first: int
    last: int

    def __init__(self, first: int, last: int) -> None:
        self._set(first=first, last=last)

    @property
    def seq(self) -> int:
        """Where reading goes on after: the last event missed."""
        return self.last

    def to_wire(self) -> dict[str, object]:
        return {"seq": self.last, "kind": "gap", "from": self.first, "to": self.last}


def parse_kinds(raw: object, what: str = "kinds") -> frozenset[EventKind] | None:
    """Kinds named in a request or a config (a list of names); ``None`` for
    all of them (no list, or an empty one)."""
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple)) or not all(isinstance(k, str) for k in raw):
        raise InvalidArgumentError(f"{what} must be a list of event kinds ({', '.join(KINDS)})")
    unknown = sorted(set(raw) - set(KINDS))
    if unknown:
        raise InvalidArgumentError(f"unknown event kind {', '.join(unknown)}; known: {', '.join(KINDS)}")
    return frozenset(EventKind(k) for k in raw) or None


class EventFilter(Value):
    """Which events a reader wants: of these ``kinds`` (``None``: all), in
    scopes matching ``scope`` (a shell pattern such as ``claude-*``), of
    ``project``, of ``tool``."""

    __slots__ = ("kinds", "project", "scope", "tool")

    kinds: frozenset[EventKind] | None
    scope: str | None
    project: str | None
    tool: str | None

    def __init__(
        self,
        kinds: frozenset[EventKind] | None = None,
        scope: str | None = None,
        project: str | None = None,
        tool: str | None = None,
    ) -> None:
        self._set(kinds=kinds, scope=scope, project=project, tool=tool)

    def matches(self, event: Event) -> bool:
        session = event.session
        return (
            (self.kinds is None or event.kind in self.kinds)
            and (self.scope is None or fnmatch.fnmatchcase(session.scope, self.scope))
            and (self.project is None or session.details.project == self.project)
            and (self.tool is None or session.details.tool == self.tool)
        )

    @classmethod
    def from_args(cls, args: dict[str, object], kinds_key: str = "kinds") -> EventFilter:
        """From a request's (or a hook's) kinds (under ``kinds_key``),
        ``scope``, ``project``, ``tool``; ``InvalidArgumentError`` names the
        bad one."""
        texts: dict[str, str | None] = {}
        for name in ("scope", "project", "tool"):
            value = args.get(name)
            if value is not None and (not isinstance(value, str) or not value or len(value) > 256):
                raise InvalidArgumentError(f"{name} must be a non-empty string of at most 256 characters")
            texts[name] = value
        return cls(parse_kinds(args.get(kinds_key), kinds_key), **texts)


def occurrence_kinds(before: Session, after: Session) -> tuple[EventKind, ...]:
    """What a rewrite of ``before`` into ``after`` was: ``updated`` (what it
    was), ``counted`` (its memories), or both."""
    kinds = []
    if before.details != after.details:
        kinds.append(EventKind.UPDATED)
    if before.memory_count != after.memory_count:
        kinds.append(EventKind.COUNTED)
    return tuple(kinds)

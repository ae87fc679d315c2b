"""The session model: ``Session``, ``SessionStatus``, ``EndReason``. (Ids are
``agent.session_id``'s. (How a session is
stored is ``agent.record``'s.)

A ``Session`` is immutable; each transition returns a new one, so a value
read from the store can never be half-updated. Every constructor path runs
the same validation, which is how a corrupt record is caught on decode.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta

from agent.activity import ACTIVITY_GAP, Activity
from agent.details import NO_DETAILS, Details
from agent.scope import DEFAULT_SCOPE, scope_problem
from agent.session_id import canonical_uuid, new_session_id
from agent.values import Value

__all__ = [
    "MAX_IDLE_SECONDS",
    "MAX_PID",
    "EndReason",
    "Session",
    "SessionStatus",
    "format_time",
    "from_micros",
    "parse_time",
    "to_micros",
    "utc_now",
    "wire_time",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class SessionStatus(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    ABANDONED = "abandoned"

    @property
    def is_terminated(self) -> bool:
        return self is not SessionStatus.ACTIVE


class EndReason(enum.StrEnum):
    """Why a session ended: every terminated session carries one."""

    CLI = "cli"  # `session-agent end`/`abandon`, or the control socket
    API = "api"  # the Python API (SessionManager.end_session, ...)
    FILE = "file"  # the current file: `end`/`abandon` written, or the file deleted
    SIGNAL = "signal"  # SIGUSR2 to the daemon
    IDLE = "idle"  # no activity for the session's idle timeout
    OWNER_EXITED = "owner_exited"  # the process the session was bound to exited
    REPLACED = "replaced"  # `start --replace` began a new one
    CRASH_RECOVERY = "crash_recovery"  # found active beside the active one, after a crash
    UNKNOWN = "unknown"  # ended before end reasons were recorded
    IMPORTED = "imported"  # brought in by `session-agent import` (from a peer's file, or still active in one)


MAX_PID = 1 << 22  # Linux's largest pid_max
MAX_IDLE_SECONDS = 366 * 86400


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, the one spelling of times in JSON."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


# --- the model --------------------------------------------------------------


class Session(Value):
    """One span of work. Times are timezone-aware UTC.

    Invariants (checked on every construction): ``ended_at`` and
    ``end_reason`` are set exactly when the status is terminated;
    ``started_at <= last_activity_at``, and both are ``<= ended_at`` once
    ended; ``memory_count >= 0``. The rules the session was started under
    travel with it: ``owner_pid`` (the process it is bound to), and
    ``idle_timeout``/``idle_grace`` in seconds; and ``scope``, the lane it
    belongs to (``agent.scope``). Immutable, compared and hashed by value.
    """

    __slots__ = (
        "activity",
        "details",
        "end_reason",
        "ended_at",
        "id",
        "idle_grace",
        "idle_timeout",
        "last_activity_at",
        "memory_count",
        "owner_pid",
        "scope",
        "started_at",
        "status",
    )

    id: str
    started_at: datetime
    ended_at: datetime | None
    status: SessionStatus
    memory_count: int
    last_activity_at: datetime
    end_reason: EndReason | None
    owner_pid: int | None
    idle_timeout: int | None
    idle_grace: int
    scope: str
    details: Details  # what it was (agent.details)
    activity: Activity | None  # when it was active (agent.activity); None: recorded before this was kept

    def __init__(  # noqa: PLR0917 -- a record's fields, in their order
        self,
        id: str,
        started_at: datetime,
        ended_at: datetime | None,
        status: SessionStatus,
        memory_count: int,
        last_activity_at: datetime,
        end_reason: EndReason | None = None,
        owner_pid: int | None = None,
        idle_timeout: int | None = None,
        idle_grace: int = 0,
        scope: str = DEFAULT_SCOPE,
        details: Details = NO_DETAILS,
        activity: Activity | None = None,
    ) -> None:
        self._set(
            id=id,
            started_at=started_at,
            ended_at=ended_at,
            status=status,
            memory_count=memory_count,
            last_activity_at=last_activity_at,
            end_reason=end_reason,
            owner_pid=owner_pid,
            idle_timeout=idle_timeout,
            idle_grace=idle_grace,
            scope=scope,
            details=details,
            activity=activity,
        )
        problem = self._problem()
        if problem:
            raise ValueError(f"invalid session {self.id!r}: {problem}")

    def replace(self, **changes: object) -> Session:
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return Session(**fields)

    def _problem(self) -> str | None:
        canonical = canonical_uuid(self.id) if isinstance(self.id, str) else None
        if canonical is None:
            return "id is not a UUID"
        if canonical != self.id:
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
        if (self.end_reason is None) != (self.status is SessionStatus.ACTIVE):
            return f"status {self.status.value} with end_reason {self.end_reason}"
        if self.end_reason is not None and not isinstance(self.end_reason, EndReason):
            return f"unknown end reason {self.end_reason!r}"
        if self.last_activity_at < self.started_at:
            return "last activity before start"
        if self.ended_at is not None and self.ended_at < self.last_activity_at:
            return "ended before its last activity"
        if not _is_count(self.memory_count):
            return f"memory_count {self.memory_count!r} is not a count"
        if self.owner_pid is not None and not (_is_count(self.owner_pid) and 0 < self.owner_pid <= MAX_PID):
            return f"owner_pid {self.owner_pid!r} is not a process id"
        if self.idle_timeout is not None and not (
            _is_count(self.idle_timeout) and 0 < self.idle_timeout <= MAX_IDLE_SECONDS
        ):
            return f"idle_timeout {self.idle_timeout!r} is not a number of seconds up to {MAX_IDLE_SECONDS}"
        if not _is_count(self.idle_grace) or self.idle_grace > (self.idle_timeout or 0):
            return f"idle_grace {self.idle_grace!r} is not a number of seconds up to the idle timeout"
        scope = scope_problem(self.scope)
        if scope is not None:
            return f"scope {self.scope!r}: {scope}"
        if not isinstance(self.details, Details):
            return "details are not Details"
        if self.activity is not None and not isinstance(self.activity, Activity):
            return "activity is not Activity"
        return None

    @classmethod
    def begin(
        cls,
        at: datetime | None = None,
        *,
        owner_pid: int | None = None,
        idle_timeout: int | None = None,
        idle_grace: int = 0,
        scope: str = DEFAULT_SCOPE,
        details: Details = NO_DETAILS,
        activity_gap: int = ACTIVITY_GAP,
    ) -> Session:
        now = at or utc_now()
        return cls(
            id=new_session_id(now),
            started_at=now,
            ended_at=None,
            status=SessionStatus.ACTIVE,
            memory_count=0,
            last_activity_at=now,
            owner_pid=owner_pid,
            idle_timeout=idle_timeout,
            idle_grace=idle_grace,
            scope=scope,
            details=details,
            activity=Activity.begin(now, activity_gap),
        )

    @property
    def is_active(self) -> bool:
        return self.status is SessionStatus.ACTIVE

    def completed(self, reason: EndReason, at: datetime | None = None) -> Session:
        return self.terminated(SessionStatus.COMPLETED, reason, at)

    def abandoned(self, reason: EndReason, at: datetime | None = None) -> Session:
        return self.terminated(SessionStatus.ABANDONED, reason, at)

    def terminated(self, status: SessionStatus, reason: EndReason, at: datetime | None = None) -> Session:
        if not status.is_terminated:
            raise ValueError("a session can only be terminated as completed or abandoned")
        if not self.is_active:
            raise ValueError(f"session {self.id} is already {self.status.value}")
        # A clock that stepped back must not produce an end before the start.
        ended = max(at or utc_now(), self.last_activity_at)
        activity = self.activity.sign(ended) if self.activity else None  # the end is a sign of life
        return self.replace(status=status, ended_at=ended, end_reason=reason, activity=activity)

    def with_activity(self, at: datetime) -> Session:
        if not self.is_active:
            raise ValueError(f"session {self.id} is {self.status.value}")
        moment = max(at, self.last_activity_at)
        activity = self.activity.sign(moment) if self.activity else None
        return self.replace(last_activity_at=moment, activity=activity)

    @property
    def active_seconds(self) -> float | None:
        """Active time so far (final once ended); ``None`` for a session
        recorded before active time was kept."""
        return None if self.activity is None else self.activity.active_seconds

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of a session, as the CLI and the socket print it."""
        return {
            "id": self.id,
            "status": self.status.value,
            "started_at": format_time(self.started_at),
            "ended_at": format_time(self.ended_at) if self.ended_at else None,
            "memory_count": self.memory_count,
            "last_activity_at": format_time(self.last_activity_at),
            "end_reason": self.end_reason.value if self.end_reason else None,
            "owner_pid": self.owner_pid,
            "idle_timeout": self.idle_timeout,
            "idle_grace": self.idle_grace,
            "scope": self.scope,
            **self.details.to_dict(),
            "active_seconds": None if self.activity is None else round(self.activity.active_seconds, 3),
            "activity": None if self.activity is None else self.activity.to_list(),
            "activity_gap": None if self.activity is None else self.activity.gap,
        }

    @classmethod
    def from_dict(cls, data: object) -> Session:
        """The inverse of ``to_dict``, for sessions that arrive as JSON (the
        daemon's replies). ``ValueError`` names what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"a session is a JSON object, not {type(data).__name__}")
        try:
            ended = data["ended_at"]
            reason = data.get("end_reason")
            return cls(
                id=data["id"],
                started_at=parse_time(data["started_at"]),
                ended_at=None if ended is None else parse_time(ended),
                status=SessionStatus(data["status"]),
                memory_count=data["memory_count"],
                last_activity_at=parse_time(data["last_activity_at"]),
                end_reason=None if reason is None else EndReason(reason),
                owner_pid=data.get("owner_pid"),
                idle_timeout=data.get("idle_timeout"),
                idle_grace=data.get("idle_grace", 0),
                scope=data.get("scope", DEFAULT_SCOPE),
                details=Details.from_dict(data),
                activity=_activity_from(data.get("activity"), data.get("activity_gap")),
            )
        except KeyError as exc:
            raise ValueError(f"a session lacks the field {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(f"a session has a field of the wrong type: {exc}") from None


def _activity_from(spans: object, gap: object) -> Activity | None:
    if spans is None:
        return None
    if not isinstance(spans, list) or not isinstance(gap, int) or isinstance(gap, bool):
        raise ValueError("activity must be a list of [start, end] and activity_gap seconds")
    pairs = []
    for span in spans:
        if not isinstance(span, list) or len(span) != 2:
            raise ValueError("an activity span is [start, end]")
        pairs.append((to_micros(parse_time(span[0])), to_micros(parse_time(span[1]))))
    return Activity(gap, tuple(pairs))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_time(text: object) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"time {text!r} is not a string")
    return datetime.fromisoformat(text).astimezone(UTC)


def wire_time(raw: object, name: str) -> datetime:
    """A time a request gives as ``name``: ISO 8601 with its offset (a naive
    time would be read in the daemon's zone, not the client's), in UTC.
    ``InvalidArgumentError`` (exit 2) says what is wrong."""
    from agent.errors import InvalidArgumentError

    if not isinstance(raw, str) or len(raw) > 64:
        raise InvalidArgumentError(f"{name} must be an ISO 8601 time such as 2026-11-30T09:00:00Z")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name} {raw!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise InvalidArgumentError(f"{name} must carry its UTC offset or Z")
    return moment.astimezone(UTC)

"""Where the time went: the wall and active time of sessions over a range,
clipped to it, split at local midnights, grouped by up to two keys.

Wall time runs from a session's start to its end (to now while it is
active); active time is its activity spans (``agent.activity``). Both are
clipped exactly to ``[since, until)`` and split at the local midnights of
the report's zone, so a session across midnight counts on both days and a
day with a daylight-saving change has its 23 or 25 hours. A session with
several tags counts under each of them (groups by tag can add up to more
than the total; one with none is "(untagged)"). Sessions that ran side by
side each count their own time; the total also says how much time at
least one of them covered (``covered_*``). A session recorded before
active time was kept has none (``unknown_active_sessions``).

The report is plain data (``build`` returns a JSON-able dict, the schema
of ``report --json``); ``agent.report_text`` draws it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from agent.details import ANY, SessionFilter
from agent.errors import InvalidArgumentError
from agent.periods import WEEKDAYS, Calendar, zone_by_name
from agent.record import Summary
from agent.session import Session, to_micros, wire_time
from agent.values import Value

__all__ = ["GROUPINGS", "REPORT_VERSION", "ReportQuery", "build"]

REPORT_VERSION = 1
GROUPINGS = ("project", "tag", "scope", "tool", "host", "day", "week", "month")
_TIME_GROUPINGS = ("day", "week", "month")
_NONE = {"project": "(no project)", "tag": "(untagged)", "tool": "(no tool)"}
_MICROS = 1_000_000


class ReportQuery(Value):
    """What a report covers and how it groups: the range (UTC), up to two
    groupings, the filters, and the calendar (a zone's name, the week's
    first day)."""

    __slots__ = ("by", "first_weekday", "hosts", "scope", "since", "timeline", "until", "where", "zone")

    since: datetime
    until: datetime
    by: tuple[str, ...]
    where: SessionFilter
    scope: str | None
    zone: str
    first_weekday: int
    timeline: bool  # also each day's active time by project, and the sessions' pieces per day
    hosts: str | None  # None: this machine; "*": every host; else one host (agent.host_choice)

    def __init__(
        self,
        since: datetime,
        until: datetime,
        by: tuple[str, ...] = ("project",),
        *,
        where: SessionFilter = ANY,
        scope: str | None = None,
        zone: str = "UTC",
        first_weekday: int = 0,
        timeline: bool = False,
        hosts: str | None = None,
    ) -> None:
        if since.tzinfo is None or until.tzinfo is None:
            raise InvalidArgumentError("a report's range needs aware times")
        if until <= since:
            raise InvalidArgumentError(
                f"the report's end ({until.isoformat()}) is not after its start ({since.isoformat()})"
            )
        if not 1 <= len(by) <= 2 or len(set(by)) != len(by) or any(g not in GROUPINGS for g in by):
            raise InvalidArgumentError(
                f"--by {','.join(by)!r}: give one or two of {', '.join(GROUPINGS)}, e.g. day,project"
            )
        if not 0 <= first_weekday <= 6:
            raise InvalidArgumentError(f"first weekday {first_weekday!r} is not 0 (Monday) to 6 (Sunday)")
        try:
            zone_by_name(zone)
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from None
        self._set(
            since=since.astimezone(UTC),
            until=until.astimezone(UTC),
            by=tuple(by),
            where=where,
            scope=scope,
            zone=zone,
            first_weekday=first_weekday,
            timeline=bool(timeline),
            hosts=hosts,
        )

    def to_wire(self) -> dict[str, object]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "by": list(self.by),
            "project": self.where.project,
            "tags": sorted(self.where.tags),
            "tool": self.where.tool,
            "scope": self.scope,
            "zone": self.zone,
            "first_weekday": self.first_weekday,
            "timeline": self.timeline,
            "hosts": self.hosts,
        }

    @classmethod
    def from_wire(cls, args: dict[str, Any]) -> ReportQuery:
        """From ``to_wire``'s form; ``InvalidArgumentError`` on anything else."""
        try:
            if args.get("scope") is not None and not isinstance(args["scope"], str):
                raise InvalidArgumentError("scope must be a string")
            by = args.get("by")
            if not isinstance(by, list) or not all(isinstance(g, str) for g in by):
                raise InvalidArgumentError("by must be a list of groupings")
            weekday = args.get("first_weekday", 0)
            if isinstance(weekday, bool) or not isinstance(weekday, int):
                raise InvalidArgumentError("first_weekday must be a number")
            hosts = args.get("hosts")
            if hosts is not None and not isinstance(hosts, str):
                raise InvalidArgumentError('hosts must be a host\'s name or "*"')
            zone = args.get("zone", "UTC")
            if not isinstance(zone, str):
                raise InvalidArgumentError("zone must be a string")
            return cls(
                wire_time(args.get("since"), "since"),
                wire_time(args.get("until"), "until"),
                tuple(by),
                where=SessionFilter.from_args(args),
                scope=args.get("scope"),
                zone=zone,
                first_weekday=weekday,
                timeline=args.get("timeline") is True,
                hosts=hosts,
            )
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"bad report query: {exc}") from None

    def keeps(self, summary: Summary) -> bool:
        return (self.scope is None or summary.scope == self.scope) and self.where.matches(
            summary.project, summary.tool, summary.tags
        )


class _Group:
    __slots__ = ("active", "children", "running", "sessions", "wall")

    def __init__(self) -> None:
        self.wall = 0
        self.active = 0
        self.sessions: set[str] = set()
        self.running = False
        self.children: dict[str, _Group] = {}

    def child(self, key: str) -> _Group:
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = _Group()
        return found

    def to_dict(self, key: str | None, time_keyed: tuple[bool, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {} if key is None else {"key": key}
        out.update(
            wall_seconds=round(self.wall / _MICROS, 3),
            active_seconds=round(self.active / _MICROS, 3),
            sessions=len(self.sessions),
            running=self.running,
        )
        if time_keyed:
            if time_keyed[0]:  # chronological
                ordered = sorted(self.children.items())
            else:  # the most worked first
                ordered = sorted(self.children.items(), key=lambda kv: (-kv[1].active, -kv[1].wall, kv[0]))
            out["groups"] = [group.to_dict(k, time_keyed[1:]) for k, group in ordered]
        return out


class _Clock:
    """Local days as microseconds, with each midnight computed once."""

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar
        self._midnights: dict[date, int] = {}

    def midnight(self, day: date) -> int:
        found = self._midnights.get(day)
        if found is None:
            found = self._midnights[day] = to_micros(self.calendar.midnight(day))
        return found

    def day_of(self, moment: int) -> date:
        return datetime.fromtimestamp(moment / _MICROS, self.calendar.zone).date()

    def split(self, start: int, end: int) -> Iterator[tuple[date, int]]:
        """``[start, end)`` cut at local midnights: (day, microseconds) pieces;
        a point gives one piece of 0."""
        day = self.day_of(start)
        while True:
            following = day + timedelta(days=1)
            boundary = self.midnight(following)
            if end <= boundary:
                yield day, end - start
                return
            if boundary > start:
                yield day, boundary - start
                start = boundary
            day = following


def _session_keys(session: Summary, grouping: str) -> list[str]:
    if grouping == "project":
        return [session.project or _NONE["project"]]
    if grouping == "tag":
        return list(session.tags) or [_NONE["tag"]]
    if grouping == "tool":
        return [session.tool or _NONE["tool"]]
    if grouping == "host":
        return [session.host or "(this host)"]
    return [session.scope]


def _time_key(calendar: Calendar, day: date, grouping: str) -> str:
    if grouping == "day":
        return day.isoformat()
    if grouping == "week":
        return calendar.week_of(day).isoformat()
    return day.strftime("%Y-%m")


class _Tally:
    """One session's pieces of time, added to the groups they fall in."""

    def __init__(
        self, root: _Group, calendar: Calendar, by: tuple[str, ...], session: Summary, running: bool
    ) -> None:
        self._root = root
        self._calendar = calendar
        self._by = by
        self._id = session.id
        self._running = running
        # The keys that do not depend on the day, per level (None: a time level).
        self._fixed = [None if g in _TIME_GROUPINGS else _session_keys(session, g) for g in by]

    def add(self, day: date, amount: int, field: str) -> None:
        levels = [
            keys if keys is not None else [_time_key(self._calendar, day, grouping)]
            for keys, grouping in zip(self._fixed, self._by, strict=True)
        ]
        for first in levels[0]:
            node = self._root.child(first)
            groups = [node, *(node.child(second) for second in levels[1])] if len(levels) > 1 else [node]
            for group in groups:
                setattr(group, field, getattr(group, field) + amount)
                group.sessions.add(self._id)
                group.running |= self._running


def build(sessions: Iterable[Summary | Session], query: ReportQuery, now: datetime) -> dict[str, Any]:
    """The report of ``sessions`` (in brief, or whole; any order; those
    outside the range or the filters are skipped) as of ``now``."""
    zone: tzinfo = zone_by_name(query.zone)
    calendar = Calendar(zone, query.first_weekday)
    clock = _Clock(calendar)
    since, until, at = to_micros(query.since), to_micros(query.until), to_micros(now)
    root = _Group()
    days = _Group()  # the timeline's: day, then project
    pieces: list[dict[str, Any]] = []
    unknown_active = 0
    walls: list[tuple[int, int]] = []
    actives: list[tuple[int, int]] = []
    hosts: dict[str, _HostTally] = {}
    for given in sessions:
        session = given if isinstance(given, Summary) else Summary.of(given)
        running = session.end is None
        start = session.start
        end = max(start, at if session.end is None else session.end)
        if start >= until or end < since or (end == since and start < since) or not query.keeps(session):
            continue
        lo, hi = max(start, since), min(end, until)
        walls.append((lo, hi))
        host = _HostTally.of(hosts, session, (lo, hi), running) if query.hosts else None
        tally = _Tally(root, calendar, query.by, session, running)
        daily = _Tally(days, calendar, ("day", "project"), session, running) if query.timeline else None
        offset = lo
        for day, amount in clock.split(lo, hi):
            tally.add(day, amount, "wall")
            if daily is not None:
                daily.add(day, amount, "wall")
                pieces.append(_piece(session, clock, day, offset, amount, running=running))
            offset += amount
        if session.spans is None:
            unknown_active += 1
        else:
            for span_start, span_end in session.spans:
                a, b = max(span_start, since), min(span_end, until)
                if b > a:
                    actives.append((a, b))
                    if host is not None:
                        host.actives.append((a, b))
                    for day, amount in clock.split(a, b):
                        tally.add(day, amount, "active")
                        if daily is not None:
                            daily.add(day, amount, "active")
        root.wall += hi - lo
        root.sessions.add(session.id)
        root.running |= running
    root.active = sum(b - a for a, b in actives)
    time_keyed = tuple(g in _TIME_GROUPINGS for g in query.by)
    total = root.to_dict(None, ())
    total.update(
        covered_wall_seconds=round(_covered(walls) / _MICROS, 3),
        covered_active_seconds=round(_covered(actives) / _MICROS, 3),
        unknown_active_sessions=unknown_active,
    )
    return (
        {
            "version": REPORT_VERSION,
            "since": query.since.isoformat(),
            "until": query.until.isoformat(),
            "now": now.astimezone(UTC).isoformat(),
            "zone": query.zone,
            "first_weekday": WEEKDAYS[query.first_weekday],
            "by": list(query.by),
            "filters": {
                "project": query.where.project,
                "tags": sorted(query.where.tags),
                "tool": query.where.tool,
                "scope": query.scope,
                "hosts": query.hosts,
            },
            "total": total,
            "groups": root.to_dict(None, time_keyed).get("groups", []),
        }
        | ({"hosts": [tally.to_dict(name) for name, tally in sorted(hosts.items())]} if query.hosts else {})
        | ({"timeline": _timeline(days, pieces, clock, since, until)} if query.timeline else {})
    )


class _HostTally:
    """One host's part of a report over several: its sessions' wall time
    and active time, summed and as covered (side by side counted once)."""

    def __init__(self) -> None:
        self.walls: list[tuple[int, int]] = []
        self.actives: list[tuple[int, int]] = []
        self.sessions: set[str] = set()
        self.running = False

    @classmethod
    def of(
        cls, hosts: dict[str, _HostTally], session: Summary, wall: tuple[int, int], running: bool
    ) -> _HostTally:
        """``session``'s host's tally (made if new), with its wall time added."""
        tally = hosts.get(session.host or "")
        if tally is None:
            tally = hosts[session.host or ""] = cls()
        tally.walls.append(wall)
        tally.sessions.add(session.id)
        tally.running |= running
        return tally

    def to_dict(self, name: str) -> dict[str, Any]:
        return {
            "host": name,
            "wall_seconds": round(sum(b - a for a, b in self.walls) / _MICROS, 3),
            "active_seconds": round(sum(b - a for a, b in self.actives) / _MICROS, 3),
            "covered_wall_seconds": round(_covered(self.walls) / _MICROS, 3),
            "covered_active_seconds": round(_covered(self.actives) / _MICROS, 3),
            "sessions": len(self.sessions),
            "running": self.running,
        }


def _piece(
    session: Summary, clock: _Clock, day: date, start: int, length: int, *, running: bool
) -> dict[str, Any]:
    return {
        "day": day.isoformat(),
        "scope": session.scope,
        "project": session.project,
        "id": session.id,
        "offset_seconds": round((start - clock.midnight(day)) / _MICROS, 3),
        "seconds": round(length / _MICROS, 3),
        "running": running,
    }


def _timeline(
    days: _Group, pieces: list[dict[str, Any]], clock: _Clock, since: int, until: int
) -> dict[str, Any]:
    """Each day of the range: its length (23 to 25 hours), its active and wall
    time by project, and the pieces of the sessions that ran in it."""
    by_day: dict[str, list[dict[str, Any]]] = {}
    for piece in pieces:
        by_day.setdefault(piece["day"], []).append(piece)
    out = []
    day, last = clock.day_of(since), clock.day_of(max(since, until - 1))
    while day <= last:
        key = day.isoformat()
        group = days.children.get(key)
        following = day + timedelta(days=1)
        out.append(
            {
                "day": key,
                "day_seconds": round((clock.midnight(following) - clock.midnight(day)) / _MICROS),
                "projects": [] if group is None else group.to_dict(key, (False,))["groups"],
                "pieces": sorted(by_day.get(key, []), key=lambda p: (p["scope"], p["offset_seconds"])),
            }
        )
        day = following
    return {"days": out}


def _covered(spans: list[tuple[int, int]]) -> int:
    """The time at least one of ``spans`` covers."""
    covered, reach = 0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            covered += end - start
            reach = end
        elif end > reach:
            covered += end - reach
            reach = end
    return covered

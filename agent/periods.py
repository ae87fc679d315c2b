"""Calendar periods in the user's local time: named ranges (``today``,
``last-week``, ...), day, week and month boundaries, the local time zone
with its daylight-saving rules, and the first day of the week.

Reports split time at local midnights, and a day with a daylight-saving
change has 23 or 25 hours: so boundaries are made in a ``ZoneInfo`` (which
knows the rules), never with a fixed offset, and compared in UTC.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "NAMED",
    "WEEKDAYS",
    "Calendar",
    "local_zone",
    "locale_first_weekday",
    "zone_by_name",
]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Named periods: each has a start and an end (the start of the next one).
NAMED = ("today", "yesterday", "this-week", "last-week", "this-month", "last-month")
_ZONEINFO_DIRS = ("/usr/share/zoneinfo/", "/usr/lib/zoneinfo/", "/usr/share/lib/zoneinfo/")
# CLDR's weekData (firstDay): the territories whose week starts on Sunday or
# Saturday; every other one starts on Monday.
_SUNDAY_FIRST = frozenset({
    "AG", "AS", "BD", "BR", "BS", "BT", "BW", "BZ", "CA", "CN", "CO", "DM", "DO", "ET", "GT", "GU",
    "HK", "HN", "ID", "IL", "IN", "JM", "JP", "KE", "KH", "KR", "LA", "MH", "MM", "MO", "MT", "MX",
    "MZ", "NI", "NP", "PA", "PE", "PH", "PK", "PR", "PT", "PY", "SA", "SG", "SV", "TH", "TT", "TW",
    "UM", "US", "VE", "VI", "WS", "YE", "ZA", "ZW",
})  # fmt: skip
_SATURDAY_FIRST = frozenset({
    "AE", "AF", "BH", "DJ", "DZ", "EG", "IQ", "IR", "JO", "KW", "LY", "OM", "QA", "SD", "SY",
})  # fmt: skip


def zone_by_name(name: str) -> ZoneInfo:
    """A zone by its IANA name; ``ValueError`` naming it if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin") from None


def local_zone() -> tuple[str, tzinfo]:
    """This process's time zone and its name: ``TZ`` if it names a zone,
    else ``/etc/localtime``; UTC when neither says."""
    spec = os.environ.get("TZ", "").removeprefix(":")
    if spec.startswith("/"):
        spec = _zone_name_of(spec) or ""
    if spec:
        try:
            return spec, ZoneInfo(spec)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a POSIX rule string: not a name; fall back to the system's zone
    name = _zone_name_of("/etc/localtime")
    if name is not None:
        try:
            return name, ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return "UTC", UTC


def _zone_name_of(path: str) -> str | None:
    try:
        target = os.path.realpath(path)
    except OSError:
        return None
    for root in _ZONEINFO_DIRS:
        if target.startswith(root):
            return target[len(root) :].removeprefix("posix/").removeprefix("right/")
    return None


def locale_first_weekday() -> int:
    """The first day of the week (0 Monday ... 6 Sunday) of the territory
    of ``LC_ALL``, ``LC_TIME`` or ``LANG`` (``en_US.UTF-8``: Sunday);
    Monday (ISO 8601) when none names one."""
    for variable in ("LC_ALL", "LC_TIME", "LANG"):
        value = os.environ.get(variable, "")
        if value:
            territory = value.split(".")[0].split("@")[0].partition("_")[2].upper()
            if territory in _SUNDAY_FIRST:
                return 6
            if territory in _SATURDAY_FIRST:
                return 5
            return 0
    return 0


class Calendar:
    """Days, weeks and months in one zone, weeks starting on ``first_weekday``."""

    def __init__(self, zone: tzinfo, first_weekday: int = 0) -> None:
        self.zone = zone
        self.first_weekday = first_weekday

    def midnight(self, day: date) -> datetime:
        """The start of ``day`` in this zone, in UTC."""
        return datetime.combine(day, time(0), tzinfo=self.zone).astimezone(UTC)

    def day_of(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def week_of(self, day: date) -> date:
        """The first day of ``day``'s week."""
        return day - timedelta(days=(day.weekday() - self.first_weekday) % 7)

    @staticmethod
    def month_of(day: date) -> date:
        return day.replace(day=1)

    def named(self, name: str, now: datetime) -> tuple[datetime, datetime]:
        """The period ``name`` (one of ``NAMED``) around ``now``: its start
        and end (the next one's start), in UTC."""
        today = self.day_of(now)
        if name in ("today", "yesterday"):
            day = today if name == "today" else today - timedelta(days=1)
            return self.midnight(day), self.midnight(day + timedelta(days=1))
        if name in ("this-week", "last-week"):
            first = self.week_of(today) - timedelta(days=7 if name == "last-week" else 0)
            return self.midnight(first), self.midnight(first + timedelta(days=7))
        if name in ("this-month", "last-month"):
            first = self.month_of(today)
            if name == "last-month":
                first = self.month_of(first - timedelta(days=1))
            return self.midnight(first), self.midnight(_next_month(first))
        raise ValueError(f"{name!r} is not a period: use one of {', '.join(NAMED)}")


def _next_month(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1)

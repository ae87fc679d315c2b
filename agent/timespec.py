"""Reading and showing times and durations for people."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["format_duration", "format_local", "parse_duration", "parse_since"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d{1,9}[smhdw])+")
_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``1h30m``, ``2d``, or plain seconds, as seconds.
    Raises ``ValueError`` with a message meant for the user."""
    spec = text.strip().lower()
    if spec.isdigit() and len(spec) <= 10:
        return int(spec)
    if not _DURATION.fullmatch(spec):
        raise ValueError(
            f"{text!r} is not a duration: use a number with a unit (90s, 30m, 1h30m, 2d, 1w) "
            "or a number of seconds"
        )
    return sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(spec))


def parse_since(text: str, now: datetime) -> datetime:
    """``90m``, ``2h``, ``1h30m``, ``7d`` (ago), or an ISO 8601 date/time.

    A date or time without an offset is local time. Raises ``ValueError``
    with a message meant for the user.
    """
    spec = text.strip().lower()
    if _DURATION.fullmatch(spec):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(spec))
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before year 1") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (90m, 2h, 1h30m, 7d, 2w) "
            "nor an ISO date/time (2026-11-24, 2026-11-24T09:30, ...Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive means local
    return moment.astimezone(UTC)


def format_local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_duration(span: timedelta) -> str:
    """``45s``, ``12m05s``, ``3h07m``, ``2d04h``: two units at most."""
    seconds = max(0, int(span.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"

"""Active time: when a session showed signs of life, as merged spans.

Signs of life are its start, each recorded heartbeat and its end. The gap
between two consecutive signs counts as active up to the session's
``gap`` (``config.toml``'s ``sessions.activity_gap`` when it started,
default 15 minutes, as WakaTime counts): a longer gap closes the span
``gap`` seconds after its last sign and the next sign opens a new one. So
``active_seconds`` is the sum of the spans, exact at every heartbeat and
final at the end, and the spans say when the work happened (a report can
split them by day and hour; a session may cross midnight).

Times are wall-clock microseconds since the epoch, as the record's own.
"""

from __future__ import annotations

from datetime import datetime

from agent.encoding import Reader, write_varint
from agent.values import Value

__all__ = ["ACTIVITY_GAP", "Activity"]

ACTIVITY_GAP = 15 * 60  # seconds
MAX_SPANS = 4096  # per session; older spans are merged into one past that (never dropped)


class Activity(Value):
    __slots__ = ("gap", "spans")

    gap: int  # seconds
    spans: tuple[tuple[int, int], ...]  # (start, end) microseconds, ordered, disjoint

    def __init__(self, gap: int, spans: tuple[tuple[int, int], ...]) -> None:
        if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
            raise ValueError(f"activity gap {gap!r} is not a number of seconds")
        previous_end = None
        for start, end in spans:
            if end < start or (previous_end is not None and start < previous_end):
                raise ValueError("activity spans are not ordered and disjoint")
            previous_end = end
        if not spans:
            raise ValueError("activity has at least its start")
        self._set(gap=gap, spans=spans)

    @classmethod
    def begin(cls, at: datetime, gap: int) -> Activity:
        moment = _micros(at)
        return cls(gap, ((moment, moment),))

    def sign(self, at: datetime) -> Activity:
        """With a sign of life at ``at`` (one before the last is ignored)."""
        moment = _micros(at)
        *done, (start, end) = self.spans
        if moment <= end:
            return self
        if moment - end <= self.gap * 1_000_000:
            spans = (*done, (start, moment))
        else:
            spans = (*done, (start, end + self.gap * 1_000_000), (moment, moment))
        if len(spans) > MAX_SPANS:  # the oldest two become one: the sum is kept, the detail lost
            (a, b), (c, d), *rest = spans
            spans = ((a, a + (b - a) + (d - c)), *rest)
        return Activity(self.gap, spans)

    @property
    def active_seconds(self) -> float:
        return sum(end - start for start, end in self.spans) / 1_000_000

    def encode(self) -> bytes:
        """The gap, the count, the first start, then each span as two varints:
        its start after the previous end, and its length."""
        out = bytearray()
        write_varint(out, self.gap)
        write_varint(out, len(self.spans))
        previous = self.spans[0][0]
        write_varint(out, previous)
        for start, end in self.spans:
            write_varint(out, start - previous)
            write_varint(out, end - start)
            previous = end
        return bytes(out)

    @classmethod
    def decode(cls, raw: bytes) -> Activity:
        """``ValueError`` if ``raw`` is not exactly one encoded activity."""
        reader = Reader(raw)
        gap, count = reader.varint(), reader.varint()
        if count > MAX_SPANS:
            raise ValueError(f"{count} activity spans")
        previous = reader.varint()
        spans = []
        for _ in range(count):
            start = previous + reader.varint()
            end = start + reader.varint()
            spans.append((start, end))
            previous = end
        if not reader.done:
            raise ValueError("trailing bytes after the activity")
        return cls(gap, tuple(spans))

    def to_list(self) -> list[list[str]]:
        """The spans as ISO 8601 pairs, for JSON."""
        from agent.session import format_time, from_micros

        return [[format_time(from_micros(s)), format_time(from_micros(e))] for s, e in self.spans]


def _micros(at: datetime) -> int:
    from agent.session import to_micros

    return to_micros(at)

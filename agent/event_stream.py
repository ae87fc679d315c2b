"""``EventStream``: the daemon's subscribers, each following the event log.

A subscriber (the socket's ``subscribe``, ``agent.control.protocol``) is
served from a cursor: the last ``seq`` it was sent or passed over. It is
either *live* -- each committed batch is written to it as it comes
(``deliver``, on the loop's turn after the commit) -- or *catching up*: its
own task reads the log from its cursor in the store and writes as fast as
it reads. A subscriber starts catching up; one whose socket buffer holds
more than ``HIGH_WATER`` bytes (it is not reading) is not written to any
more and falls back to catching up, by itself, once it drains. So the
daemon holds at most about ``HIGH_WATER`` bytes for any subscriber, a slow
one never delays another nor a command, and one that reads again misses
nothing. Events trimmed before a subscriber got them are one ``gap`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict

from agent.control import jsonline
from agent.control.protocol import ProtocolError, encode_error, encode_reply
from agent.errors import DaemonError, SessionError
from agent.event_log import EventLog
from agent.events import Event, EventFilter, Gap
from agent.session import wire_time

__all__ = ["HIGH_WATER", "MAX_SUBSCRIBERS", "RECENT", "EventStream"]

log = logging.getLogger(__name__)

HIGH_WATER = 16 * 1024  # bytes buffered for a subscriber before it is served from the store
MAX_SUBSCRIBERS = 4096
_READ_BATCH = 64  # events written to a subscriber catching up before the loop turns
RECENT = 1024  # the newest events kept encoded, for subscribers catching up
_INPUT_LIMIT = 4096  # what a subscriber may send after subscribing (nothing is expected)


class _Subscriber:
    __slots__ = ("cursor", "filter", "live", "wake", "writer")

    def __init__(self, writer: asyncio.StreamWriter, event_filter: EventFilter, cursor: int) -> None:
        self.writer = writer
        self.filter = event_filter
        self.cursor = cursor
        self.live = False
        self.wake = asyncio.Event()


class EventStream:
    def __init__(self, events: EventLog, *, max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self._log = events
        self._max = max_subscribers
        self._subscribers: set[_Subscriber] = set()
        self._recent: OrderedDict[int, tuple[Event, bytes]] = OrderedDict()
        self._stopping = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def deliver(self, events: tuple[Event, ...]) -> None:
        """A committed batch: written to every live subscriber that wants it,
        and kept among the recent lines for those catching up."""
        if not self._subscribers:
            return
        lines = [(event, _line(event.to_wire())) for event in events]
        for event, line in lines:
            self._recent[event.seq] = (event, line)
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        for subscriber in self._subscribers:
            if not subscriber.live:
                continue
            transport = subscriber.writer.transport
            if transport.get_write_buffer_size() > HIGH_WATER:
                subscriber.live = False  # not reading: it catches up from the store later
                subscriber.wake.set()
                continue
            for event, line in lines:
                if event.seq <= subscriber.cursor:
                    continue
                if subscriber.filter.matches(event):
                    subscriber.writer.write(line)
                subscriber.cursor = event.seq

    def stop(self) -> None:
        """End every subscription (the daemon is stopping)."""
        self._stopping = True
        for subscriber in tuple(self._subscribers):
            subscriber.writer.transport.abort()
            subscriber.wake.set()

    async def serve(
        self, args: dict[str, object], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one ``subscribe`` request on its connection until either side ends it."""
        try:
            event_filter = EventFilter.from_args(args)
            cursor = self._start(args)
            if len(self._subscribers) >= self._max:
                raise DaemonError(
                    f"the daemon serves at most {self._max} subscribers (its limit); "
                    "try again once some have left",
                    6,
                )
        except SessionError as error:
            writer.write(encode_error(error))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return
        writer.transport.set_write_buffer_limits(high=HIGH_WATER)
        writer.write(
            encode_reply({"last": self._log.last_seq, "first": self._log.first_seq(), "after": cursor})
        )
        subscriber = _Subscriber(writer, event_filter, cursor)
        self._subscribers.add(subscriber)
        watch = asyncio.create_task(_until_eof(reader, subscriber.wake))
        try:
            while not self._stopping and not watch.done():
                if not subscriber.live:
                    await self._catch_up(subscriber, watch)
                    continue
                await subscriber.wake.wait()
                subscriber.wake.clear()
        except (ConnectionError, TimeoutError):
            pass
        except SessionError as exc:  # the log could not be read: the subscriber reconnects later
            log.warning("ended a subscription: %s", exc)
        finally:
            self._subscribers.discard(subscriber)
            if not self._subscribers:
                self._recent.clear()  # kept for subscribers only
            watch.cancel()
            writer.transport.abort()

    def _start(self, args: dict[str, object]) -> int:
        """The cursor a request asks to start from."""
        since, since_time = args.get("since", "now"), args.get("since_time")
        if since_time is not None:
            return self._log.first_after(wire_time(since_time, "since_time")) - 1
        if since == "now":
            return self._log.last_seq
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise ProtocolError('since must be a seq (a whole number, 0 for the oldest kept) or "now"')
        if since > self._log.last_seq:
            raise ProtocolError(
                f"since {since} is past the log's newest event ({self._log.last_seq}): this store is not "
                "the one that cursor came from (restored or replaced); start again from 0 or now"
            )
        return since

    async def _catch_up(self, subscriber: _Subscriber, watch: asyncio.Task[None]) -> None:
        """Write what it missed until nothing is left, then go live (no await
        between the last read and going live: nothing slips by). Each batch
        yields the loop: a long backlog never holds up a command."""
        writer = subscriber.writer
        while not self._stopping and not watch.done():
            await writer.drain()  # waits while it holds more than HIGH_WATER: only its own task
            first = self._log.first_seq()
            if subscriber.cursor + 1 < first:
                writer.write(_line(Gap(subscriber.cursor + 1, first - 1).to_wire()))
                subscriber.cursor = first - 1
            batch = self._backlog(subscriber.cursor)
            if not batch:
                subscriber.live = True
                subscriber.wake.clear()
                return
            for event, line in batch:
                if writer.transport.get_write_buffer_size() > HIGH_WATER:
                    break  # the rest when it has read this
                if subscriber.filter.matches(event):
                    writer.write(line or _line(event.to_wire()))
                subscriber.cursor = event.seq
            await asyncio.sleep(0)

    def _backlog(self, cursor: int) -> list[tuple[Event, bytes | None]]:
        """The next events after ``cursor``: from the recent lines (encoded
        once for every subscriber), else from the store."""
        if cursor + 1 in self._recent:
            found: list[tuple[Event, bytes | None]] = []
            seq = cursor + 1
            while seq in self._recent and len(found) < _READ_BATCH:
                found.append(self._recent[seq])
                seq += 1
            return found
        return [(event, None) for event in self._log.after(cursor, _READ_BATCH)]


async def _until_eof(reader: asyncio.StreamReader, wake: asyncio.Event) -> None:
    """Read (and drop) what a subscriber sends until it hangs up; then wake its task."""
    try:
        while await reader.read(_INPUT_LIMIT):
            pass
    except (ConnectionError, OSError):
        pass
    finally:
        wake.set()


def _line(wire: dict[str, object]) -> bytes:
    return jsonline.dumps(wire).encode("utf-8") + b"\n"

"""Following sessions from Python: the event log read, or followed live.

::

    from agent.follow import follow_events

    for event in follow_events(since=0, kinds=["started", "ended"]):
        print(event.seq, event.kind.value, event.session.id, event.session.details.project)

``follow_events`` (blocking) and ``afollow_events`` (async) subscribe on
the daemon's socket and yield every event after ``since`` -- those stored
first, then each as it is committed -- as ``agent.events.Event``, or a
``Gap`` where retention trimmed events before they were read. If the
daemon goes away (a restart, an upgrade) they connect again and go on from
the last ``seq`` they yielded: nothing is missed, nothing repeated. A
consumer that keeps ``event.seq`` somewhere durable resumes across its own
restarts by passing it back as ``since``.

``read_events`` reads what is stored without a daemon (the store opened
read-only: it works beside a running daemon too) and ends there.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Generator, Iterable, Iterator
from datetime import datetime

from agent.control import jsonline
from agent.control.client import ANSWER_TIMEOUT, DaemonClient
from agent.control.protocol import MAX_REPLY, decode_reply, encode_request
from agent.errors import DaemonError, DaemonNotRunningError, StorageError
from agent.events import Event, EventFilter, Gap, parse_kinds
from agent.paths import Paths

__all__ = ["afollow_events", "follow_events", "read_events"]

_RECONNECT_PAUSE = (0.05, 2.0)  # seconds: the first pause before connecting again, the longest
_REFUSED = 2  # the exit code of a request the daemon refuses as it is: asking again gets the same


def read_events(
    since: int = 0,
    *,
    since_time: datetime | None = None,
    kinds: Iterable[str] | None = None,
    scope: str | None = None,
    project: str | None = None,
    tool: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Iterator[Event | Gap]:
    """The stored events after ``since`` (or from ``since_time``) that pass
    the filters, oldest first; a ``Gap`` first if some were trimmed."""
    from agent.database import holds_a_store, open_db_read_only
    from agent.store import SessionStore

    wanted = _filter(kinds, scope, project, tool)
    paths = Paths.resolve(data_dir)
    if not holds_a_store(paths.db):
        return
    store = SessionStore(open_db_read_only(paths.db), read_only=True)
    try:
        log = store.events
        cursor = log.first_after(since_time) - 1 if since_time is not None else since
        first = log.first_seq()
        if cursor + 1 < first and cursor < log.last_seq:
            yield Gap(cursor + 1, first - 1)
        for event in log.after(cursor):
            if wanted.matches(event):
                yield event
    finally:
        store.close()


def follow_events(
    since: int | str = "now",
    *,
    since_time: datetime | None = None,
    kinds: Iterable[str] | None = None,
    scope: str | None = None,
    project: str | None = None,
    tool: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    runtime_dir: str | os.PathLike[str] | None = None,
    reconnect: bool = True,
) -> Generator[Event | Gap, None, None]:
    """Every event after ``since`` (a seq, or ``"now"``), live, for ever;
    ``DaemonNotRunningError`` if no daemon runs when it starts, ``DaemonError``
    if the daemon refuses the subscription as it is (a ``since`` past its log)."""
    paths = Paths.resolve(data_dir, runtime_dir)
    args = _subscription(since, since_time, kinds=kinds, scope=scope, project=project, tool=tool)
    pause = _RECONNECT_PAUSE[0]
    first = True
    while True:
        client = DaemonClient.connect(paths.socket, paths.data_dir)
        if client is None:
            if first or not reconnect:
                raise DaemonNotRunningError(
                    "following events needs the daemon: start it (session-agent daemon)"
                )
            time.sleep(pause)
            pause = min(pause * 2, _RECONNECT_PAUSE[1])
            continue
        first = False
        try:
            reply = client.request("subscribe", **args)  # then the stream
            args = _resumed(args, int(reply["after"]))
            pause = _RECONNECT_PAUSE[0]
            for line in client.lines():
                item = _item(line)
                args = _resumed(args, item.seq)
                yield item
        except DaemonError as exc:
            if not reconnect or exc.exit_code == _REFUSED:
                raise
        except OSError:
            if not reconnect:
                raise
        finally:
            client.close()
        if not reconnect:
            return
        time.sleep(pause)  # a daemon that stops, or cannot take us yet, is not asked again at once
        pause = min(pause * 2, _RECONNECT_PAUSE[1])


async def afollow_events(
    since: int | str = "now",
    *,
    since_time: datetime | None = None,
    kinds: Iterable[str] | None = None,
    scope: str | None = None,
    project: str | None = None,
    tool: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    runtime_dir: str | os.PathLike[str] | None = None,
    reconnect: bool = True,
) -> AsyncGenerator[Event | Gap, None]:
    """``follow_events`` for asyncio."""
    paths = Paths.resolve(data_dir, runtime_dir)
    args = _subscription(since, since_time, kinds=kinds, scope=scope, project=project, tool=tool)
    pause = _RECONNECT_PAUSE[0]
    first = True
    while True:
        try:
            reader, writer = await asyncio.open_unix_connection(str(paths.socket), limit=MAX_REPLY)
        except OSError:
            if first or not reconnect:
                raise DaemonNotRunningError(
                    "following events needs the daemon: start it (session-agent daemon)"
                ) from None
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RECONNECT_PAUSE[1])
            continue
        first = False
        try:
            writer.write(encode_request("subscribe", **args))
            reply = decode_reply(await asyncio.wait_for(reader.readuntil(b"\n"), ANSWER_TIMEOUT))
            args = _resumed(args, int(reply["after"]))
            pause = _RECONNECT_PAUSE[0]
            while line := await reader.readline():
                item = _item(line)
                args = _resumed(args, item.seq)
                yield item
        except DaemonError as exc:
            if not reconnect or exc.exit_code == _REFUSED:
                raise
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            if not reconnect:
                raise
        finally:
            writer.close()
        if not reconnect:
            return
        await asyncio.sleep(pause)
        pause = min(pause * 2, _RECONNECT_PAUSE[1])


def _filter(
    kinds: Iterable[str] | None, scope: str | None, project: str | None, tool: str | None
) -> EventFilter:
    return EventFilter(parse_kinds(list(kinds) if kinds is not None else None), scope, project, tool)


def _subscription(
    since: int | str,
    since_time: datetime | None,
    *,
    kinds: Iterable[str] | None,
    scope: str | None,
    project: str | None,
    tool: str | None,
) -> dict[str, object]:
    _filter(kinds, scope, project, tool)  # checked here, before any connection
    args: dict[str, object] = {"since": since}
    if since_time is not None:
        args["since_time"] = since_time.isoformat()
    if kinds is not None:
        args["kinds"] = list(kinds)
    args.update({k: v for k, v in (("scope", scope), ("project", project), ("tool", tool)) if v is not None})
    return args


def _resumed(args: dict[str, object], seq: int) -> dict[str, object]:
    """The subscription to send on reconnecting: after ``seq``."""
    resumed = {k: v for k, v in args.items() if k != "since_time"}
    resumed["since"] = seq
    return resumed


def _item(line: bytes) -> Event | Gap:
    try:
        data = jsonline.loads(line.decode("utf-8"))
        if data.get("kind") == "gap":
            return Gap(int(data["from"]), int(data["to"]))
        return Event.from_wire(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(f"the daemon sent an event this version cannot read: {exc}") from None

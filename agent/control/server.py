"""The daemon's side of the control socket (asyncio).

Each connection is served by one task: read a request line, dispatch it to
the handler (synchronous and short: the manager's work is a few synced
writes), write the reply, repeat. What keeps a hostile or broken peer from
hurting anyone else:

* peers of another uid are refused (``SO_PEERCRED``);
* a request line is capped (``MAX_REQUEST``), so a connection buffers at
  most that much;
* reading a request, and writing a reply, must each finish within
  ``IDLE_TIMEOUT``, and an idle connection is closed after it too;
* at most ``MAX_CONNECTIONS`` are open; a new one pushes out the connection
  that has gone longest without progress, so an honest client is served
  promptly even when hundreds of idle or stuck peers are connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from agent.control.protocol import (
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_REQUEST,
    ProtocolError,
    decode_request,
    encode_error,
    encode_reply,
)
from agent.errors import DaemonError, SessionError

__all__ = ["ControlServer", "Handler", "bind_unix_socket"]

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Any]
# Serves a ``subscribe`` on its connection until it ends (``agent.event_stream``).
Streamer = Callable[[dict[str, Any], asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
_PEERCRED = struct.Struct("3i")
_STREAM_END = 1.0  # seconds for subscriptions to end once their connections are cut


class _Connection:
    __slots__ = ("progress_at", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, now: float) -> None:
        self.reader = reader
        self.writer = writer
        self.progress_at = now


class ControlServer:
    def __init__(
        self,
        handler: Handler,
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        threaded_ops: frozenset[str] = frozenset(),
        streamer: Streamer | None = None,
    ) -> None:
        self._handler = handler
        self._streamer = streamer
        # Connections that became subscriptions, and their writers.
        self._streams: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._threaded_ops = threaded_ops  # long reads, answered from a thread: the loop goes on
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self._server: asyncio.Server | None = None
        self._closing = False
        self._uid = os.getuid()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self, sock: socket.socket) -> None:
        """Serve on a listening socket (bound by us, or passed by systemd)."""
        sock.setblocking(False)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_REQUEST)

    async def close(self, grace: float) -> int:
        """Stop accepting; let each connection finish the request it has
        already sent (within ``grace`` seconds), then cut what is left.
        Returns how many had to be cut."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for writer in self._streams.values():  # a subscription has no request to finish: it ends
            writer.transport.abort()
        if self._streams:  # each sees its connection gone at once
            await asyncio.wait(list(self._streams), timeout=_STREAM_END)
        for connection in self._connections.values():
            # No more input: a request already received is still answered,
            # and a connection waiting for one ends at once.
            transport = connection.writer.transport
            if isinstance(transport, asyncio.ReadTransport):
                transport.pause_reading()
            connection.reader.feed_eof()
        tasks = [*self._connections, *self._streams]
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._closing:  # accepted just before close(): not served, not half-served
            writer.transport.abort()
            return
        loop = asyncio.get_running_loop()
        peer = _peer_credentials(writer)
        if peer is None or peer[1] != self._uid:
            log.warning("refused a control connection from uid %s", peer[1] if peer else "unknown")
            refusal = DaemonError("this daemon serves only its own user", exit_code=5)
            await self._finish(writer, encode_error(refusal))
            return
        self._make_room()
        connection = _Connection(reader, writer, loop.time())
        self._connections[task] = connection
        try:
            while True:
                connection.progress_at = loop.time()
                try:
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), self._idle_timeout)
                except asyncio.IncompleteReadError:
                    return  # the client hung up
                except asyncio.LimitOverrunError:
                    too_big = ProtocolError(f"the request is longer than {MAX_REQUEST} bytes")
                    await self._finish(writer, encode_error(too_big))
                    return
                connection.progress_at = loop.time()
                try:
                    op, args = decode_request(line)
                except SessionError as error:
                    writer.write(encode_error(error))
                else:
                    if op == "subscribe" and self._streamer is not None:
                        # From now on the daemon writes: not a request connection any more
                        # (neither counted against the cap nor timed out as idle).
                        self._connections.pop(task, None)
                        self._streams[task] = writer
                        await self._streamer(args, reader, writer)
                        return
                    writer.write(await self._dispatch(op, args))
                await asyncio.wait_for(writer.drain(), self._idle_timeout)
        except (TimeoutError, ConnectionError):
            return
        finally:
            self._connections.pop(task, None)
            self._streams.pop(task, None)
            writer.transport.abort()

    async def _dispatch(self, op: str, args: dict[str, Any]) -> bytes:
        if op in self._threaded_ops:
            return await asyncio.to_thread(self._answer, op, args)
        return self._answer(op, args)

    def _answer(self, op: str, args: dict[str, Any]) -> bytes:
        try:
            return encode_reply(self._handler(op, args))
        except SessionError as error:
            return encode_error(error)
        except Exception as exc:  # a bug: report it, keep serving
            log.exception("internal error while handling a control request")
            return encode_error(DaemonError(f"internal error in the daemon: {exc}; see its log", 5))

    def _make_room(self) -> None:
        """At the cap, cut the connection that has gone longest without progress."""
        while len(self._connections) >= self._max_connections:
            task, oldest = min(self._connections.items(), key=lambda item: item[1].progress_at)
            del self._connections[task]  # now, not when its task gets to run
            log.debug("connection cap reached: dropping the longest-idle connection")
            oldest.writer.transport.abort()

    async def _finish(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        try:
            writer.write(reply)
            await asyncio.wait_for(writer.drain(), self._idle_timeout)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.transport.abort()


def _peer_credentials(writer: asyncio.StreamWriter) -> tuple[int, int, int] | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return None
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


def bind_unix_socket(path: str) -> socket.socket:
    """A listening socket at ``path``, mode 0600 (in a directory that must
    already be private). Whatever is at ``path`` is removed first: the
    caller holds the daemon's instance lock, so it can only be stale."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)  # bind honours the umask, which is process-wide
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock

"""The control protocol between the CLI and the daemon.

Wire format, version 1
----------------------

The daemon listens on a Unix stream socket (``<runtime_dir>/control.sock``,
mode 0600, in a 0700 directory). Messages are JSON lines: one UTF-8 JSON
object, then ``\\n``. A client sends a request and reads one reply; it may
send further requests on the same connection, one at a time.

Request::

    {"v": 1, "op": "start", "args": {}}

Reply::

    {"v": 1, "ok": true, "result": <value>}
    {"v": 1, "ok": false, "error": {"type": "SessionAlreadyActiveError",
                                    "message": "session ... is already active; ...",
                                    "exit_code": 3}}

``exit_code`` is the CLI exit code of the error (docs/cli.md), so a
client can exit as the embedded CLI would.

Operations (``args`` in braces; sessions as in ``session-agent show --json``):

============  =========================================  ===========================
op            args                                       result
============  =========================================  ===========================
``ping``      --                                         ``{"pid": int, "version": str}``
``start``     ``{"replace"?: bool, "owner_pid"?: int,    the new session
              "idle_timeout"?: dur, "idle_grace"?: dur,
              "scope"?: str, "cwd"?: str, "project"?:
              str, "tool"?: str, "external_id"?: str,
              "parent"?: id, "tags"?: [str], "title"?:
              str, "labels"?: {str: str}}``
``end``       ``{"id"?: str, "scope"?: str}``            the ended session or null
``abandon``   ``{"id"?: str, "scope"?: str}``            the abandoned session or null
``current``   ``{"scope"?: str}``                        the active session or null
``touch``     ``{"scope"?: str}``                        the active session (its activity
                                                         recorded) or null
``update``    ``{"id"?: str, "scope"?: str, "set"?:      the changed session, or null
              {str: str|null}, "add_tags"?: [str],       when none is active
              "remove_tags"?: [str], "labels"?:
              {str: str|null}}``
``count``     ``{"id"?: str, "scope"?: str, "n"?: int}``  the session, its memories
                                                         counted; or null
``get``       ``{"id": str}``                            the session or null
``list``      ``{"statuses"?: [str], "since"?: time,     ``{"sessions": [...],
              "limit": int, "before"?: id,                "errors": [str]}``
              "scope"?: str | "all_scopes"?: bool}``
``report``    ``{"since": time, "until": time, "by":    the report (``report --json``'s
              [str], "project"?: str, "tags"?: [str],    schema, docs/reports.md), with
              "tool"?: str, "scope"?: str, "zone"?:      ``"errors": [str]``
              str, "first_weekday"?: int}``
``status``    --                                         daemon, paths, watcher, current,
                                                         scopes
``import``    ``{"path": str, "from": "jsonl" |           ``{"added": int,
              "timewarrior" | "watson"}``                 "already_held": int,
                                                         "left_out": [str]}``

``subscribe`` ``{"since"?: seq | "now", "since_time"?:    ``{"last": seq, "first": seq,``
              time, "kinds"?: [str], "scope"?: pattern,  ``"after": seq}``, then the
              "project"?: str, "tool"?: str}``           stream (below)
============  =========================================  ===========================

Subscribing: the reply names the newest event (``last``), the oldest
kept (``first``) and the seq the stream starts after (``after``: what
``since`` resolved to -- a consumer that reconnects before it has seen an
event subscribes again with it); from then on the connection carries only the daemon's
lines, one JSON object each, each with its ``seq``: every event after
``since`` (``"now"``, the default: after ``last``; 0: every event kept;
``since_time``: from the first recorded at or after that time) that passes
the filters -- ``kinds`` of ``started``, ``ended``, ``activity``,
``updated``, ``counted``; ``scope`` a shell pattern (``claude-*``);
``project``; ``tool`` -- first those stored, then each as it is committed.
The form of an event, and of the ``gap`` line that stands for events
trimmed before they could be sent, is ``agent.events``'. A consumer that
keeps the last ``seq`` it saw and subscribes again with it as ``since``
misses nothing (events it filtered out are passed over on the daemon's
side). A subscriber that stops reading is not buffered for: once about
``agent.event_stream.HIGH_WATER`` bytes wait for it, it is served from the
store again when it reads. The connection ends when either side closes it
(the daemon's stop included); a subscriber sends nothing after its request.
Subscriptions count neither against ``MAX_CONNECTIONS`` nor ``IDLE_TIMEOUT``
(the daemon serves up to ``agent.event_stream.MAX_SUBSCRIBERS``). A
``since`` past the newest event is refused: the cursor is from another
store (restored from a snapshot, or replaced).

``report`` and ``import`` run off the daemon's event loop (in a thread): a
long one never delays a command, a file edit or a signal. ``import`` reads
the file at ``path`` (the client's, made absolute) itself: the socket is
its own user's alone.

A duration (``dur``) is seconds (an integer) or text such as ``"30m"``;
0 means none. ``end`` and ``abandon`` record the end reason ``cli``.
``scope`` names a scope (``agent.scope``); without it, the default scope.
An ``id`` names one session whatever its scope: ``end`` with an ``id`` acts
on it in its own scope, and ``scope`` only chooses whose active session is
meant when no ``id`` is given.

``list`` answers at most ``MAX_PAGE`` sessions; a client pages through more
by sending the last id it got as ``before``.

Limits: a request line is at most ``MAX_REQUEST`` bytes (a longer one gets
an error reply and the connection is closed); a connection idle for
``IDLE_TIMEOUT`` seconds, or slower than that to send a request or read a
reply, is closed; the daemon serves at most ``MAX_CONNECTIONS`` at once and
drops the longest-idle one to admit a new one. Peers of another uid are
refused. A request with another ``v`` gets an error naming the version.
"""

from __future__ import annotations

from agent.control import jsonline
from agent.errors import DaemonError, SessionError

TYPE_CHECKING = False  # typing costs the CLI's fast path milliseconds
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_PAGE",
    "MAX_REPLY",
    "MAX_REQUEST",
    "OPS",
    "VERSION",
    "ProtocolError",
    "decode_reply",
    "decode_request",
    "encode_error",
    "encode_reply",
    "encode_request",
]

VERSION = 1
MAX_REQUEST = 64 * 1024
MAX_REPLY = 16 * 1024 * 1024
MAX_PAGE = 500
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 10.0
OPS = frozenset(
    {"ping", "start", "end", "abandon", "current", "touch", "get", "list", "status", "update", "count"}
    | {"report", "import", "subscribe"}
)


class ProtocolError(DaemonError):
    """A message that is not valid in this protocol; exit code 2 (bad request)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


def _line(obj: dict[str, Any]) -> bytes:
    return jsonline.dumps(obj).encode("utf-8") + b"\n"


def encode_request(op: str, **args: Any) -> bytes:
    return _line({"v": VERSION, "op": op, "args": args})


def decode_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """``(op, args)`` of a request line; ``ProtocolError`` says what is wrong."""
    message = _decode(line, "request")
    if type(message.get("v")) is not int or message.get("v") != VERSION:  # `true` is not 1
        version = message.get("v")
        raise ProtocolError(f"unsupported protocol version {version!r}; this daemon speaks {VERSION}")
    op = message.get("op")
    if not isinstance(op, str) or op not in OPS:
        shown = op if not isinstance(op, str) or len(op) <= 40 else op[:37] + "..."
        raise ProtocolError(f"unknown op {shown!r}; known: {', '.join(sorted(OPS))}")
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("args must be a JSON object")
    return op, args


def encode_reply(result: Any) -> bytes:
    return _line({"v": VERSION, "ok": True, "result": result})


def encode_error(error: SessionError) -> bytes:
    return _line(
        {
            "v": VERSION,
            "ok": False,
            "error": {"type": type(error).__name__, "message": str(error), "exit_code": error.exit_code},
        }
    )


def decode_reply(line: bytes) -> Any:
    """The result of a reply line, or raise the error it carries as ``DaemonError``."""
    message = _decode(line, "reply")
    if message.get("ok") is True:
        return message.get("result")
    error = message.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        raise DaemonError("the daemon sent a malformed error reply")
    code = error.get("exit_code")
    raise DaemonError(error["message"], code if isinstance(code, int) and 1 <= code <= 125 else 5)


def _decode(line: bytes, what: str) -> dict[str, Any]:
    try:
        message = jsonline.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError(f"the {what} is not valid UTF-8") from None
    except ValueError as exc:
        raise ProtocolError(f"the {what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(f"the {what} is nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"the {what} must be a JSON object")
    return message

"""What an edit of a current file asks for: the file protocol's language.

The content is one of ``end`` (or empty), ``abandon``, ``start`` with
options (``replace``, ``owner=PID``, ``idle=30m``, ``grace=2m``), or a
session id (a heartbeat when it names the active one). Keywords are
case-insensitive and trimmed. What the lane does with each is
``agent.lane``'s table; see docs/file-protocol.md.
"""

from __future__ import annotations

import enum

from agent.config import StartRequest, parse_seconds
from agent.current_file import MAX_CONTENT
from agent.details import Details
from agent.errors import InvalidArgumentError
from agent.session_id import parse_session_id
from agent.values import Value

__all__ = ["Edit", "EditKind", "parse_edit"]


class EditKind(enum.Enum):
    END = "end"  # empty, whitespace or `end`
    START = "start"
    ABANDON = "abandon"
    NAMES = "names a session"
    INVALID = "invalid"


class Edit(Value):
    """What the file's content asks for."""

    __slots__ = ("kind", "problem", "session_id", "start")

    kind: EditKind
    session_id: str | None  # for NAMES
    problem: str | None  # for INVALID: why it was rejected
    start: StartRequest | None  # for START: its options

    def __init__(
        self,
        kind: EditKind,
        session_id: str | None = None,
        problem: str | None = None,
        start: StartRequest | None = None,
    ) -> None:
        self._set(kind=kind, session_id=session_id, problem=problem, start=start)


_KEYWORDS = {"end": EditKind.END, "start": EditKind.START, "abandon": EditKind.ABANDON}


def parse_edit(content: bytes | None) -> Edit:
    """What a regular file's content asks for (keywords: case-insensitive, trimmed).

    ``None`` is a regular file that could not be read (e.g. mode 000): it
    asks for nothing, and must not be taken for an empty file, which ends
    the session."""
    if content is None:
        return Edit(EditKind.INVALID, problem="it cannot be read")
    if len(content) > MAX_CONTENT:
        return Edit(EditKind.INVALID, problem=f"more than {MAX_CONTENT} bytes")
    try:
        text = content.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Edit(EditKind.INVALID, problem="not valid UTF-8")
    if not text:
        return Edit(EditKind.END)
    keyword = _KEYWORDS.get(text.lower())
    if keyword is not None:
        return Edit(keyword, start=StartRequest() if keyword is EditKind.START else None)
    first, *more = text.splitlines()
    words = first.split()
    if words and words[0].lower() == "start":
        return _parse_start(words[1:], [line.strip() for line in more if line.strip()])
    try:
        return Edit(EditKind.NAMES, session_id=parse_session_id(text))
    except ValueError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        return Edit(EditKind.INVALID, problem=f"{shown!r} is neither a keyword nor a session id")


_START_OPTIONS = "it takes replace, owner=PID, idle=DURATION, grace=DURATION"
_DETAIL_LINES = (
    "each line after `start` is one of cwd=, project=, tool=, external_id=, parent=, title=, tag=, label.KEY="
)


def _parse_start(words: list[str], lines: list[str]) -> Edit:
    """``start`` with options on its line (``replace``, ``owner=PID``,
    ``idle=30m``, ``grace=2m``), then what the session is, one ``key=value``
    per line (so a value may hold spaces): ``cwd=``, ``project=``, ``tool=``,
    ``external_id=``, ``parent=``, ``title=``, ``tag=`` (repeatable),
    ``label.KEY=``; and the options again, one a line."""
    replace = False
    numbers: dict[str, int] = {}
    given: dict[str, object] = {}
    tags: list[str] = []
    labels: dict[str, str] = {}
    for line in lines:
        name, equals, value = line.partition("=")
        name = name.strip().lower()
        if name in ("owner", "idle", "grace", "replace"):
            words.append(line.replace(" ", ""))
        elif not equals:
            shown = line if len(line) <= 40 else line[:37] + "..."
            return Edit(EditKind.INVALID, problem=f"`start`: {shown!r} is not key=value ({_DETAIL_LINES})")
        elif name == "tag":
            tags.append(value.strip())
        elif name.startswith("label.") and len(name) > len("label."):
            labels[line.partition("=")[0].strip()[len("label.") :]] = value.strip()
        elif name in ("cwd", "project", "tool", "external_id", "parent", "title"):
            if name in given:
                return Edit(EditKind.INVALID, problem=f"`start` got {name} twice")
            given[name] = value.strip()
        else:
            shown = name if len(name) <= 40 else name[:37] + "..."
            return Edit(EditKind.INVALID, problem=f"`start` does not take {shown!r} ({_DETAIL_LINES})")
    try:
        details = Details.from_given({**given, "tags": tags, "labels": labels})
    except InvalidArgumentError as exc:
        return Edit(EditKind.INVALID, problem=f"`start`: {exc}")
    try:
        for word in words:
            name, equals, value = word.lower().partition("=")
            if name in numbers or (name == "replace" and replace):
                return Edit(EditKind.INVALID, problem=f"`start` got {name} twice")
            if name == "replace" and not equals:
                replace = True
            elif name == "owner" and equals and value.isdigit() and len(value) <= 10:
                numbers[name] = int(value)
            elif name in ("idle", "grace") and equals:
                numbers[name] = parse_seconds(value, name)
            else:
                shown = word if len(word) <= 40 else word[:37] + "..."
                return Edit(EditKind.INVALID, problem=f"`start` does not take {shown!r} ({_START_OPTIONS})")
        request = StartRequest(
            owner_pid=numbers.get("owner"),
            idle_timeout=numbers.get("idle"),
            idle_grace=numbers.get("grace"),
            replace=replace,
            details=details,
        )
    except InvalidArgumentError as exc:
        return Edit(EditKind.INVALID, problem=f"`start`: {exc}")
    return Edit(EditKind.START, start=request)

"""What both command lines print, and what they send: one layer for the
click commands (``agent.cli``) and the click-free fast path
(``agent.fast_cli``).

The hot commands (start, end, abandon, current, touch) print their result
through ``show_result`` and their failure through ``fail`` whichever path
ran them, so the two cannot drift apart; only the argv recogniser of the
fast path is its own. Imports nothing at module level: the fast path pays
for every module it loads.
"""

from __future__ import annotations

import os
import sys

__all__ = [
    "COMMAND_TOOL",
    "NO_ACTIVE_SESSION",
    "PROGRAM",
    "command_place",
    "error_line",
    "fail",
    "note",
    "note_line",
    "nothing_to_end",
    "show_result",
    "to_json",
]

PROGRAM = "session-agent"
NO_ACTIVE_SESSION = "no active session"
COMMAND_TOOL = "cli"  # the tool of a session started by the command line


def command_place() -> dict[str, str]:
    """What a ``start`` from the command line says of itself unless told
    otherwise: the command's own directory and the tool ``cli``."""
    try:
        return {"cwd": os.getcwd(), "tool": COMMAND_TOOL}
    except OSError:  # the directory was removed under the shell: no cwd
        return {"tool": COMMAND_TOOL}


def error_line(error: object) -> str:
    """One line on stderr for a failed command."""
    return f"{PROGRAM}: error: {error}"


def note_line(text: str) -> str:
    """One line on stderr that does not change the outcome."""
    return f"{PROGRAM}: {text}"


def fail(error: object, code: int) -> int:
    """Say ``error`` on stderr; the exit code."""
    sys.stderr.write(error_line(error) + "\n")
    return code


def note(text: str) -> None:
    sys.stderr.write(note_line(text) + "\n")


def nothing_to_end(session_id: str | None, known: bool = True) -> str:
    """What ``end``/``abandon`` say when they changed nothing."""
    if session_id is None:
        return f"{NO_ACTIVE_SESSION}; nothing to do"
    if not known:
        return f"no session {session_id}; nothing to do"
    return f"session {session_id} has already ended; nothing to do"


def to_json(value: object) -> str:
    """What ``--json`` prints."""
    from agent.control.jsonline import dumps

    return dumps(value, spaced_out=True)


def show_result(
    command: str,
    session: dict[str, object] | None,
    as_json: bool = False,
    *,
    asked_for: str | None = None,
    known: bool = True,
) -> int:
    """Print a hot command's result (``session``: the session it started,
    ended, found or touched, as a dict; ``None``: none) and return its exit
    code. ``asked_for``/``known``: the id an ``end``/``abandon`` was given,
    and whether such a session exists, for what it says when it changed
    nothing."""
    if as_json:
        sys.stdout.write(to_json(session) + "\n")
    elif command in ("start", "current") and session is not None:
        sys.stdout.write(f"{session['id']}\n")
    if command in ("current", "touch") and session is None:
        if not as_json:
            note(NO_ACTIVE_SESSION)
        return 1
    if command in ("end", "abandon") and session is None:
        note(nothing_to_end(asked_for, known))
    return 0

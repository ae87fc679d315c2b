"""The words both command lines print, so that the fast path
(``agent.fast_cli``) and the full one (``agent.cli``) can never drift
apart. Imports nothing: the fast path pays for every module it loads."""

from __future__ import annotations

__all__ = ["NO_ACTIVE_SESSION", "PROGRAM", "error_line", "note_line", "nothing_to_end"]

PROGRAM = "session-agent"
NO_ACTIVE_SESSION = "no active session"


def error_line(error: object) -> str:
    """One line on stderr for a failed command."""
    return f"{PROGRAM}: error: {error}"


def note_line(text: str) -> str:
    """One line on stderr that does not change the outcome."""
    return f"{PROGRAM}: {text}"


def nothing_to_end(session_id: str | None, known: bool = True) -> str:
    """What ``end``/``abandon`` say when they changed nothing."""
    if session_id is None:
        return f"{NO_ACTIVE_SESSION}; nothing to do"
    if not known:
        return f"no session {session_id}; nothing to do"
    return f"session {session_id} has already ended; nothing to do"

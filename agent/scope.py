"""Scopes: independent lanes of sessions, each with at most one active.

Several editor windows and AI-coding sessions run at once; each gets its
own scope, named by the tool (a Claude Code ``session_id``, ``nvim-4242``).
The default scope is the one that existed before scopes: its current file
is ``<data_dir>/current_session``, and records written before scopes belong
to it. Every other scope has its own directory and file,
``<data_dir>/scopes/<name>/current_session``, with the same protocol.

A name becomes a directory name, so it is held to what is safe as one on
every file system and in every shell: 1 to ``MAX_SCOPE_LENGTH`` ASCII
letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit
(so never ``.``, ``..``, a hidden file or something that reads as an
option). Anything else is refused with the reason, never cleaned up into
another name: two tools must not end up sharing a scope by accident.
"""

from __future__ import annotations

from agent.errors import InvalidArgumentError
from agent.layout import DEFAULT_SCOPE

__all__ = [
    "DEFAULT_SCOPE",
    "MAX_SCOPE_LENGTH",
    "InvalidScopeError",
    "parse_scope",
    "scope_args",
    "scope_problem",
]

MAX_SCOPE_LENGTH = 64
_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ALLOWED = _FIRST | frozenset("._-")
_SHOWN = 40  # characters of a rejected name quoted in the error


class InvalidScopeError(InvalidArgumentError):
    """A scope name that cannot be used (exit 2)."""


def scope_problem(name: object) -> str | None:
    """Why ``name`` is not a scope name, or ``None`` if it is one."""
    if not isinstance(name, str):
        return f"a scope name is a string, not {type(name).__name__}"
    if not name:
        return "a scope name cannot be empty"
    if len(name) > MAX_SCOPE_LENGTH:
        return f"a scope name has at most {MAX_SCOPE_LENGTH} characters, not {len(name)}"
    bad = next((c for c in name if c not in _ALLOWED), None)
    if bad is not None:
        return f"a scope name cannot contain {bad!r}"
    if name[0] not in _FIRST:
        return "a scope name starts with a letter or a digit"
    return None


def parse_scope(raw: object) -> str:
    """``raw`` as a scope name (``None``: the default scope);
    ``InvalidScopeError`` says what is wrong and what is allowed."""
    if raw is None:
        return DEFAULT_SCOPE
    problem = scope_problem(raw)
    if problem is None:
        assert isinstance(raw, str)
        return raw
    shown = raw if not isinstance(raw, str) or len(raw) <= _SHOWN else raw[:_SHOWN] + "..."
    raise InvalidScopeError(
        f"scope {shown!r} is not valid: {problem}; use 1 to {MAX_SCOPE_LENGTH} ASCII letters, "
        "digits, '.', '_' or '-', starting with a letter or digit"
    )


def scope_args(scope: str) -> dict[str, str]:
    """The scope argument of a control request: none for the default scope,
    which is also what a daemon from before scopes understands."""
    return {} if scope == DEFAULT_SCOPE else {"scope": scope}

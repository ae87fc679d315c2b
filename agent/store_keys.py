"""Every key of the store: a scope's meta keys, and the index keys.

The ``meta`` column family holds, per scope, the pointer to its active
session, that session's tracking and the stamp of its current file
(``ScopeKeys``); the ``scopes`` family holds the indexes: ``<scope>\0<id>``
for every session, ``\x01<project>\0<id>`` for every session with a
project. A scope's name starts with a letter or digit and a project's
name holds no control character, so the two never meet.
"""

from __future__ import annotations

from agent.layout import DEFAULT_SCOPE

__all__ = ["META_INDEX_FLOOR", "META_LONGEST", "ScopeKeys", "project_index_key", "scope_index_key"]

META_INDEX_FLOOR = b"scope_index_floor"  # sessions up to this key may have no scope index entry
# The longest wall time of any ended session the store holds (microseconds,
# ASCII digits): how far before a range's start a session overlapping it may
# have started, so that a report reads only from there.
META_LONGEST = b"longest_ended_us"


class ScopeKeys:
    """A scope's meta keys. The default scope keeps the bare names it had
    before scopes, so stores written then need no migration; another's are
    ``<name>/<scope>``."""

    ACTIVE = b"active"  # id of the active session, absent when none
    STAMP = b"file_stamp"  # Stamp of our last completed write of the current file
    TRACKING = b"tracking"  # Tracking of the active session, absent when none

    __slots__ = ("active", "stamp", "tracking")

    def __init__(self, scope: str) -> None:
        suffix = b"" if scope == DEFAULT_SCOPE else b"/" + scope.encode("ascii")
        self.active = self.ACTIVE + suffix
        self.stamp = self.STAMP + suffix
        self.tracking = self.TRACKING + suffix

    @staticmethod
    def scope_of(key: bytes) -> str:
        """The scope whose key ``key`` is."""
        _, slash, scope = key.partition(b"/")
        return scope.decode("ascii", "replace") if slash else DEFAULT_SCOPE


def scope_index_key(scope: str, session_key: bytes) -> bytes:
    return scope.encode("ascii") + b"\0" + session_key


def project_index_key(project: str, session_key: bytes) -> bytes:
    """In the same family as the scopes' index: a scope name never starts
    with \x01, and a project's name never holds \0."""
    return b"\x01" + project.encode("utf-8") + b"\0" + session_key

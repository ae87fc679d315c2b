"""session-agent: keeps track of work sessions for editors, IDEs and AI-coding tools.

The public API is re-exported here. It is loaded lazily, so that importing
``agent`` (as the CLI does) costs nothing until a name is used: the CLI's
client path must never import rocksdict.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds; the CLI's fast path never needs it

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SCOPE",
    "ConfigError",
    "EndReason",
    "InvalidArgumentError",
    "InvalidScopeError",
    "InvalidSessionIdError",
    "Session",
    "SessionAlreadyActiveError",
    "SessionError",
    "SessionIOError",
    "SessionManager",
    "SessionNotFoundError",
    "SessionStatus",
    "StorageError",
    "StoreDamagedError",
    "StoreLockedError",
    "__version__",
    "close_db",
    "open_db",
]

_HOMES = {
    "open_db": "agent.database",
    "close_db": "agent.database",
    "SessionManager": "agent.manager",
    "Session": "agent.session",
    "EndReason": "agent.session",
    "ConfigError": "agent.errors",
    "InvalidArgumentError": "agent.errors",
    "SessionStatus": "agent.session",
    "InvalidSessionIdError": "agent.errors",
    "SessionAlreadyActiveError": "agent.errors",
    "SessionError": "agent.errors",
    "SessionIOError": "agent.errors",
    "SessionNotFoundError": "agent.errors",
    "StorageError": "agent.errors",
    "StoreDamagedError": "agent.errors",
    "StoreLockedError": "agent.errors",
    "DEFAULT_SCOPE": "agent.scope",
    "InvalidScopeError": "agent.scope",
}

if TYPE_CHECKING:
    from agent.database import close_db, open_db
    from agent.errors import (
        ConfigError,
        InvalidArgumentError,
        InvalidSessionIdError,
        SessionAlreadyActiveError,
        SessionError,
        SessionIOError,
        SessionNotFoundError,
        StorageError,
        StoreDamagedError,
        StoreLockedError,
    )
    from agent.manager import SessionManager
    from agent.scope import DEFAULT_SCOPE, InvalidScopeError
    from agent.session import EndReason, Session, SessionStatus


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    # __import__, not importlib.import_module: importing importlib costs the fast path 0.5 ms
    return getattr(__import__(home, fromlist=[name]), name)

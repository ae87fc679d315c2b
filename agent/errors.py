"""The ``SessionError`` family.

Each error carries the CLI exit code it maps to, so the CLI maps errors to
exit codes in one place and nothing below it ever calls ``sys.exit``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DaemonError",
    "DaemonNotAnsweringError",
    "DaemonNotRunningError",
    "DaemonRunningError",
    "InvalidArgumentError",
    "InvalidSessionIdError",
    "OutcomeUnknownError",
    "RemoteSessionError",
    "SessionAlreadyActiveError",
    "SessionError",
    "SessionIOError",
    "SessionNotFoundError",
    "StorageError",
    "StoreDamagedError",
    "StoreLockedError",
]


class SessionError(Exception):
    """Base of every error session-agent raises on purpose."""

    exit_code = 5


class InvalidSessionIdError(SessionError, ValueError):
    """A session id from outside is not a UUID; raised before it becomes a key."""

    exit_code = 2

    def __init__(self, raw: str, reason: str) -> None:
        shown = raw if len(raw) <= 60 else raw[:57] + "..."
        super().__init__(
            f"invalid session id {shown!r}: {reason}; "
            "a session id is a UUID, as `session-agent start` prints it"
        )
        self.raw = raw


class InvalidArgumentError(SessionError, ValueError):
    """A request's argument is wrong (an owner process that does not exist,
    a duration out of range); the message names it and the fix."""

    exit_code = 2


class ConfigError(SessionError):
    """The data dir's config.toml cannot be used; the message says where."""

    exit_code = 2


class SessionNotFoundError(SessionError):
    exit_code = 4

    def __init__(self, session_id: str, elsewhere: str | None = None) -> None:
        """``elsewhere``: the host whose session it is (taken in through the sync dir)."""
        if elsewhere is None:
            super().__init__(f"no session {session_id}; `session-agent list` shows the known ones")
        else:
            super().__init__(
                f"no session {session_id} on this machine: it is host {elsewhere}'s; "
                f"add --host {elsewhere} (or --all-hosts)"
            )
        self.session_id = session_id


class RemoteSessionError(SessionError):
    """The session is another machine's (taken in through the sync dir):
    read-only here."""

    exit_code = 4

    def __init__(self, session_id: str, host: str) -> None:
        super().__init__(
            f"session {session_id} is host {host}'s: other machines' sessions are read-only here "
            f"(change it on {host})"
        )
        self.session_id = session_id


class SessionAlreadyActiveError(SessionError):
    exit_code = 3

    def __init__(self, session_id: str, scope: str | None = None) -> None:
        where = f" in scope {scope}" if scope else ""
        option = f" --scope {scope}" if scope else ""
        super().__init__(
            f"session {session_id} is already active{where}; end it first with `session-agent end{option}`, "
            "or start with --replace"
        )
        self.session_id = session_id
        self.scope = scope


class StorageError(SessionError):
    """RocksDB failed, a record is corrupt, or the store is unusable."""

    exit_code = 5


class OutcomeUnknownError(StorageError):
    """A write failed and what it did cannot be found out: the change may or
    may not have taken effect (exit 8, the one answer that is not sure)."""

    exit_code = 8


class StoreDamagedError(StorageError):
    """The store exists but cannot be opened as it is (a file missing or
    damaged). It is left exactly as found: never recreated, never cut back
    to its last good point without a word."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(
            f"the store {path} is damaged and was left as it is: {problem}. "
            "`session-agent doctor` says what it still holds; `session-agent repair` restores it "
            "from the newest snapshot and salvages the rest"
        )
        self.path = path
        self.problem = problem


class StoreLockedError(StorageError):
    """Another process holds the store and did not let go in time."""

    exit_code = 6

    def __init__(self, path: object, holder_pid: int | None) -> None:
        holder = f"process {holder_pid}" if holder_pid else "another process"
        super().__init__(
            f"the store {path} is locked by {holder}; wait for it to finish, or stop it if it is hung"
        )
        self.holder_pid = holder_pid


class SessionIOError(SessionError):
    """A file-system operation on the data dir failed."""

    exit_code = 5


class DaemonError(SessionError):
    """The daemon failed a request or broke the protocol; carries its exit code.

    Errors the daemon reports are re-raised on the client side as this class
    with the original message and exit code, so the CLI prints the same line
    whether it ran embedded or through the daemon.
    """

    def __init__(self, message: str, exit_code: int = 5) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DaemonRunningError(SessionError):
    """A second daemon was started on a data dir that already has one."""

    exit_code = 6

    def __init__(
        self,
        data_dir: object,
        pid: int | None,
        advice: str = "stop it first, or give this one another --data-dir",
    ) -> None:
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(f"a daemon ({holder}) already runs on {data_dir}; {advice}")
        self.pid = pid


class DaemonNotAnsweringError(SessionError):
    """A daemon holds the store but did not answer in time (stopped or hung)."""

    exit_code = 6

    def __init__(self, pid: int | None, waited: float, cause: str | None = None) -> None:
        who = f"the daemon (pid {pid})" if pid else "the daemon"
        hint = f"`kill -CONT {pid}` if it was stopped, or `kill {pid}`" if pid else "restart it"
        why = cause or f"it may be stopped or hung: {hint}"
        super().__init__(f"{who} did not answer within {waited:g} s; {why}")
        self.pid = pid


class DaemonNotRunningError(SessionError):
    """What was asked needs a running daemon (following events), and none runs."""

    exit_code = 7

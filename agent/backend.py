"""Where a CLI command is carried out: through the daemon, or embedded.

``open_backend`` prefers a running daemon. Without one, the command opens
the store itself (``EmbeddedBackend``), applying the same rules. The store
admits one process at a time, so when it is busy -- another embedded
command, or a daemon that is starting and has not bound its socket yet --
we look for the socket again and retry until ``ANSWER_TIMEOUT``; then the
command fails with exit 6 naming the pid that holds the store.

Both backends hand out ``Session`` values, so the commands do not care
which one they got.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime

from agent.control.client import ANSWER_TIMEOUT, DaemonClient
from agent.control.protocol import MAX_PAGE
from agent.errors import DaemonError, StoreLockedError
from agent.paths import Paths, ensure_private_dir
from agent.session import Session, SessionStatus, format_time

TYPE_CHECKING = False  # typing costs every command milliseconds; it is for the checker only
if TYPE_CHECKING:
    from typing import Any, Protocol

    from agent.config import StartRequest
    from agent.manager import SessionManager

    class Backend(Protocol):
        """What the commands need, whoever carries them out."""

        def start(self, request: StartRequest | None = None) -> Session: ...
        def end(self, session_id: str | None) -> Session | None: ...
        def abandon(self, session_id: str | None) -> Session | None: ...
        def current(self) -> Session | None: ...
        def touch(self) -> Session | None: ...
        def get(self, session_id: str) -> Session | None: ...
        def list_sessions(
            self,
            *,
            statuses: frozenset[SessionStatus] | None,
            since: datetime | None,
            limit: int | None,
            errors: list[str],
        ) -> list[Session]: ...
        def status(self) -> dict[str, Any]: ...
        def close(self) -> None: ...


__all__ = ["DaemonBackend", "EmbeddedBackend", "open_backend"]  # and, for type checking, Backend

# How long an embedded command waits for another one to release the store
# before it looks for a daemon's socket again.
_LOCK_POLL = 0.05


def open_backend(paths: Paths, *, before_embedded: Callable[[], None] | None = None) -> Backend:
    """The daemon if one answers, else the store opened here (after calling
    ``before_embedded``, which the CLI uses to set up its logging)."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        client = DaemonClient.connect(paths.socket, paths.data_dir)
        if client is not None:
            return DaemonBackend(client)
        if before_embedded is not None:
            before_embedded()
            before_embedded = None
        try:
            return EmbeddedBackend.open(paths)
        except StoreLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(_LOCK_POLL)


class DaemonBackend:
    """Requests over the control socket; replies turned back into ``Session``s."""

    def __init__(self, client: DaemonClient) -> None:
        self._client = client

    def start(self, request: StartRequest | None = None) -> Session:
        args: dict[str, Any] = {}
        if request is not None:  # only what was asked for: the daemon applies its defaults to the rest
            fields = ("replace", "owner_pid", "idle_timeout", "idle_grace")
            args = {
                name: getattr(request, name) for name in fields if getattr(request, name) not in (None, False)
            }
        return _session(self._client.request("start", **args))

    def end(self, session_id: str | None) -> Session | None:
        return _maybe_session(self._client.request("end", id=session_id))

    def abandon(self, session_id: str | None) -> Session | None:
        return _maybe_session(self._client.request("abandon", id=session_id))

    def current(self) -> Session | None:
        return _maybe_session(self._client.request("current"))

    def touch(self) -> Session | None:
        return _maybe_session(self._client.request("touch"))

    def get(self, session_id: str) -> Session | None:
        return _maybe_session(self._client.request("get", id=session_id))

    def list_sessions(
        self,
        *,
        statuses: frozenset[SessionStatus] | None,
        since: datetime | None,
        limit: int | None,
        errors: list[str],
    ) -> list[Session]:
        found: list[Session] = []
        before: str | None = None
        while limit is None or len(found) < limit:
            page = min(MAX_PAGE, limit - len(found)) if limit is not None else MAX_PAGE
            reply = self._client.request(
                "list",
                statuses=sorted(statuses) if statuses else None,
                since=format_time(since) if since else None,
                limit=page,
                before=before,
            )
            if not isinstance(reply, dict) or not isinstance(reply.get("sessions"), list):
                raise DaemonError("the daemon sent a malformed list reply")
            sessions = [_session(item) for item in reply["sessions"]]
            errors.extend(str(e) for e in reply.get("errors") or ())
            found.extend(sessions)
            if len(sessions) < page:
                break
            before = sessions[-1].id
        return found

    def status(self) -> dict[str, Any]:
        reply = self._client.request("status")
        if not isinstance(reply, dict):
            raise DaemonError("the daemon sent a malformed status reply")
        return reply

    def close(self) -> None:
        self._client.close()


def _session(data: object) -> Session:
    try:
        return Session.from_dict(data)
    except ValueError as exc:
        raise DaemonError(f"the daemon sent a malformed session: {exc}") from None


def _maybe_session(data: object) -> Session | None:
    return None if data is None else _session(data)


class EmbeddedBackend:
    """The store opened by this process. Opening it applies any edit of the
    current file first, as the daemon would have."""

    def __init__(self, manager: SessionManager, paths: Paths) -> None:
        self._manager = manager
        self._paths = paths
        self._active = manager.reconcile(busy_ok=True)

    @classmethod
    def open(cls, paths: Paths) -> EmbeddedBackend:
        from agent.manager import SessionManager
        from agent.store import close_db, open_db

        os.umask(0o077)  # the store's files are the user's alone
        ensure_private_dir(paths.data_dir)
        db = open_db(paths.db)
        try:
            manager = SessionManager(db, paths.data_dir)
        except BaseException:
            close_db(db)
            raise
        try:
            return cls(manager, paths)
        except BaseException:
            manager.close()
            raise

    def start(self, request: StartRequest | None = None) -> Session:
        return self._manager.start(request)

    def end(self, session_id: str | None) -> Session | None:
        return self._manager.end(session_id)

    def abandon(self, session_id: str | None) -> Session | None:
        return self._manager.abandon(session_id)

    def current(self) -> Session | None:
        return self._active

    def touch(self) -> Session | None:
        return self._manager.touch()

    def get(self, session_id: str) -> Session | None:
        return self._manager.get(session_id)

    def list_sessions(
        self,
        *,
        statuses: frozenset[SessionStatus] | None,
        since: datetime | None,
        limit: int | None,
        errors: list[str],
    ) -> list[Session]:
        from agent.errors import StorageError

        problems: list[StorageError] = []
        sessions = self._manager.list_sessions(statuses=statuses, since=since, limit=limit, errors=problems)
        errors.extend(str(p) for p in problems)
        return sessions

    def status(self) -> dict[str, Any]:
        return {
            "daemon": {"running": False, "pid": None},
            "paths": self._paths.describe(),
            "current": self._active.to_dict() if self._active else None,
            "idle_ends_in_seconds": self._manager.seconds_to_next_rule(),
        }

    def close(self) -> None:
        self._manager.close()

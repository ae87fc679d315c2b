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
from agent.errors import StorageError, StoreLockedError
from agent.paths import Paths, ensure_private_dir
from agent.scope import DEFAULT_SCOPE
from agent.session import Session, SessionStatus

TYPE_CHECKING = False  # typing costs every command milliseconds; it is for the checker only
if TYPE_CHECKING:
    from typing import Any, Protocol

    from agent.config import StartRequest
    from agent.details import DetailsChange, SessionFilter
    from agent.manager import SessionManager
    from agent.report import ReportQuery
    from agent.sync_settings import SyncSettings

    class Backend(Protocol):
        """What the commands need, whoever carries them out."""

        def start(self, request: StartRequest | None = None, scope: str = DEFAULT_SCOPE) -> Session: ...
        def end(self, session_id: str | None, scope: str = DEFAULT_SCOPE) -> Session | None: ...
        def abandon(self, session_id: str | None, scope: str = DEFAULT_SCOPE) -> Session | None: ...
        def current(self, scope: str = DEFAULT_SCOPE) -> Session | None: ...
        def touch(self, scope: str = DEFAULT_SCOPE) -> Session | None: ...
        def update(
            self, session_id: str | None, change: DetailsChange, scope: str = DEFAULT_SCOPE
        ) -> Session | None: ...
        def count(self, session_id: str | None, n: int, scope: str = DEFAULT_SCOPE) -> Session | None: ...
        def get(self, session_id: str, hosts: str | None = None) -> Session | None: ...
        def list_sessions(
            self,
            *,
            statuses: frozenset[SessionStatus] | None,
            since: datetime | None,
            limit: int | None,
            errors: list[str],
            scope: str | None = DEFAULT_SCOPE,
            where: SessionFilter | None = None,
            hosts: str | None = None,
        ) -> list[Session]: ...
        def report(self, query: ReportQuery, errors: list[str]) -> dict[str, Any]: ...
        def import_file(self, path: str, form: str) -> dict[str, Any]: ...
        def status(self) -> dict[str, Any]: ...
        def close(self) -> None: ...


# and, for type checking, Backend
__all__ = [
    "EmbeddedBackend",
    "ReadOnlyBackend",
    "StorelessBackend",
    "open_backend",
]  # DaemonBackend: agent.daemon_backend

# How long an embedded command waits for another one to release the store
# before it looks for a daemon's socket again.
_LOCK_POLL = 0.05


def open_backend(
    paths: Paths, *, before_embedded: Callable[[], None] | None = None, create: bool = True
) -> Backend:
    """The daemon if one answers, else the store opened here (after calling
    ``before_embedded``, which the CLI uses to set up its logging).

    With ``create=False`` (the read-only commands) a data dir that holds
    nothing of ours -- no store, no current file, no scopes -- is answered
    by ``StorelessBackend`` and left as it is: a typo in ``--data-dir`` must
    not leave a new empty store behind. (A current file written before any
    store existed is an edit to apply: then the store is made.)"""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        client = DaemonClient.connect(paths.socket, paths.data_dir)
        if client is not None:
            from agent.daemon_backend import DaemonBackend

            return DaemonBackend(client)
        if not create and not _holds_anything(paths):
            return StorelessBackend(paths)
        if before_embedded is not None:
            before_embedded()
            before_embedded = None
        try:
            return EmbeddedBackend.open(paths)
        except StoreLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(_LOCK_POLL)
        except StorageError as exc:
            if create or "No space left on device" not in str(exc):
                raise
            # Opening writes (RocksDB persists its options): on a full disk a
            # read still gets its answer, from the store as it is on disk.
            return ReadOnlyBackend.open(paths)


class EmbeddedBackend:
    """The store opened by this process. Each command first applies any edit
    of the current files it concerns, as the daemon would have."""

    def __init__(self, manager: SessionManager, paths: Paths) -> None:
        self._manager = manager
        self._paths = paths

    @classmethod
    def open(cls, paths: Paths) -> EmbeddedBackend:
        from agent.database import close_db, open_db
        from agent.manager import SessionManager

        ensure_private_dir(paths.data_dir)
        db = open_db(paths.db)
        try:
            manager = SessionManager(db, paths.data_dir)
        except BaseException:
            close_db(db)
            raise
        return cls(manager, paths)

    def start(self, request: StartRequest | None = None, scope: str = DEFAULT_SCOPE) -> Session:
        return self._manager.start(request, scope=scope)

    def end(self, session_id: str | None, scope: str = DEFAULT_SCOPE) -> Session | None:
        return self._manager.end(session_id, scope=scope)

    def abandon(self, session_id: str | None, scope: str = DEFAULT_SCOPE) -> Session | None:
        return self._manager.abandon(session_id, scope=scope)

    def _settle(self, scope: str) -> Session | None:
        """Apply what ``scope``'s file asks, as the daemon would have; its active session."""
        return self._manager.current(scope)

    def _settle_all(self) -> dict[str, Session]:
        return self._manager.current_all()

    def current(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        return self._settle(scope)

    def touch(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        return self._manager.touch(scope)

    def update(
        self, session_id: str | None, change: DetailsChange, scope: str = DEFAULT_SCOPE
    ) -> Session | None:
        return self._manager.update(session_id, change, scope=scope)

    def count(self, session_id: str | None, n: int, scope: str = DEFAULT_SCOPE) -> Session | None:
        return self._manager.count(session_id, n, scope=scope)

    def get(self, session_id: str, hosts: str | None = None) -> Session | None:
        if hosts is not None:
            self._take_in()
            local = self._manager.get(session_id)
            if local is not None and local.is_active:
                self._settle(local.scope)
            return self._manager.get_over_hosts(session_id, hosts)
        session = self._manager.get(session_id)
        if session is not None and session.is_active:  # an edit of its file may have ended it
            self._settle(session.scope)
            session = self._manager.get(session_id)
        return session

    def _take_in(self) -> None:
        """Before other machines' sessions are read: take in what arrived."""
        self._manager.take_in_remote()

    def list_sessions(
        self,
        *,
        statuses: frozenset[SessionStatus] | None,
        since: datetime | None,
        limit: int | None,
        errors: list[str],
        scope: str | None = DEFAULT_SCOPE,
        where: SessionFilter | None = None,
        hosts: str | None = None,
    ) -> list[Session]:
        if scope is None:
            self._settle_all()
        else:
            self._settle(scope)
        if hosts is not None:
            self._take_in()
        problems: list[StorageError] = []
        sessions = self._manager.list_sessions(
            statuses=statuses,
            since=since,
            limit=limit,
            errors=problems,
            scope=scope,
            where=where,
            hosts=hosts,
        )
        errors.extend(str(p) for p in problems)
        return sessions

    def import_file(self, path: str, form: str) -> dict[str, Any]:
        return self._manager.import_file(path, form)

    def report(self, query: ReportQuery, errors: list[str]) -> dict[str, Any]:
        self._settle_all()
        if query.hosts is not None:
            self._take_in()
        problems: list[StorageError] = []
        report = self._manager.report(query, problems)
        errors.extend(str(p) for p in problems)
        return report

    def status(self) -> dict[str, Any]:
        from agent.hook_runner import hooks_status
        from agent.status import NOT_RUNNING, status_report

        self._settle_all()
        store = self._manager.store
        events = {"last": store.events.last_seq, "first": store.events.first_seq(), "subscribers": None}
        return status_report(
            NOT_RUNNING,
            self._paths,
            self._manager.active_states(),
            self._manager.clock,
            events=events,
            hooks=hooks_status(store, self._paths.data_dir),
            sync=self._sync_status(),
        )

    def _sync_status(self) -> dict[str, Any] | None:
        """As the daemon would say it, having shipped and taken in first."""
        from agent.config import load_settings
        from agent.errors import SessionError

        try:
            sync = load_settings(self._paths.data_dir).sync
        except SessionError:
            return None
        if sync is None:
            return None
        from agent.sync_status import sync_status

        problem = self._ship(sync)
        self._take_in()
        return sync_status(self._manager.store, sync, self._manager.clock.now(), problem)

    def _ship(self, sync: SyncSettings) -> str | None:
        """Ship what the daemon would have (none runs); the problem, if any."""
        from agent.errors import SessionError
        from agent.sync_ship import ship

        try:
            ship(self._manager.store, sync, self._manager.clock.now())
        except SessionError as exc:
            import logging

            logging.getLogger(__name__).warning("sync: nothing shipped: %s", exc)
            return str(exc)
        return None

    def close(self) -> None:
        """Remove the scopes left empty long enough and take a snapshot if
        one is due (as a daemon would, by its timers), then close the store."""
        from agent.errors import SessionError

        try:
            self._manager.scope_dirs.sweep(self._manager.remove_scope_dir)
        except SessionError as exc:  # a missed tidy-up is not worth failing the command for
            import logging

            logging.getLogger(__name__).warning("could not remove empty scopes: %s", exc)
        from agent.snapshots import take_snapshot_if_due

        take_snapshot_if_due(self._paths.data_dir, self._manager.store, self._manager.clock.now())
        self._ship_if_due()
        self._manager.close()

    def _ship_if_due(self) -> None:
        """No daemon runs to ship what this command changed: ship it now, if
        a sync dir is set (the command's outcome stands whatever happens)."""
        from agent.config import load_settings
        from agent.errors import SessionError

        try:
            sync = load_settings(self._paths.data_dir).sync
        except SessionError:
            return
        if sync is None:
            return
        from agent.sync_ship import ship_state

        state = ship_state(self._manager.store)
        if state is None or state.cursor != self._manager.store.events.last_seq:
            self._ship(sync)


class _ReadsOnly:
    """A backend for the read-only commands alone (``open_backend`` with
    ``create=False``): a write never reaches one."""

    def start(self, request: StartRequest | None = None, scope: str = DEFAULT_SCOPE) -> Session:
        raise NotImplementedError("a write opens the store with create=True")

    def end(self, session_id: str | None, scope: str = DEFAULT_SCOPE) -> Session | None:
        raise NotImplementedError("a write opens the store with create=True")

    def abandon(self, session_id: str | None, scope: str = DEFAULT_SCOPE) -> Session | None:
        raise NotImplementedError("a write opens the store with create=True")

    def update(
        self, session_id: str | None, change: DetailsChange, scope: str = DEFAULT_SCOPE
    ) -> Session | None:
        raise NotImplementedError("a write opens the store with create=True")

    def count(self, session_id: str | None, n: int, scope: str = DEFAULT_SCOPE) -> Session | None:
        raise NotImplementedError("a write opens the store with create=True")

    def import_file(self, path: str, form: str) -> dict[str, Any]:
        raise NotImplementedError("a write opens the store with create=True")


class ReadOnlyBackend(_ReadsOnly, EmbeddedBackend):
    """The store read as it is on disk, when it cannot be opened for
    writing (a full disk): the read-only commands answer from it, without
    applying edits of the current files (that needs writing)."""

    @classmethod
    def open(cls, paths: Paths) -> ReadOnlyBackend:
        import logging

        from agent.database import open_db_read_only
        from agent.manager import SessionManager

        db = open_db_read_only(paths.db)
        logging.getLogger(__name__).warning(
            "warning: the disk is full: answering from the store as it is, "
            "without applying edits of the current files"
        )
        return cls(SessionManager(db, paths.data_dir, read_only=True), paths)

    def _settle(self, scope: str) -> Session | None:
        return self._manager.active(scope)

    def _settle_all(self) -> dict[str, Session]:
        return self._manager.active_sessions()

    def touch(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        return self._manager.active(scope)  # a heartbeat cannot be recorded: the disk is full

    def close(self) -> None:
        self._manager.close()


def _holds_anything(paths: Paths) -> bool:
    """A store, a current file, scopes -- or a config.toml: a data dir set up
    on purpose (a new machine set to read the others' sessions)."""
    from agent.layout import CONFIG_NAME

    places = (paths.db, paths.current_file, paths.scopes_dir, paths.data_dir / CONFIG_NAME)
    return any(os.path.lexists(p) for p in places)


class StorelessBackend(_ReadsOnly):
    """The answers of a data dir without a store, for the read-only commands:
    nothing is active, nothing was recorded. It creates nothing."""

    def __init__(self, paths: Paths) -> None:
        self._paths = paths

    @property
    def missing(self) -> str:
        """What to tell the user, who may have mistyped the data dir."""
        where = self._paths.data_dir
        what = "does not exist" if not os.path.lexists(where) else "holds no store yet"
        return f"the data dir {where} {what}: nothing has been recorded there (check --data-dir)"

    def current(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        return None

    def touch(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        return None

    def get(self, session_id: str, hosts: str | None = None) -> Session | None:
        return None

    def list_sessions(
        self,
        *,
        statuses: frozenset[SessionStatus] | None,
        since: datetime | None,
        limit: int | None,
        errors: list[str],
        scope: str | None = DEFAULT_SCOPE,
        where: SessionFilter | None = None,
        hosts: str | None = None,
    ) -> list[Session]:
        return []

    def report(self, query: ReportQuery, errors: list[str]) -> dict[str, Any]:
        from agent.clock import default_clock
        from agent.report import build

        return build([], query, default_clock().now())

    def status(self) -> dict[str, Any]:
        from agent.clock import default_clock
        from agent.status import NOT_RUNNING, status_report

        return status_report(NOT_RUNNING, self._paths, {}, default_clock(), store_exists=False)

    def close(self) -> None:
        pass

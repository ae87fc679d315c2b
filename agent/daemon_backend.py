"""``DaemonBackend``: a command carried out by the daemon, over the control socket.

Requests go out as the protocol says (``agent.control.protocol``); replies
come back as ``Session`` values, so the commands do not care whether the
daemon or the store opened here (``agent.backend``) answered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.control.client import DaemonClient
from agent.control.protocol import MAX_PAGE
from agent.errors import DaemonError
from agent.scope import DEFAULT_SCOPE, scope_args
from agent.session import Session, SessionStatus, format_time

REPORT_TIMEOUT = 300.0  # seconds, for a report or an import; the daemon answers commands meanwhile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent.config import StartRequest
    from agent.details import DetailsChange, SessionFilter
    from agent.report import ReportQuery

__all__ = ["DaemonBackend"]


class DaemonBackend:
    """Requests over the control socket; replies turned back into ``Session``s."""

    def __init__(self, client: DaemonClient) -> None:
        self._client = client

    def start(self, request: StartRequest | None = None, scope: str = DEFAULT_SCOPE) -> Session:
        args: dict[str, Any] = scope_args(scope)
        if request is not None:  # only what was asked for: the daemon applies its defaults to the rest
            fields = ("replace", "owner_pid", "idle_timeout", "idle_grace")
            args |= {
                name: getattr(request, name) for name in fields if getattr(request, name) not in (None, False)
            }
            args |= request.details.given()
        return _session(self._client.request("start", **args))

    def end(self, session_id: str | None, scope: str = DEFAULT_SCOPE) -> Session | None:
        return _maybe_session(self._client.request("end", id=session_id, **scope_args(scope)))

    def abandon(self, session_id: str | None, scope: str = DEFAULT_SCOPE) -> Session | None:
        return _maybe_session(self._client.request("abandon", id=session_id, **scope_args(scope)))

    def current(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        return _maybe_session(self._client.request("current", **scope_args(scope)))

    def touch(self, scope: str = DEFAULT_SCOPE) -> Session | None:
        return _maybe_session(self._client.request("touch", **scope_args(scope)))

    def update(
        self, session_id: str | None, change: DetailsChange, scope: str = DEFAULT_SCOPE
    ) -> Session | None:
        args = change.to_args() | scope_args(scope)
        return _maybe_session(self._client.request("update", id=session_id, **args))

    def count(self, session_id: str | None, n: int, scope: str = DEFAULT_SCOPE) -> Session | None:
        return _maybe_session(self._client.request("count", id=session_id, n=n, **scope_args(scope)))

    def get(self, session_id: str, hosts: str | None = None) -> Session | None:
        which = {} if hosts is None else {"hosts": hosts}
        return _maybe_session(self._client.request("get", id=session_id, **which))

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
        found: list[Session] = []
        before: str | None = None
        which: dict[str, object] = {"all_scopes": True} if scope is None else dict(scope_args(scope))
        if hosts is not None:
            which["hosts"] = hosts
        while limit is None or len(found) < limit:
            page = min(MAX_PAGE, limit - len(found)) if limit is not None else MAX_PAGE
            reply = self._client.request(
                "list",
                statuses=sorted(statuses) if statuses else None,
                since=format_time(since) if since else None,
                limit=page,
                before=before,
                **which,
                **_filter_args(where),
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

    def import_file(self, path: str, form: str) -> dict[str, Any]:
        reply = self._client.request_within(REPORT_TIMEOUT, "import", path=path, **{"from": form})
        if not isinstance(reply, dict) or not isinstance(reply.get("added"), int):
            raise DaemonError("the daemon sent a malformed import reply")
        return reply

    def report(self, query: ReportQuery, errors: list[str]) -> dict[str, Any]:
        # A report reads as much history as it covers: it has a deadline of its own.
        reply = self._client.request_within(REPORT_TIMEOUT, "report", **query.to_wire())
        if not isinstance(reply, dict) or not isinstance(reply.get("total"), dict):
            raise DaemonError("the daemon sent a malformed report")
        errors.extend(str(e) for e in reply.pop("errors", None) or ())
        return reply

    def status(self) -> dict[str, Any]:
        reply = self._client.request("status")
        if not isinstance(reply, dict):
            raise DaemonError("the daemon sent a malformed status reply")
        return reply

    def close(self) -> None:
        self._client.close()


def _filter_args(where: SessionFilter | None) -> dict[str, object]:
    """A listing's filter as the socket's ``list`` takes it."""
    if where is None:
        return {}
    args: dict[str, object] = {"project": where.project, "tool": where.tool}
    if where.tags:
        args["tags"] = sorted(where.tags)
    return {k: v for k, v in args.items() if v is not None}


def _session(data: object) -> Session:
    try:
        return Session.from_dict(data)
    except ValueError as exc:
        raise DaemonError(f"the daemon sent a malformed session: {exc}") from None


def _maybe_session(data: object) -> Session | None:
    return None if data is None else _session(data)

"""What each control request does: validate its arguments, call the manager.

Arguments from the socket are untrusted: ids go through ``parse_session_id``
before they become keys, scope names through ``parse_scope`` before they
become directories and keys, and every other argument is type-checked here,
so a malformed request gets a specific error (exit code 2) and changes
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from agent import __version__
from agent.config import StartRequest, parse_seconds
from agent.control.protocol import MAX_PAGE, ProtocolError
from agent.details import GIVEN_FIELDS, Details, DetailsChange, SessionFilter
from agent.errors import StorageError
from agent.manager import SessionManager
from agent.scope import parse_scope
from agent.session import Session, SessionStatus, wire_time
from agent.session_id import parse_session_id

__all__ = ["RequestHandler"]


def _dump(session: Session | None) -> dict[str, object] | None:
    return session.to_dict() if session is not None else None


def _needs_a_stream(_: dict[str, Any]) -> None:
    raise ProtocolError("subscribe is served only by a daemon's socket, on a connection of its own")


class RequestHandler:
    """Callable as ``handler(op, args)``; returns the JSON-ready result."""

    def __init__(self, manager: SessionManager, status: Callable[[], dict[str, Any]]) -> None:
        self._manager = manager
        self._status = status
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": lambda _: {"pid": os.getpid(), "version": __version__},
            "start": lambda args: self._manager.start(_start_request(args), scope=_scope(args)).to_dict(),
            "end": lambda args: _dump(self._manager.end(_optional_id(args), scope=_scope(args))),
            "abandon": lambda args: _dump(self._manager.abandon(_optional_id(args), scope=_scope(args))),
            "current": lambda args: _dump(self._manager.current(_scope(args))),
            "touch": lambda args: _dump(self._manager.touch(_scope(args))),
            "get": lambda args: _dump(self._manager.get_over_hosts(_required_id(args), _hosts(args))),
            "update": lambda args: _dump(
                self._manager.update(_optional_id(args), DetailsChange.from_args(args), scope=_scope(args))
            ),
            "count": lambda args: _dump(
                self._manager.count(_optional_id(args), _count(args), scope=_scope(args))
            ),
            "list": self._list,
            "report": self._report,
            "import": self._import,
            "status": lambda _: self._status(),
            "subscribe": _needs_a_stream,
        }

    def __call__(self, op: str, args: dict[str, Any]) -> Any:
        return self._ops[op](args)

    def _import(self, args: dict[str, Any]) -> dict[str, Any]:
        from agent.importing import IMPORT_FORMATS

        path, form = args.get("path"), args.get("from")
        if not isinstance(path, str) or not path.startswith("/") or len(path) > 4096:
            raise ProtocolError("path must be an absolute path")
        if not isinstance(form, str) or form not in IMPORT_FORMATS:
            raise ProtocolError(f"from must be one of {', '.join(IMPORT_FORMATS)}")
        return self._manager.import_file(path, form)

    def _report(self, args: dict[str, Any]) -> dict[str, Any]:
        from agent.report import ReportQuery

        errors: list[StorageError] = []
        report = self._manager.report(ReportQuery.from_wire(args), errors)
        report["errors"] = [str(e) for e in errors]
        return report

    def _list(self, args: dict[str, Any]) -> dict[str, Any]:
        errors: list[StorageError] = []
        every_scope = args.get("all_scopes", False)
        if not isinstance(every_scope, bool):
            raise ProtocolError("all_scopes must be true or false")
        if every_scope and args.get("scope") is not None:
            raise ProtocolError("list takes a scope or all_scopes, not both")
        sessions = self._manager.list_sessions(
            scope=None if every_scope else _scope(args),
            statuses=_statuses(args.get("statuses")),
            since=_since(args.get("since")),
            limit=_limit(args.get("limit", MAX_PAGE)),
            before=_optional_id(args, "before"),
            errors=errors,
            where=SessionFilter.from_args(args),
            hosts=_hosts(args),
        )
        return {"sessions": [s.to_dict() for s in sessions], "errors": [str(e) for e in errors]}


def _start_request(args: dict[str, Any]) -> StartRequest:
    unknown = sorted(
        set(args) - {"replace", "owner_pid", "idle_timeout", "idle_grace", "scope", *GIVEN_FIELDS}
    )
    if unknown:
        raise ProtocolError(f"start does not take {', '.join(unknown)}")
    replace = args.get("replace", False)
    if not isinstance(replace, bool):
        raise ProtocolError("replace must be true or false")
    owner = args.get("owner_pid")
    if owner is not None and (isinstance(owner, bool) or not isinstance(owner, int)):
        raise ProtocolError("owner_pid must be a whole number")
    timeout, grace = args.get("idle_timeout"), args.get("idle_grace")
    return StartRequest(
        owner_pid=owner,
        idle_timeout=None if timeout is None else parse_seconds(timeout, "idle_timeout"),
        idle_grace=None if grace is None else parse_seconds(grace, "idle_grace"),
        replace=replace,
        details=Details.from_given(args),
    )


def _scope(args: dict[str, Any]) -> str:
    """The scope a request names (the default one when it names none)."""
    return parse_scope(args.get("scope"))


def _hosts(args: dict[str, Any]) -> str | None:
    """Which machines' sessions (``agent.host_choice``): checked there."""
    raw = args.get("hosts")
    if raw is not None and (not isinstance(raw, str) or len(raw) > 64):
        raise ProtocolError('hosts must be a host\'s name or "*"')
    return raw


def _optional_id(args: dict[str, Any], key: str = "id") -> str | None:
    raw = args.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ProtocolError(f"{key} must be a string")
    return parse_session_id(raw)


def _required_id(args: dict[str, Any]) -> str:
    session_id = _optional_id(args)
    if session_id is None:
        raise ProtocolError("this op needs an id")
    return session_id


def _statuses(raw: object) -> frozenset[SessionStatus] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise ProtocolError("statuses must be a list of strings")
    try:
        return frozenset(SessionStatus(s) for s in raw) or None
    except ValueError:
        raise ProtocolError(f"statuses must be among {', '.join(SessionStatus)}") from None


def _since(raw: object) -> datetime | None:
    return None if raw is None else wire_time(raw, "since")


def _count(args: dict[str, Any]) -> int:
    n = args.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int):
        raise ProtocolError("n must be a whole number")
    return n


def _limit(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_PAGE:
        raise ProtocolError(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return raw

"""The async API of the original task, on top of ``SessionManager``'s commands.

The work is sub-millisecond synchronous I/O, so these run it inline rather
than in a thread.
"""

from __future__ import annotations

from agent.config import StartRequest
from agent.details import Details
from agent.scope import parse_scope
from agent.session import EndReason, Session

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["SeedAPI"]


class SeedAPI:
    """The base of ``SessionManager``, which gives the commands these call."""

    def start(self, request: StartRequest | None = None, *, scope: str = "default") -> Session:
        raise NotImplementedError

    def end(self, session_id: str | None = None, *, reason: EndReason = EndReason.CLI) -> Session | None:
        raise NotImplementedError

    def abandon(self, session_id: str | None = None, *, reason: EndReason = EndReason.CLI) -> Session | None:
        raise NotImplementedError

    def current(self, scope: str = "default") -> Session | None:
        raise NotImplementedError

    def get(self, session_id: str) -> Session | None:
        raise NotImplementedError

    async def start_session(
        self,
        *,
        owner_pid: int | None = None,
        idle_timeout: int | None = None,
        idle_grace: int | None = None,
        replace: bool = False,
        scope: str | None = None,
        cwd: str | None = None,
        project: str | None = None,
        tool: str | None = None,
        external_id: str | None = None,
        parent: str | None = None,
        tags: Iterable[str] = (),
        title: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Start a session and return its id; what it is (``cwd`` ... ``labels``)
        as ``session-agent start`` takes it (the project and git state are
        read from ``cwd``)."""
        details = Details(
            cwd=cwd,
            project=project,
            tool=tool,
            external_id=external_id,
            parent=parent,
            tags=list(tags),
            title=title,
            labels=dict(labels or {}),
        )
        request = StartRequest(
            owner_pid=owner_pid,
            idle_timeout=idle_timeout,
            idle_grace=idle_grace,
            replace=replace,
            details=details,
        )
        return self.start(request, scope=parse_scope(scope)).id

    async def end_session(self, session_id: str) -> None:
        self.end(session_id, reason=EndReason.API)

    async def abandon_session(self, session_id: str) -> None:
        self.abandon(session_id, reason=EndReason.API)

    async def get_current_session(self, scope: str | None = None) -> str | None:
        active = self.current(parse_scope(scope))
        return active.id if active else None

    async def get_session(self, session_id: str) -> Session | None:
        return self.get(session_id)

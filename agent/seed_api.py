"""The async API of the original task, on top of ``SessionManager``'s commands.

The work is sub-millisecond synchronous I/O, so these run it inline rather
than in a thread.
"""

from __future__ import annotations

from agent.config import StartRequest
from agent.scope import parse_scope
from agent.session import EndReason, Session

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
    ) -> str:
        request = StartRequest(
            owner_pid=owner_pid, idle_timeout=idle_timeout, idle_grace=idle_grace, replace=replace
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

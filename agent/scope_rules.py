"""``ScopeRules``: a scope's sessions begun under their rules, and ended by them.

The rules themselves are ``agent.lifecycle``'s pure functions; this applies
them to a scope's active session with what only a running process knows:
whether its owner is alive (or, from the daemon's watch, when it exited).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

from agent import faults
from agent.changes import OwnerExits
from agent.clock import Clock
from agent.config import Settings, StartRequest, StartRules
from agent.details import Details, Host, check_text
from agent.errors import InvalidArgumentError
from agent.lifecycle import Tracking, due_end
from agent.owner import OwnerIdentity
from agent.scope_record import ScopeRecord
from agent.session import EndReason, Session

__all__ = ["ScopeRules"]

log = logging.getLogger(__name__)

_RULE_TEXT = {
    EndReason.IDLE: "idle for its whole idle timeout",
    EndReason.OWNER_EXITED: "its owner process exited",
}


def completed(given: Details) -> Details:
    """``given`` with what the agent knows added: the project and git state
    of its ``cwd`` (a project given is kept) and this host."""
    from agent.place import describe_place, this_host

    changes: dict[str, object] = {"host": Host(*this_host())}
    if given.cwd is not None:
        project, git = describe_place(given.cwd)
        changes["git"] = git
        if given.project is None and project is not None:
            with contextlib.suppress(InvalidArgumentError):  # a name that is no project's: none
                changes["project"] = check_text("project", project)
    return given.replace(**changes)


class ScopeRules:
    def __init__(self, record: ScopeRecord, clock: Clock, owner_exits: OwnerExits) -> None:
        self._record = record
        self._clock = clock
        self._owner_exits = owner_exits

    def begin(self, request: StartRequest, settings: Settings) -> tuple[Session, Tracking]:
        """A new session of this scope under ``request``'s rules (``settings``:
        config.toml's defaults) and with its details completed (the project
        and git state from its ``cwd``, this host); ``InvalidArgumentError``
        when its owner is not running."""
        rules = StartRules.resolve(request, settings)
        owner = None
        if rules.owner_pid is not None:
            owner = OwnerIdentity.of(rules.owner_pid, self._clock)
            if owner is None:
                raise InvalidArgumentError(
                    f"no process {rules.owner_pid} is running to own the session; "
                    "give the pid of a live process (the editor, the tool), or no owner"
                )
        session = Session.begin(
            self._clock.now(),
            owner_pid=rules.owner_pid,
            idle_timeout=rules.idle_timeout,
            idle_grace=rules.idle_grace,
            scope=self._record.scope,
            details=self._resumed(completed(request.details)),
            activity_gap=rules.activity_gap,
        )
        return session, Tracking.begin(session, self._clock, owner)

    def _resumed(self, details: Details) -> Details:
        """A host's conversation resumed -- a start naming the same host
        session (``external_id``) and tool as the scope's latest session --
        continues it: the new session's ``parent`` is that one (unless a
        parent was given)."""
        if details.external_id is None or details.parent is not None:
            return details
        latest = self._record.latest()
        if latest is None or (latest.details.external_id, latest.details.tool) != (
            details.external_id,
            details.tool,
        ):
            return details
        return details.replace(parent=latest.id)

    def end_if_due(self, active: Session, at: datetime | None = None) -> bool:
        """Abandon ``active`` if a rule (idle, owner) ended it by ``at``
        (default: now); say whether it did."""
        tracking = self._record.tracking(active)
        exited_at, alive = None, True
        owner = tracking.owner(active) if tracking is not None else None
        if owner is not None:
            exited_at = self._owner_exits.exited_at(owner)
            alive = exited_at is None and owner.alive(self._clock)
        end = due_end(active, tracking, self._clock, at=at, owner_exited_at=exited_at, owner_alive=alive)
        if end is None:
            return False
        ended = active.abandoned(end.reason, end.at)
        faults.point("manager.end_by_rule")
        log.info("session %s abandoned: %s (ended at %s)", active.id, _RULE_TEXT[end.reason], ended.ended_at)
        self._record.end(ended)
        return True

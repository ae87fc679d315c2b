"""The commands that answer questions: ``show``, ``list`` and ``status``.
``agent.cli`` adds them to its group."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from agent.cli_support import (
    SCOPE,
    SESSION_ID,
    Agent,
    SinceType,
    echo_json,
    exit_with,
    hosts_option,
    json_option,
    scope_option,
)
from agent.environment import SCOPE_ENV
from agent.errors import SessionNotFoundError
from agent.host_choice import ALL_HOSTS
from agent.output import NO_ACTIVE_SESSION, note
from agent.session import SessionStatus

if TYPE_CHECKING:
    from agent.backend import Backend
    from agent.session import Session

__all__ = ["QUERY_COMMANDS"]


@click.command()
@click.argument("session_id", metavar="[ID]", required=False, type=SESSION_ID)
@scope_option
@hosts_option
@json_option
@click.pass_obj
def show(agent: Agent, session_id: str | None, scope: str, hosts: str | None, as_json: bool) -> None:
    """Show session ID (in whatever scope), or the scope's current session.

    With --host or --all-hosts, ID may be another machine's session.
    Exits 4 if there is no such session, 1 if no ID was given and the scope
    has no active session.
    """
    from agent.render import session_detail

    if session_id is None and hosts is not None:
        raise click.UsageError(
            "--host and --all-hosts need a session ID: current sessions are this machine's"
        )
    if session_id is None:
        session = agent.read(lambda backend: backend.current(scope))
        if session is None:
            if as_json:
                echo_json(None)  # as `current --json` does
            else:
                note(NO_ACTIVE_SESSION)
            exit_with(1)
    else:
        session = agent.read(lambda backend: backend.get(session_id, hosts))
    if session is None and session_id is not None and hosts is None:
        elsewhere = agent.read(lambda backend: backend.get(session_id, ALL_HOSTS))  # only when not found
        if elsewhere is not None and elsewhere.details.host is not None:
            raise SessionNotFoundError(session_id, elsewhere.details.host.hostname)
    if session is None:
        raise SessionNotFoundError(session_id or "")
    if as_json:
        echo_json(session.to_dict())
    else:
        click.echo(session_detail(session, datetime.now(UTC)))


@click.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in SessionStatus], case_sensitive=False),
    help="Only sessions with this status (repeatable).",
)
@click.option(
    "-s",
    "--since",
    type=SinceType(),
    help="Only sessions started since: 90m, 2h, 7d, or an ISO date/time.",
)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="At most this many sessions; 0 for all.",
)
@click.option(
    "--scope",
    type=SCOPE,
    default=None,
    help=f"Only this scope's sessions [default: every scope; {SCOPE_ENV} does not narrow a listing].",
)
@click.option("--all-scopes", is_flag=True, hidden=True, help="Every scope: the default (kept for scripts).")
@click.option("--project", help="Only this project's sessions.")
@click.option(
    "--tag", "tags", multiple=True, help="Only sessions with this tag (repeatable: with every one)."
)
@click.option("--tool", help="Only sessions of this tool (nvim, claude-code, cli, ...).")
@hosts_option
@json_option
@click.pass_context
def list_(  # noqa: PLR0917 -- click passes the options by name; the order is click's
    ctx: click.Context,
    hosts: str | None,
    statuses: tuple[str, ...],
    since: datetime | None,
    limit: int,
    scope: str | None,
    all_scopes: bool,
    project: str | None,
    tags: tuple[str, ...],
    tool: str | None,
    as_json: bool,
) -> None:
    """List sessions of every scope (or of one), newest first.

    \b
    Examples:
      session-agent list --since 2h
      session-agent list -n 5
      session-agent list --status abandoned --limit 0 --json
      session-agent list --scope nvim-4242
      session-agent list --project engine --tag review --since 7d
      session-agent list --all-hosts --since 1d
    """
    from agent.details import SessionFilter
    from agent.render import session_table

    agent: Agent = ctx.obj
    if all_scopes and scope is not None:
        raise click.UsageError("give --scope or --all-scopes, not both")

    def query(backend: Backend) -> tuple[list[Session], list[str]]:
        errors: list[str] = []
        sessions = backend.list_sessions(
            statuses=frozenset(SessionStatus(s.lower()) for s in statuses) or None,
            since=since,
            limit=limit or None,
            errors=errors,
            scope=scope,
            where=SessionFilter(project, frozenset(tags), tool),
            hosts=hosts,
        )
        return sessions, errors

    sessions, errors = agent.read(query)
    for error in errors:
        note(f"warning: skipped: {error}")
    if as_json:
        echo_json([s.to_dict() for s in sessions])
    else:
        click.echo(
            session_table(sessions, datetime.now(UTC), with_scope=scope is None, with_host=hosts is not None)
        )


@click.command()
@scope_option
@json_option
@click.pass_obj
def status(agent: Agent, scope: str, as_json: bool) -> None:
    """Show whether the daemon runs, its resources, where files live, the
    scope's current session and the active session of every other scope.

    Exits 0 when the daemon is running, 7 when it is not.
    """
    from agent.render import status_text
    from agent.status import for_scope

    report = agent.read(lambda backend: backend.status())
    report = for_scope(report, scope, agent.paths)
    if as_json:
        echo_json(report)
    else:
        click.echo(status_text(report, datetime.now(UTC), scope))
    if not report.get("daemon", {}).get("running"):
        exit_with(7)


QUERY_COMMANDS = (show, list_, status)

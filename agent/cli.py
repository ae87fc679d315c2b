"""The ``session-agent`` command line.

Errors of the ``SessionError`` family are turned into one line on stderr and
their exit code in one place (``AgentGroup.invoke``). Without a daemon, every
command opens the store itself (embedded mode) and first applies any edit
made to the current-session file.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from agent import __version__
from agent.errors import SessionError, SessionNotFoundError
from agent.paths import DATA_DIR_ENV, RUNTIME_DIR_ENV, Paths, ensure_private_dir
from agent.session import SessionStatus, parse_session_id

if TYPE_CHECKING:
    from agent.manager import SessionManager
    from agent.session import Session

__all__ = ["cli", "main"]

# How long an embedded command waits for another one to release the store.
STORE_LOCK_WAIT = 4.0


class AgentGroup(click.Group):
    """Turns a ``SessionError`` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (SessionError, OSError) as error:
            if ctx.params.get("debug"):
                raise
            # An OSError that no layer below turned into a SessionError is
            # still a file-system failure: exit 5 like SessionIOError.
            click.echo(f"session-agent: error: {error}", err=True)
            ctx.exit(error.exit_code if isinstance(error, SessionError) else 5)


class SessionIdType(click.ParamType[str]):
    """Validates ids on the command line, before they reach the store."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return parse_session_id(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class SinceType(click.ParamType[datetime]):
    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        from agent.timespec import parse_since

        if isinstance(value, datetime):
            return value
        try:
            return parse_since(str(value), datetime.now(UTC))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SESSION_ID = SessionIdType()


class Agent:
    """What every command needs: the paths, and the store opened on first use."""

    def __init__(self, ctx: click.Context, paths: Paths) -> None:
        self.ctx = ctx
        self.paths = paths
        self._manager: SessionManager | None = None
        self._active: Session | None = None

    def manager(self) -> SessionManager:
        """The embedded manager, with the current file already applied."""
        if self._manager is None:
            from agent.manager import SessionManager
            from agent.store import close_db, open_db

            ensure_private_dir(self.paths.data_dir)
            db = open_db(self.paths.db, wait=STORE_LOCK_WAIT)
            try:
                manager = SessionManager(db, self.paths.data_dir)
            except BaseException:
                close_db(db)
                raise
            self.ctx.call_on_close(manager.close)
            self._active = manager.reconcile()
            self._manager = manager
        return self._manager

    def active_session(self) -> Session | None:
        self.manager()
        return self._active


def _json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def _echo_json(value: object) -> None:
    from agent.render import to_json

    click.echo(to_json(value))


def _exit(code: int) -> NoReturn:
    raise click.exceptions.Exit(code)


@click.group(cls=AgentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    envvar=DATA_DIR_ENV,
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Where the store and the current-session file live [env: {DATA_DIR_ENV}].",
)
@click.option(
    "--runtime-dir",
    envvar=RUNTIME_DIR_ENV,
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Where the daemon's control socket lives [env: {RUNTIME_DIR_ENV}].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and informational logs.")
@click.version_option(__version__, "--version", prog_name="session-agent")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, runtime_dir: Path | None, debug: bool) -> None:
    """Keep track of work sessions for editors, IDEs and AI-coding tools.

    The current session's id is in DATA_DIR/current_session; editors may
    write `start`, `end` or `abandon` into that file, delete it to end the
    session, or touch it as a heartbeat.

    \b
    Examples:
      session-agent start            # prints the new session's id
      session-agent current          # prints it again (exit 1 if none)
      session-agent end              # completes it
      session-agent list --since 7d --status completed
    """
    _configure_logging(debug)
    ctx.obj = Agent(ctx, Paths.resolve(data_dir, runtime_dir))


def _configure_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("session-agent: %(message)s"))
    root = logging.getLogger("agent")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    root.propagate = False


@cli.command()
@_json_option
@click.pass_obj
def start(agent: Agent, as_json: bool) -> None:
    """Start a session and print its id.

    Exits 3, naming the active session, if one is already active.
    """
    session = agent.manager().start()
    if as_json:
        _echo_json(session.to_dict())
    else:
        click.echo(session.id)


def _terminate(agent: Agent, session_id: str | None, abandon: bool) -> None:
    manager = agent.manager()
    ended = manager.abandon(session_id) if abandon else manager.end(session_id)
    if ended is None and session_id is not None and manager.get(session_id) is None:
        click.echo(f"session-agent: no session {session_id}; nothing to do", err=True)


@cli.command()
@click.argument("session_id", metavar="[ID]", required=False, type=SESSION_ID)
@click.pass_obj
def end(agent: Agent, session_id: str | None) -> None:
    """Complete session ID, or the current session.

    Succeeds also when the session has already ended or none is active.
    """
    _terminate(agent, session_id, abandon=False)


@cli.command()
@click.argument("session_id", metavar="[ID]", required=False, type=SESSION_ID)
@click.pass_obj
def abandon(agent: Agent, session_id: str | None) -> None:
    """Abandon session ID, or the current session (idempotent, like `end`)."""
    _terminate(agent, session_id, abandon=True)


@cli.command()
@_json_option
@click.pass_obj
def current(agent: Agent, as_json: bool) -> None:
    """Print the current session's id; exit 1 if none is active.

    With --json, print the whole session, or `null` when none is active.
    """
    active = agent.active_session()
    if as_json:
        _echo_json(active.to_dict() if active else None)
    elif active:
        click.echo(active.id)
    else:
        click.echo("session-agent: no active session", err=True)
    if active is None:
        _exit(1)


@cli.command()
@click.argument("session_id", metavar="ID", type=SESSION_ID)
@_json_option
@click.pass_obj
def show(agent: Agent, session_id: str, as_json: bool) -> None:
    """Show one session; exit 4 if there is no such session."""
    from agent.render import session_detail

    session = agent.manager().get(session_id)
    if session is None:
        raise SessionNotFoundError(session_id)
    if as_json:
        _echo_json(session.to_dict())
    else:
        click.echo(session_detail(session, datetime.now(UTC)))


@cli.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in SessionStatus], case_sensitive=False),
    help="Only sessions with this status (repeatable).",
)
@click.option(
    "--since", type=SinceType(), help="Only sessions started since: 90m, 2h, 7d, or an ISO date/time."
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="At most this many sessions; 0 for all.",
)
@_json_option
@click.pass_obj
def list_(agent: Agent, statuses: tuple[str, ...], since: datetime | None, limit: int, as_json: bool) -> None:
    """List sessions, newest first.

    \b
    Examples:
      session-agent list --since 2h
      session-agent list --status abandoned --limit 0 --json
    """
    from agent.errors import StorageError
    from agent.render import session_table

    errors: list[StorageError] = []
    sessions = agent.manager().list_sessions(
        statuses=frozenset(SessionStatus(s.lower()) for s in statuses) or None,
        since=since,
        limit=limit or None,
        errors=errors,
    )
    for error in errors:
        click.echo(f"session-agent: warning: skipped: {error}", err=True)
    if as_json:
        _echo_json([s.to_dict() for s in sessions])
    else:
        click.echo(session_table(sessions, datetime.now(UTC)))


@cli.command()
@_json_option
@click.pass_obj
def status(agent: Agent, as_json: bool) -> None:
    """Show whether the daemon runs, where files live and the current session.

    Exits 0 when the daemon is running, 7 when it is not.
    """
    from agent.timespec import format_duration

    paths = agent.paths
    active = agent.active_session()
    now = datetime.now(UTC)
    if as_json:
        _echo_json(
            {
                "daemon": {"running": False, "pid": None},
                "paths": {
                    "data_dir": str(paths.data_dir),
                    "store": str(paths.db),
                    "current_file": str(paths.current_file),
                    "socket": str(paths.socket),
                },
                "current": active.to_dict() if active else None,
            }
        )
    else:
        age = format_duration(now - active.started_at) if active else ""
        shown = f"{active.id} (active for {age})" if active else "none"
        rows = [
            ("daemon", "not running (commands open the store directly)"),
            ("data dir", str(paths.data_dir)),
            ("store", str(paths.db)),
            ("current file", str(paths.current_file)),
            ("socket", str(paths.socket)),
            ("current", shown),
        ]
        click.echo("\n".join(f"{name + ':':<14}{value}" for name, value in rows))
    _exit(7)


def main() -> None:
    cli(prog_name="session-agent")

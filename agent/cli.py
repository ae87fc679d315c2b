"""The ``session-agent`` command line.

Errors of the ``SessionError`` family are turned into one line on stderr and
their exit code in one place (``AgentGroup.invoke``). Commands go through the
daemon when one answers on the control socket; without one, they open the
store themselves (embedded mode) and first apply any edit made to the
current-session file (see ``agent.backend``). Each command imports what it
needs only when it runs: the client path never loads rocksdict, watchfiles,
psutil or asyncio.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent import __version__
from agent.cli_admin import ADMIN_COMMANDS
from agent.cli_details import DETAIL_COMMANDS
from agent.cli_events import EVENTS_COMMANDS
from agent.cli_exchange import EXCHANGE_COMMANDS
from agent.cli_queries import QUERY_COMMANDS
from agent.cli_report import REPORT_COMMANDS
from agent.cli_setup import SETUP_COMMANDS
from agent.cli_support import (
    COMPLETE_ENV,
    DURATION,
    SESSION_ID,
    Agent,
    AgentGroup,
    exit_with,
    json_option,
    scope_option,
)
from agent.cli_sync import SYNC_COMMANDS
from agent.environment import DATA_DIR_ENV, IDLE_GRACE_ENV, IDLE_TIMEOUT_ENV, RUNTIME_DIR_ENV
from agent.output import command_place, show_result
from agent.paths import Paths
from agent.session import MAX_PID

if TYPE_CHECKING:
    pass

__all__ = ["cli", "main"]


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
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(__version__, "--version", prog_name="session-agent")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, runtime_dir: Path | None, debug: bool) -> None:
    """Keep track of work sessions for editors, IDEs and AI-coding tools.

    Commands go through the daemon when one runs, and open the store
    directly when none does.

    The current session's id is in DATA_DIR/current_session; editors may
    write `start`, `end` or `abandon` into that file, delete it to end the
    session, or touch it as a heartbeat. Each scope (--scope NAME) has one
    more such file, DATA_DIR/scopes/NAME/current_session, and its own
    session.

    \b
    Examples:
      session-agent start            # prints the new session's id
      session-agent current          # prints it again (exit 1 if none)
      session-agent end              # completes it
      session-agent list --since 7d --status completed
      session-agent start --scope nvim-4242
      session-agent list --scope nvim-4242
    """
    ctx.obj = Agent(ctx, Paths.resolve(data_dir, runtime_dir), debug=debug)
    if debug and ctx.invoked_subcommand != "daemon":
        ctx.obj.configure_logging()


@cli.command()
@click.option(
    "--replace",
    is_flag=True,
    help="End the active session (reason `replaced`) and start the new one at once, atomically.",
)
@click.option(
    "--owner-pid",
    type=click.IntRange(1, MAX_PID),
    metavar="PID",
    help="Bind the session to this process: when it exits, the session is abandoned (`owner_exited`).",
)
@click.option(
    "--idle-timeout",
    type=DURATION,
    envvar=IDLE_TIMEOUT_ENV,
    help="Abandon the session (`idle`) after this long without activity (30m, 2h; 0: never) "
    f"[env: {IDLE_TIMEOUT_ENV}; default: config.toml's, else never].",
)
@click.option(
    "--idle-grace",
    type=DURATION,
    envvar=IDLE_GRACE_ENV,
    help="Counted as work after the last activity when the session ends idle "
    f"[env: {IDLE_GRACE_ENV}; default: config.toml's, else 0].",
)
@click.option(
    "--cwd",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the work happens; the project and git branch are read from it [default: this directory].",
)
@click.option(
    "--project", help="The project's name [default: from --cwd: its git repository's, else its own]."
)
@click.option("--tool", help="What drives the session: nvim, claude-code, vscode, ... [default: cli].")
@click.option("--external-id", help="The tool's own id for this session, to find it again.")
@click.option("--parent", type=SESSION_ID, help="The session this one continues or belongs to.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--title", help="One line saying what the session is for.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label (repeatable).")
@scope_option
@json_option
@click.pass_obj
def start(  # noqa: PLR0917 -- click passes the options by name; the order is click's
    agent: Agent,
    replace: bool,
    owner_pid: int | None,
    idle_timeout: int | None,
    idle_grace: int | None,
    cwd: Path | None,
    project: str | None,
    tool: str | None,
    external_id: str | None,
    parent: str | None,
    tags: tuple[str, ...],
    title: str | None,
    labels: tuple[str, ...],
    scope: str,
    as_json: bool,
) -> None:
    """Start a session (in the scope, created on first use) and print its id.

    It records what the session is: where (--cwd, and from it the project
    and the git branch), the tool, tags, a title, labels.

    Exits 3, naming the active session, if one is already active in the
    scope (unless --replace). Exits 2 if the owner process does not exist,
    or a field's value is not valid (the message names it).
    """
    from agent.config import StartRequest
    from agent.details import Details

    place = command_place()
    details = Details(
        cwd=str(cwd.absolute()) if cwd is not None else place.get("cwd"),
        project=project,
        tool=tool or place["tool"],
        external_id=external_id,
        parent=parent,
        tags=tags,
        title=title,
        labels=_labels(labels),
    )
    request = StartRequest(
        owner_pid=owner_pid,
        idle_timeout=idle_timeout,
        idle_grace=idle_grace,
        replace=replace,
        details=details,
    )
    show_result("start", agent.backend().start(request, scope).to_dict(), as_json)


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--label")
        labels[key] = value
    return labels


def _terminate(agent: Agent, session_id: str | None, scope: str, abandon: bool) -> None:
    """End or abandon; when there was nothing to end, say why on stderr
    (exit 0 all the same: ending is idempotent)."""
    backend = agent.backend()
    ended = backend.abandon(session_id, scope) if abandon else backend.end(session_id, scope)
    known = ended is not None or session_id is None or backend.get(session_id) is not None
    command = "abandon" if abandon else "end"
    show_result(command, ended.to_dict() if ended else None, asked_for=session_id, known=known)


@cli.command()
@click.argument("session_id", metavar="[ID]", required=False, type=SESSION_ID)
@scope_option
@click.pass_obj
def end(agent: Agent, session_id: str | None, scope: str) -> None:
    """Complete session ID (in whatever scope), or the scope's current session.

    Succeeds also when the session has already ended or none is active.
    """
    _terminate(agent, session_id, scope, abandon=False)


cli.add_command(
    click.Command(
        "stop",
        params=end.params,
        callback=end.callback,
        help="The same as `end` (the word Watson and Timewarrior users type).",
        short_help="The same as `end`.",
    )
)


@cli.command()
@click.argument("session_id", metavar="[ID]", required=False, type=SESSION_ID)
@scope_option
@click.pass_obj
def abandon(agent: Agent, session_id: str | None, scope: str) -> None:
    """Abandon session ID, or the scope's current session (idempotent, like `end`)."""
    _terminate(agent, session_id, scope, abandon=True)


@cli.command()
@scope_option
@json_option
@click.pass_obj
def current(agent: Agent, scope: str, as_json: bool) -> None:
    """Print the scope's current session id; exit 1 if none is active.

    With --json, print the whole session, or `null` when none is active.
    """
    active = agent.read(lambda backend: backend.current(scope))
    if code := show_result("current", active.to_dict() if active else None, as_json):
        exit_with(code)


@cli.command()
@scope_option
@json_option
@click.pass_obj
def touch(agent: Agent, scope: str, as_json: bool) -> None:
    """Record activity on the scope's current session (a heartbeat); exit 1
    if none is active. Like touching the current file: at most one write a
    second."""
    active = agent.backend(create=False).touch(scope)
    if code := show_result("touch", active.to_dict() if active else None, as_json):
        exit_with(code)


@cli.command()
@scope_option
@click.pass_obj
def path(agent: Agent, scope: str) -> None:
    """Print the scope's current-session file's path, for integrations.

    It opens nothing: the file may not exist (no session is active), and
    its directory may not exist yet (the scope or the agent was never used:
    create it with `mkdir -p`, mode 0700, before writing `start` there)."""
    click.echo(str(agent.paths.current_file_of(scope)))


for command in (
    *QUERY_COMMANDS,
    *REPORT_COMMANDS,
    *EXCHANGE_COMMANDS,
    *EVENTS_COMMANDS,
    *SYNC_COMMANDS,
    *DETAIL_COMMANDS,
    *SETUP_COMMANDS,
    *ADMIN_COMMANDS,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="session-agent", complete_var=COMPLETE_ENV)

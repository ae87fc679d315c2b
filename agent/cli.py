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

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from agent import __version__
from agent.environment import DATA_DIR_ENV, IDLE_GRACE_ENV, IDLE_TIMEOUT_ENV, RUNTIME_DIR_ENV, SCOPE_ENV
from agent.errors import SessionError, SessionNotFoundError
from agent.output import NO_ACTIVE_SESSION, error_line, note_line, nothing_to_end
from agent.paths import Paths
from agent.scope import DEFAULT_SCOPE, InvalidScopeError, parse_scope, scope_problem
from agent.session import MAX_PID, SessionStatus, parse_session_id

if TYPE_CHECKING:
    from agent.backend import Backend
    from agent.session import Session

__all__ = ["cli", "main"]

COMPLETE_ENV = "_SESSION_AGENT_COMPLETE"  # click's completion protocol: the shell sets it, we answer


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
            click.echo(error_line(error), err=True)
            ctx.exit(error.exit_code if isinstance(error, SessionError) else 5)


def _bad_value(message: str, param: click.Parameter | None, ctx: click.Context | None) -> NoReturn:
    """Fail naming where the value came from: an option, or the environment
    variable standing in for it (a user who never typed the option must
    learn which variable to fix)."""
    if (
        ctx is not None
        and param is not None
        and param.name is not None
        and isinstance(param, click.Option)
        and isinstance(param.envvar, str)
        and ctx.get_parameter_source(param.name) is click.core.ParameterSource.ENVIRONMENT
    ):
        raise click.BadParameter(message, ctx, param, param_hint=f"the environment variable {param.envvar}")
    raise click.BadParameter(message, ctx, param)


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
            _bad_value(str(exc), param, ctx)


class DurationType(click.ParamType[int]):
    """A duration in seconds: 90s, 30m, 1h30m, 2d, plain seconds; 0 or off: none."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from agent.config import parse_seconds

        if isinstance(value, int):
            return value
        try:
            return parse_seconds(str(value), None)  # click names the option or the variable
        except ValueError as exc:
            _bad_value(str(exc), param, ctx)


class ScopeType(click.ParamType[str]):
    """A scope name, checked before it becomes a directory or a key."""

    name = "SCOPE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return parse_scope(value)
        except InvalidScopeError as exc:
            _bad_value(str(exc), param, ctx)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[click.shell_completion.CompletionItem]:
        """The scopes that have a directory, and the default one: read from
        the data dir's ``scopes/`` alone (completion must stay instant)."""
        import os

        from click.shell_completion import CompletionItem

        root = ctx.find_root().params
        paths = Paths.resolve(root.get("data_dir"), root.get("runtime_dir"))
        try:
            names = [entry.name for entry in os.scandir(paths.scopes_dir) if entry.is_dir()]
        except OSError:
            names = []
        known = sorted({DEFAULT_SCOPE, *(n for n in names if scope_problem(n) is None)})
        return [CompletionItem(name) for name in known if name.startswith(incomplete)]


# Called by editors and prompts many times a minute, before anything was
# ever recorded: they answer "none" without a note.
_HOOK_COMMANDS = frozenset({"current", "touch"})

SESSION_ID = SessionIdType()
DURATION = DurationType()
SCOPE = ScopeType()
T = TypeVar("T")


class Agent:
    """What every command needs: the paths, and a backend opened on first use
    (the daemon if one answers, else the store opened here)."""

    def __init__(self, ctx: click.Context, paths: Paths, *, debug: bool = False) -> None:
        self.ctx = ctx
        self.paths = paths
        self.debug = debug
        self._backend: Backend | None = None

    def backend(self, *, create: bool = True) -> Backend:
        """The daemon, or the store opened here; ``create=False`` for the
        commands that only read: a data dir without a store stays as it is
        (see ``StorelessBackend``), and the user is told."""
        if self._backend is None:
            from agent.backend import StorelessBackend, open_backend

            self._backend = open_backend(self.paths, before_embedded=self.configure_logging, create=create)
            self.ctx.call_on_close(self._close)
            quiet = self.ctx.invoked_subcommand in _HOOK_COMMANDS
            if isinstance(self._backend, StorelessBackend) and not quiet:
                click.echo(note_line(f"note: {self._backend.missing}"), err=True)
        return self._backend

    def configure_logging(self) -> None:
        """Only what runs here logs (the embedded store), so the client path
        need not import logging at all."""
        from agent.logs import configure_cli_logging

        configure_cli_logging(self.debug)

    def read(self, query: Callable[[Backend], T]) -> T:
        """Run a read-only query; if the daemon went away mid-request (it was
        stopping), ask again, embedded or through its successor."""
        from agent.control.client import ConnectionLostError

        try:
            return query(self.backend(create=False))
        except ConnectionLostError:
            self._close()
            return query(self.backend(create=False))

    def _close(self) -> None:
        backend, self._backend = self._backend, None
        if backend is None:
            return
        try:
            backend.close()
        except SessionError as exc:  # after the command's answer: what it did was synced when done
            click.echo(note_line(f"warning: {exc}; what this command did is on disk"), err=True)


def _json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def _scope_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--scope",
        type=SCOPE,
        envvar=SCOPE_ENV,
        default=DEFAULT_SCOPE,
        help="The scope: one editor window or AI-coding session, with its own current session "
        f"[env: {SCOPE_ENV}; default: the default scope].",
    )(f)


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
    "--watch-step",
    "step_ms",
    type=click.IntRange(1, 1000),
    help="How often, in ms, the file watcher wakes to look for events "
    "[env: SESSION_AGENT_WATCH_STEP_MS; default 30]. Smaller: faster reactions, more idle CPU.",
)
@click.option(
    "--watch-debounce",
    "debounce_ms",
    type=click.IntRange(0, 10_000),
    help="The longest, in ms, a burst of file events is collected before it is acted on "
    "[env: SESSION_AGENT_WATCH_DEBOUNCE_MS; default 200].",
)
@click.pass_context
def daemon(ctx: click.Context, step_ms: int | None, debounce_ms: int | None) -> None:
    """Run the agent in the foreground until SIGTERM or Ctrl-C (exit 0).

    This is what the systemd unit runs. Logs go to stderr. Signals: SIGHUP
    re-reads the current file, SIGUSR1 starts a session if none is active,
    SIGUSR2 ends the active one. Exits 6 if a daemon already runs on the
    data dir.
    """
    from agent.daemon import Daemon, DaemonConfig
    from agent.logs import configure_daemon_logging
    from agent.systemd import under_journal
    from agent.watcher import WatchSettings

    agent: Agent = ctx.obj
    configure_daemon_logging(bool(ctx.parent and ctx.parent.params.get("debug")), journal=under_journal())
    try:
        settings = WatchSettings.resolve(step_ms=step_ms, debounce_ms=debounce_ms)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _exit(Daemon(DaemonConfig(agent.paths, settings)).run())


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
@_scope_option
@_json_option
@click.pass_obj
def start(  # noqa: PLR0917 -- click passes the options by name; the order is click's
    agent: Agent,
    replace: bool,
    owner_pid: int | None,
    idle_timeout: int | None,
    idle_grace: int | None,
    scope: str,
    as_json: bool,
) -> None:
    """Start a session (in the scope, created on first use) and print its id.

    Exits 3, naming the active session, if one is already active in the
    scope (unless --replace). Exits 2 if the owner process does not exist.
    """
    from agent.config import StartRequest

    request = StartRequest(
        owner_pid=owner_pid, idle_timeout=idle_timeout, idle_grace=idle_grace, replace=replace
    )
    session = agent.backend().start(request, scope)
    if as_json:
        _echo_json(session.to_dict())
    else:
        click.echo(session.id)


def _terminate(agent: Agent, session_id: str | None, scope: str, abandon: bool) -> None:
    """End or abandon; when there was nothing to end, say why on stderr
    (exit 0 all the same: ending is idempotent)."""
    backend = agent.backend()
    ended = backend.abandon(session_id, scope) if abandon else backend.end(session_id, scope)
    if ended is None:
        known = session_id is None or backend.get(session_id) is not None
        click.echo(note_line(nothing_to_end(session_id, known)), err=True)


@cli.command()
@click.argument("session_id", metavar="[ID]", required=False, type=SESSION_ID)
@_scope_option
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
@_scope_option
@click.pass_obj
def abandon(agent: Agent, session_id: str | None, scope: str) -> None:
    """Abandon session ID, or the scope's current session (idempotent, like `end`)."""
    _terminate(agent, session_id, scope, abandon=True)


@cli.command()
@_scope_option
@_json_option
@click.pass_obj
def current(agent: Agent, scope: str, as_json: bool) -> None:
    """Print the scope's current session id; exit 1 if none is active.

    With --json, print the whole session, or `null` when none is active.
    """
    active = agent.read(lambda backend: backend.current(scope))
    if as_json:
        _echo_json(active.to_dict() if active else None)
    elif active:
        click.echo(active.id)
    else:
        click.echo(note_line(NO_ACTIVE_SESSION), err=True)
    if active is None:
        _exit(1)


@cli.command()
@_scope_option
@_json_option
@click.pass_obj
def touch(agent: Agent, scope: str, as_json: bool) -> None:
    """Record activity on the scope's current session (a heartbeat); exit 1
    if none is active. Like touching the current file: at most one write a
    second."""
    active = agent.backend(create=False).touch(scope)
    if as_json:
        _echo_json(active.to_dict() if active else None)
    elif active is None:
        click.echo(note_line(NO_ACTIVE_SESSION), err=True)
    if active is None:
        _exit(1)


@cli.command()
@_scope_option
@click.pass_obj
def path(agent: Agent, scope: str) -> None:
    """Print the scope's current-session file's path, for integrations.

    It opens nothing: the file may not exist (no session is active), and
    its directory may not exist yet (the scope or the agent was never used:
    create it with `mkdir -p`, mode 0700, before writing `start` there)."""
    click.echo(str(agent.paths.current_file_of(scope)))


@cli.command()
@click.argument("session_id", metavar="[ID]", required=False, type=SESSION_ID)
@_scope_option
@_json_option
@click.pass_obj
def show(agent: Agent, session_id: str | None, scope: str, as_json: bool) -> None:
    """Show session ID (in whatever scope), or the scope's current session.

    Exits 4 if there is no such session, 1 if no ID was given and the scope
    has no active session.
    """
    from agent.render import session_detail

    if session_id is None:
        session = agent.read(lambda backend: backend.current(scope))
        if session is None:
            if as_json:
                _echo_json(None)  # as `current --json` does
            else:
                click.echo(note_line(NO_ACTIVE_SESSION), err=True)
            _exit(1)
    else:
        session = agent.read(lambda backend: backend.get(session_id))
    if session is None:
        raise SessionNotFoundError(session_id or "")
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
@_json_option
@click.pass_context
def list_(  # noqa: PLR0917 -- click passes the options by name; the order is click's
    ctx: click.Context,
    statuses: tuple[str, ...],
    since: datetime | None,
    limit: int,
    scope: str | None,
    all_scopes: bool,
    as_json: bool,
) -> None:
    """List sessions of every scope (or of one), newest first.

    \b
    Examples:
      session-agent list --since 2h
      session-agent list -n 5
      session-agent list --status abandoned --limit 0 --json
      session-agent list --scope nvim-4242
    """
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
        )
        return sessions, errors

    sessions, errors = agent.read(query)
    for error in errors:
        click.echo(note_line(f"warning: skipped: {error}"), err=True)
    if as_json:
        _echo_json([s.to_dict() for s in sessions])
    else:
        click.echo(session_table(sessions, datetime.now(UTC), with_scope=scope is None))


@cli.command()
@_scope_option
@_json_option
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
        _echo_json(report)
    else:
        click.echo(status_text(report, datetime.now(UTC), scope))
    if not report.get("daemon", {}).get("running"):
        _exit(7)


@cli.command()
@_json_option
@click.pass_obj
def doctor(agent: Agent, as_json: bool) -> None:
    """Check the store, the current files and the snapshots; change nothing.

    Runs beside a daemon (the store is read as it is on disk). Each line
    is `ok`, `note` (the daemon mends it by itself) or `problem`. Exits 0
    when there is no problem, 5 when there is one: then `session-agent
    repair` (with the daemon stopped) restores the store.
    """
    from agent.doctor import examine, healthy

    findings = examine(agent.paths)
    if as_json:
        _echo_json({"healthy": healthy(findings), "findings": [f.to_dict() for f in findings]})
    else:
        for finding in findings:
            click.echo(f"{finding.level:<8}{finding.text}")
    if not healthy(findings):
        _exit(5)


@cli.command()
@_json_option
@click.pass_obj
def repair(agent: Agent, as_json: bool) -> None:
    """Restore a damaged store from its newest good snapshot and salvage
    what the damaged store still holds; say what came back and what not.

    The damaged store is kept, whole, beside the new one (db.damaged-TIME).
    Needs the daemon stopped (exit 6 otherwise). A sound store is left as
    it is.
    """
    from agent.repair import repair as repair_store

    agent.configure_logging()
    report = repair_store(agent.paths)
    if as_json:
        _echo_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (click's).

    \b
    Load it from your shell's start-up file:
      bash:  eval "$(session-agent completion bash)"     in ~/.bashrc
      zsh:   eval "$(session-agent completion zsh)"      in ~/.zshrc
      fish:  session-agent completion fish > ~/.config/fish/completions/session-agent.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # the choice admits only the shells click knows
    click.echo(completer(cli, {}, "session-agent", COMPLETE_ENV).source())


@cli.group()
def service() -> None:
    """Install or remove the systemd user service."""


@service.command("install")
@click.option(
    "--socket-activation/--no-socket-activation",
    "socket_activation",
    default=False,
    help="Also install session-agent.socket: systemd holds the control socket and starts the daemon "
    "on first use.",
)
@click.option("--no-enable", is_flag=True, help="Only write the unit files; do not enable or start them.")
@click.pass_context
def service_install(ctx: click.Context, socket_activation: bool, no_enable: bool) -> None:
    """Write the user units (for this Python and data dir) and enable them.

    Without systemctl, says what to run once systemd manages your session.
    """
    from agent.service import DEFAULT_LISTEN, ServicePlan, install

    agent: Agent = ctx.obj
    root = ctx.find_root()
    global_args: list[str] = []
    for name in ("data_dir", "runtime_dir"):
        source = root.get_parameter_source(name)
        if root.params.get(name) is not None and source is not click.core.ParameterSource.DEFAULT:
            value = getattr(agent.paths, name)
            global_args += [f"--{name.replace('_', '-')}", str(value)]
    listen = (str(agent.paths.socket) if global_args else DEFAULT_LISTEN) if socket_activation else None
    for line in install(ServicePlan.for_this_python(global_args, listen), enable=not no_enable):
        click.echo(line)


@service.command("uninstall")
def service_uninstall() -> None:
    """Stop, disable and remove the user units."""
    from agent.service import uninstall

    for line in uninstall():
        click.echo(line)


def main() -> None:
    cli(prog_name="session-agent", complete_var=COMPLETE_ENV)

"""What the click commands share: the group that turns errors into exit
codes, the parameter types, the ``Agent`` context (paths and a backend
opened on first use) and the common options."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from agent.environment import SCOPE_ENV
from agent.errors import SessionError
from agent.output import error_line, note_line, to_json
from agent.paths import Paths
from agent.scope import DEFAULT_SCOPE, InvalidScopeError, parse_scope, scope_problem
from agent.session_id import parse_session_id

if TYPE_CHECKING:
    from agent.backend import Backend

__all__ = [
    "COMPLETE_ENV",
    "DURATION",
    "HOOK_COMMANDS",
    "SCOPE",
    "SESSION_ID",
    "Agent",
    "AgentGroup",
    "SinceType",
    "echo_json",
    "exit_with",
    "json_option",
    "scope_option",
]

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
HOOK_COMMANDS = frozenset({"current", "touch"})

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
            quiet = self.ctx.invoked_subcommand in HOOK_COMMANDS
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


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def scope_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--scope",
        type=SCOPE,
        envvar=SCOPE_ENV,
        default=DEFAULT_SCOPE,
        help="The scope: one editor window or AI-coding session, with its own current session "
        f"[env: {SCOPE_ENV}; default: the default scope].",
    )(f)


def hosts_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--host NAME`` / ``--all-hosts``: which machines' sessions (the
    ``hosts`` argument: ``None`` this one, ``"*"`` all, or a name)."""
    import functools

    @click.option("--all-hosts", is_flag=True, help="Sessions of every machine sharing the sync dir too.")
    @click.option(
        "--host", "host_name", metavar="NAME", help="Sessions of this machine only (see `sync status`)."
    )
    @functools.wraps(f)
    def wrapper(*args: Any, host_name: str | None, all_hosts: bool, **kwargs: Any) -> Any:
        if host_name is not None and all_hosts:
            raise click.UsageError("give --host NAME or --all-hosts, not both")
        return f(*args, hosts="*" if all_hosts else host_name, **kwargs)

    return wrapper


def echo_json(value: object) -> None:
    click.echo(to_json(value))


def exit_with(code: int) -> NoReturn:
    raise click.exceptions.Exit(code)


def write_whole(target: Path, pieces: Iterable[str]) -> None:
    """Write ``pieces`` to ``target`` through a temporary file beside it,
    fsynced and renamed into place when complete: never half a file. A
    failure is a clear error naming the file, and leaves nothing behind."""
    import os

    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "w", encoding="utf-8", newline="") as out:
            for piece in pieces:
                out.write(piece)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise

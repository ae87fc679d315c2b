"""The commands that look after the agent rather than sessions: ``daemon``,
``doctor``, ``repair``, ``completion`` and ``service``. ``agent.cli`` adds
them to its group."""

from __future__ import annotations

import click

from agent.cli_support import COMPLETE_ENV, Agent, echo_json, exit_with, json_option

__all__ = ["ADMIN_COMMANDS"]


@click.command()
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
    exit_with(Daemon(DaemonConfig(agent.paths, settings)).run())


@click.command()
@json_option
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
        echo_json({"healthy": healthy(findings), "findings": [f.to_dict() for f in findings]})
    else:
        for finding in findings:
            click.echo(f"{finding.level:<8}{finding.text}")
    if not healthy(findings):
        exit_with(5)


@click.command()
@json_option
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
        echo_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)


@click.command()
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
    click.echo(
        completer(click.get_current_context().find_root().command, {}, "session-agent", COMPLETE_ENV).source()
    )


@click.group()
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


ADMIN_COMMANDS = (daemon, doctor, repair, completion, service)

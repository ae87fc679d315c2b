"""``init`` and ``integrate``: setting the agent up in one command. ``agent.cli``
adds them to its group.

``session-agent init bash|zsh|fish`` prints the code that shows the current
session in the prompt, as ``starship init`` and ``atuin init`` do: the
snippet shipped in ``agent/integrations`` (read from the installed
package), and the line that puts ``$SESSION_AGENT_PS1`` before the prompt
(once, however often it is evaluated). ``integrate`` is ``agent.integrate``'s."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["INTEGRATIONS", "SETUP_COMMANDS"]

INTEGRATIONS = Path(__file__).resolve().parent / "integrations"
_PROMPT_LINE = {
    "bash": "case $PS1 in *SESSION_AGENT_PS1*) ;; *) PS1='${SESSION_AGENT_PS1}'\"$PS1\" ;; esac\n",
    "zsh": "case $PROMPT in *SESSION_AGENT_PS1*) ;; *) PROMPT='${SESSION_AGENT_PS1}'\"$PROMPT\" ;; esac\n",
    "fish": "",  # the snippet wraps fish_prompt itself
}


@click.command()
@click.argument("shell", type=click.Choice(sorted(_PROMPT_LINE)))
def init(shell: str) -> None:
    """Print the code that shows the current session in SHELL's prompt.

    \b
    bash, in ~/.bashrc:                eval "$(session-agent init bash)"
    zsh, in ~/.zshrc:                  eval "$(session-agent init zsh)"
    fish, in ~/.config/fish/config.fish:  session-agent init fish | source

    The prompt then starts with [sa:<the id's last 12 digits>] while a session
    is active (SESSION_AGENT_SCOPE's, in a shell that sets it); the shell
    reads the current-session file with its builtins: no process per prompt.
    """
    snippet = INTEGRATIONS / ("fish/session-agent.fish" if shell == "fish" else "shell/session-agent.sh")
    click.echo(snippet.read_text(encoding="utf-8") + _PROMPT_LINE[shell], nl=False)


@click.command()
@click.argument("host", required=False)
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    help="The project's settings in DIR, not the user's (hosts that have them).",
)
@click.option("--remove", is_flag=True, help="Take ours out again (the user's settings stay).")
@click.option("--list", "listing", is_flag=True, help="Show which hosts are set up, and where.")
def integrate(host: str | None, project: Path | None, remove: bool, listing: bool) -> None:
    """Put our hooks into HOST's own settings (or take them out), keeping
    every setting and hook of yours; the file is backed up first.

    \b
    Examples:
      session-agent integrate claude-code
      session-agent integrate claude-code --project ~/src/webshop
      session-agent integrate nvim --remove
      session-agent integrate --list
    """
    from agent.errors import InvalidArgumentError
    from agent.integrate import HOSTS

    if listing:
        if host is not None or remove:
            raise click.UsageError("--list takes no HOST and no --remove")
        for known in HOSTS.values():
            for place in known.places(project):
                state = "set up" if known.at(place).present() else "-"
                click.echo(f"{known.name:<12} {state:<7} {place}")
        return
    if host is None:
        raise click.UsageError(f"name a HOST ({', '.join(HOSTS)}) or give --list")
    if host not in HOSTS:
        raise InvalidArgumentError(f"unknown host {host!r}; known: {', '.join(HOSTS)}")
    integration = HOSTS[host].integration(project.resolve() if project is not None else None)
    if remove:
        if integration.remove():
            click.echo(f"{host}: taken out of {integration.path}")
        else:
            click.echo(f"{host}: nothing of ours in {integration.path}")
    else:
        integration.install()
        click.echo(f"{host}: set up in {integration.path}")
        if HOSTS[host].note:
            click.echo(f"  {HOSTS[host].note}")
    if integration.backup is not None:
        click.echo(f"  (what it held before: {integration.backup})")


SETUP_COMMANDS = (init, integrate)

"""``init``: setting the agent up in one command. ``agent.cli`` adds it to its group.

``session-agent init bash|zsh|fish`` prints the code that shows the current
session in the prompt, as ``starship init`` and ``atuin init`` do: the
snippet shipped in ``agent/integrations`` (read from the installed
package), and the line that puts ``$SESSION_AGENT_PS1`` before the prompt
(once, however often it is evaluated)."""

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


SETUP_COMMANDS = (init,)

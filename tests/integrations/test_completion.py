"""Shell completion in real shells: ``session-agent completion SHELL`` is
loaded as the Install section says, in an interactive bash and zsh inside
tmux; a Tab completes a command and a scope name on the screen."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.commands import SESSION_AGENT, clean_env
from ..support.daemon_process import wait_for

SCREEN_TIMEOUT = 20.0


class Terminal:
    """An interactive shell in a tmux server of its own."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        tmux = shutil.which("tmux")
        assert tmux is not None, "scripts/test installs tmux"
        self.tmux = [tmux, "-L", name, "-f", "/dev/null"]
        self.env = env

    def start(self, command: list[str]) -> None:
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-x", "160", "-y", "20", *command],
            env=self.env,
            check=True,
            timeout=30,
        )

    def type(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", *keys], env=self.env, check=True, timeout=30)

    def screen(self) -> str:
        done = subprocess.run(
            [*self.tmux, "capture-pane", "-p"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout

    def wait_for(self, text: str) -> None:
        try:
            wait_for(lambda: text in self.screen(), SCREEN_TIMEOUT, interval=0.05)
        except AssertionError:
            raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}") from None

    def close(self) -> None:
        subprocess.run(
            [*self.tmux, "kill-server"], env=self.env, capture_output=True, timeout=30, check=False
        )


@pytest.fixture
def user(tmp_path: Path) -> dict[str, str]:
    """A user with session-agent on PATH, a data dir with two scopes."""
    data_dir = tmp_path / "data"
    for scope in ("nvim-4242", "claude-abc"):
        (data_dir / "scopes" / scope).mkdir(parents=True, mode=0o700)
    home = tmp_path / "home"
    home.mkdir()
    return clean_env(
        tmp_path,
        PATH=f"{SESSION_AGENT.parent}:/usr/bin:/bin",
        SESSION_AGENT_DATA_DIR=str(data_dir),
        TERM="xterm",
        PS1="$ ",
    )


@pytest.fixture
def terminal(request: pytest.FixtureRequest, user: dict[str, str]) -> Iterator[Terminal]:
    term = Terminal(f"sa-complete-{request.node.name[-20:]}-{id(request)}", user)
    yield term
    term.close()


def _rc(shell: str, home: Path) -> Path:
    """The start-up file, with the line the Install section gives."""
    if shell == "bash":
        rc = home / ".bashrc"
        rc.write_text('PS1="$ "\neval "$(session-agent completion bash)"\necho READY\n')
    else:
        rc = home / ".zshrc"
        lines = ['PS1="$ "', "autoload -Uz compinit && compinit -u", 'eval "$(session-agent completion zsh)"']
        rc.write_text("\n".join([*lines, "echo READY", ""]))
    return rc


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_tab_completes_commands_and_scope_names(shell: str, terminal: Terminal, user: dict[str, str]) -> None:
    program = shutil.which(shell)
    assert program is not None, f"scripts/test installs {shell}"
    rc = _rc(shell, Path(user["HOME"]))
    argv = [program, "--rcfile", str(rc), "-i"] if shell == "bash" else [program, "-i"]
    terminal.start(argv)
    terminal.wait_for("READY")
    terminal.type("session-agent sho", "Tab")
    terminal.wait_for("session-agent show")  # typed "sho": the one command starting so
    terminal.type("C-u", "session-agent current --scope nv", "Tab")
    terminal.wait_for("session-agent current --scope nvim-4242")  # from the data dir's scopes
    terminal.type("C-u", "session-agent completion ", "Tab", "Tab")
    terminal.wait_for("fish")  # the choices of an argument


def test_the_completion_script_is_clicks_for_our_program(user: dict[str, str]) -> None:
    for shell, marker in (
        ("bash", "complete -o nosort -F"),
        ("zsh", "#compdef session-agent"),
        ("fish", "complete"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "agent", "completion", shell],
            capture_output=True,
            text=True,
            env=user,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert marker in done.stdout
        assert "_SESSION_AGENT_COMPLETE" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "agent", "completion", "tcsh"],
        capture_output=True,
        text=True,
        env=user,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in bad.stderr

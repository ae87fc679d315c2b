"""What users install: the wheel built from this tree, in a fresh virtualenv,
in the ``pip install --user`` layout and through pipx, and the README's
Install section run as written.

The rest of the suite runs the editable checkout; here every program runs
from an installation that has nothing but the wheel, so a module or data
file left out of the wheel fails here first.
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
from pathlib import Path

import pytest

from ..support.commands import clean_env
from ..support.daemon_process import run_daemon
from ..support.wheel import run_ok, run_program

pytestmark = pytest.mark.xdist_group("install")  # one worker builds the wheel once

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints.txt"
RUN_TIMEOUT = 60


@pytest.fixture
def user_env(tmp_path: Path, runtime_dir: Path) -> dict[str, str]:
    """A user with a home of their own and nothing on PATH but the system."""
    return clean_env(
        tmp_path,
        PATH="/usr/local/bin:/usr/bin:/bin",
        SESSION_AGENT_DATA_DIR=str(tmp_path / "data"),
        SESSION_AGENT_RUNTIME_DIR=str(runtime_dir),
        PYTHONDONTWRITEBYTECODE="1",
    )


def test_the_wheel_holds_every_module_the_executable_and_the_man_page(wheel: Path, clone: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(clone)) for p in (clone / "agent").rglob("*.py")}
    assert "agent/control/client.py" in modules  # the subpackage a plain `packages = ["agent"]` loses
    assert modules <= names, sorted(modules - names)
    assert "agent/py.typed" in names
    shipped = {
        str(p.relative_to(clone)) for p in (clone / "agent" / "integrations").rglob("*") if p.is_file()
    }
    assert "agent/integrations/shell/session-agent.sh" in shipped
    assert shipped <= names, sorted(shipped - names)  # `init` and `integrate` read them from the package
    data = next(n for n in names if n.endswith(".data/scripts/session-agent"))
    assert zipfile.ZipFile(wheel).read(data).startswith(b"#!python\n")  # pip points it at its Python
    assert any(n.endswith(".data/data/share/man/man1/session-agent.1") for n in names)


def _scenario(executable: Path, python: Path, env: dict[str, str], tmp_path: Path, runtime_dir: Path) -> None:
    """start/current/end/list/status embedded, then through the daemon."""
    data_dir = Path(env["SESSION_AGENT_DATA_DIR"])
    version = run_ok([str(executable), "--version"], env)
    assert version.startswith("session-agent, version ")
    assert run_ok([str(python), "-m", "agent", "--version"], env) == version

    first = run_ok([str(executable), "start"], env).strip()
    assert run_ok([str(executable), "current"], env).strip() == first
    run_ok([str(executable), "end"], env)
    listing = run_ok([str(executable), "list"], env)
    assert first in listing
    assert "completed" in listing
    status = run_program([str(executable), "status"], env)
    assert status.returncode == 7  # no daemon yet
    assert "not running" in status.stdout

    with run_daemon(
        tmp_path, data_dir, runtime_dir, env={"PATH": env["PATH"]}, executable=executable
    ) as daemon:
        second = run_ok([str(executable), "start"], env).strip()
        assert run_ok([str(executable), "current"], env).strip() == second
        assert f"running (pid {daemon.pid}" in run_ok([str(executable), "status"], env)
        run_ok([str(executable), "stop"], env)
        assert second in run_ok([str(executable), "list", "--status", "completed"], env)
        assert f"control socket: started session {second}" in daemon.log()


def test_a_fresh_virtualenv_runs_every_command(
    venv: Path, user_env: dict[str, str], tmp_path: Path, runtime_dir: Path
) -> None:
    executable = venv / "bin/session-agent"
    assert executable.read_text().splitlines()[0] == f"#!{venv / 'bin/python'}"
    _scenario(executable, venv / "bin/python", user_env, tmp_path, runtime_dir)


def test_the_hot_commands_through_the_daemon_import_only_the_fast_path(
    venv: Path, user_env: dict[str, str], tmp_path: Path, runtime_dir: Path
) -> None:
    # What they cost is a bench figure (scripts/bench: `current` and
    # friends against `python -I -c pass`); what keeps it low is what they
    # do not import, checked here on the installed program.
    executable = venv / "bin/session-agent"
    data_dir = Path(user_env["SESSION_AGENT_DATA_DIR"])  # not the default one: its socket path is hashed
    heavy = {"re", "json", "socket", "pathlib", "hashlib", "enum", "typing", "click", "rocksdict", "datetime"}
    heavy |= {"rich", "zoneinfo", "csv"}  # the report's and the export's libraries
    with run_daemon(tmp_path, data_dir, runtime_dir, env={"PATH": user_env["PATH"]}, executable=executable):
        for command in (["start"], ["current"], ["current", "--json"], ["touch"], ["end"]):
            done = run_program(
                [str(venv / "bin/python"), "-X", "importtime", str(executable), *command], user_env
            )
            assert done.returncode in (0, 1), done.stderr
            imported = {
                line.split("|")[-1].strip()
                for line in done.stderr.splitlines()
                if line.startswith("import time:")
            }
            assert "agent.control.client" in imported  # it did go through the fast path
            assert not imported & heavy, (command, sorted(imported & heavy))


@pytest.fixture
def user_install(wheel: Path, tmp_path: Path, user_env: dict[str, str]) -> Path:
    """``pip install --user`` of the wheel for a user whose home is in
    ``tmp_path``, by the interpreter the virtualenv was made from."""
    base_python = Path(getattr(sys, "_base_executable", sys.executable))
    env = dict(user_env, PIP_DISABLE_PIP_VERSION_CHECK="1")
    run_ok(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(base_python),
            "install",
            "--user",
            "--quiet",
            "--constraint",
            str(CONSTRAINTS),
            str(wheel),
        ],
        env,
    )
    return Path(user_env["HOME"]) / ".local"


def test_the_user_layout_matches_the_units_in_the_repository(
    user_install: Path, user_env: dict[str, str], tmp_path: Path, runtime_dir: Path
) -> None:
    # systemd/session-agent.service says %h/.local/bin/session-agent: that
    # is where `pip install --user` puts it, and it runs from there.
    unit = (REPO / "systemd/session-agent.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    program = exec_start.removeprefix("ExecStart=").split()[0].replace("%h", user_env["HOME"])
    assert Path(program) == user_install / "bin/session-agent"
    python = Path(Path(program).read_text().splitlines()[0].removeprefix("#!"))
    _scenario(Path(program), python, user_env, tmp_path, runtime_dir)
    man = run_program(
        ["man", "-w", "session-agent"], dict(user_env, PATH=f"{user_install / 'bin'}:{user_env['PATH']}")
    )
    assert man.stdout.strip() == str(user_install / "share/man/man1/session-agent.1")


def _readme_install_block() -> list[str]:
    """The commands of the README's Install section, as a user would paste them."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the Install section shows its commands in a ```sh block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_install_section_works_as_written(
    clone: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    commands = _readme_install_block()
    assert any(c.startswith("pipx install") for c in commands)
    home = Path(user_env["HOME"])
    home.mkdir(parents=True, exist_ok=True)
    # pipx from the test extras stands in for the distribution's; systemctl
    # is the real one, and no user manager runs here (a container, an SSH
    # session without lingering): the units are written all the same.
    path = f"{home / '.local/bin'}:{Path(sys.executable).parent}:{user_env['PATH']}"
    env = dict(user_env, PATH=path, PIP_CONSTRAINT=str(CONSTRAINTS), XDG_CONFIG_HOME=str(home / ".config"))
    for command in commands:
        done = run_program(["bash", "-c", command], env, cwd=clone)
        assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert os.access(home / ".local/bin/session-agent", os.X_OK)
    unit = home / ".config/systemd/user/session-agent.service"
    assert unit.is_file()
    assert (
        run_ok(["session-agent", "start"], env).strip() == run_ok(["session-agent", "current"], env).strip()
    )


def _words(text: str) -> str:
    """Text as words: wrapped at any width (a word wrapped at its hyphen,
    as --help wraps "re-reads", joined again)."""
    return re.sub(r"(\w)- (\w)", r"\1-\2", " ".join(text.split()))


def test_the_man_page_says_what_help_says(venv: Path, user_env: dict[str, str]) -> None:
    # Rendered with man itself, as `man session-agent` shows it; every block
    # of every command's --help (description, examples, options) is there.
    page = venv / "share/man/man1/session-agent.1"
    env = dict(user_env, LC_ALL="C", MANWIDTH="1000", MANPAGER="cat", PAGER="cat")
    shown = _words(run_ok(["man", "-l", str(page)], env))
    assert shown.startswith("SESSION-AGENT(1)")
    program = str(venv / "bin/session-agent")
    commands: list[list[str]] = [[]]  # the group itself, then each command, subcommands included
    listing = run_ok([program, "--help"], env).split("Commands:")[1]
    for name in (line.split()[0] for line in listing.splitlines() if line.strip()):
        commands.append([name])
        if name == "service":
            sub = run_ok([program, name, "--help"], env).split("Commands:")[1]
            commands += [[name, line.split()[0]] for line in sub.splitlines() if line.strip()]
    assert ["stop"] in commands
    assert ["service", "install"] in commands
    for command in commands:
        text = run_ok([program, *command, "--help"], env)
        blocks = text.split("\n\n")[1:]  # the usage line is man's SYNOPSIS or the command's heading
        for block in blocks:
            if block.startswith("Commands:"):
                continue  # the man page gives each command a section instead
            # "Options:" is the page's OPTIONS heading for the program itself
            assert _words(block).removeprefix("Options: ") in shown, (command, block)

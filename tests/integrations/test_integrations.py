"""The shipped integrations against the real programs: Neovim, Vim and Emacs
headless, bash and zsh, the Claude Code hooks and the VS Code task.

Each editor loads the shipped file and runs a scenario of the test's own
(``tests/integrations/editor_scenarios``): after start-up it waits for ``go-save``, saves
a file, reports ``saved``, waits for ``go-quit`` and quits. The test hands
out the go-aheads as the daemon reaches each state, so nothing here waits
on a guess: the session was started, got a heartbeat, and was completed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.control.client import DaemonClient

from ..support.commands import CLI_TIMEOUT, SESSION_AGENT, Cli, clean_env, start_session
from ..support.daemon_process import connected, run_daemon, wait_for
from ..support.editors import EDITORS, INTEGRATIONS, run_editor
from ..support.fake_anthropic import FakeAnthropic, Reply, fake_anthropic
from ..support.fake_gemini import FakeGemini, fake_gemini
from ..support.hosts import alive, completed_in_scope, git_repository, npm_program, program, read_or_empty

ROOT = Path(__file__).resolve().parents[2]
EDITOR_TIMEOUT = 60


def _scope_file(data_dir: Path, scope: str) -> Path:
    return data_dir / "scopes" / scope / "current_session"


def _names_a_session(path: Path) -> Callable[[], bool]:
    """For ``wait_for``: the daemon has written an id into ``path``."""
    return lambda: len(read_or_empty(path)) == 37


def _finished(proc: subprocess.Popen[str]) -> str:
    """Wait for the editor; it must exit 0 and report no error."""
    out, err = proc.communicate(timeout=EDITOR_TIMEOUT)
    assert proc.returncode == 0, (proc.returncode, out, err)
    assert "rror" not in out + err, out + err  # Error / error: the editors' own wording
    return err


def _session(client: DaemonClient, sid: str) -> dict[str, Any]:
    found: dict[str, Any] = client.request("get", id=sid)
    return found


@contextlib.contextmanager
def _editing(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, editor: str, folder: str = "scenario"
) -> Iterator[tuple[DaemonClient, subprocess.Popen[str], str, Path]]:
    """A real daemon and ``editor`` running its scenario in ``folder`` (a git
    repository on branch feature-x), from the moment the daemon has applied
    the editor's `start`: (client, editor, session id, scenario dir)."""
    scenario = tmp_path / folder
    scenario.mkdir()
    git_repository(scenario, branch="feature-x")
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    with run_daemon(tmp_path, data_dir, runtime_dir), connected(data_dir, runtime_dir) as client:
        proc = run_editor(editor, env, scenario)
        current = _scope_file(data_dir, f"{editor}-{proc.pid}")  # each editor run its own scope
        try:
            wait_for(lambda: len(read_or_empty(current)) == 37, timeout=20)  # the daemon applied `start`
            yield client, proc, read_or_empty(current).strip(), scenario
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize("editor", sorted(EDITORS))
def test_an_editor_starts_heartbeats_and_ends_a_session(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, editor: str
) -> None:
    with _editing(tmp_path, data_dir, runtime_dir, editor) as (client, proc, sid, scenario):
        current = _scope_file(data_dir, f"{editor}-{proc.pid}")
        session = _session(client, sid)
        assert session["scope"] == f"{editor}-{proc.pid}"
        # What the session was: the editor, where it ran, the repository there.
        assert (session["tool"], session["cwd"], session["project"]) == (editor, str(scenario), "scenario")
        git = {"root": str(scenario), "branch": "feature-x", "commit": None, "worktree": False}
        assert session["git"] == git
        started = datetime.fromisoformat(_session(client, sid)["started_at"])
        # A heartbeat counts once a second has passed since the last one.
        wait_for(lambda: datetime.now(started.tzinfo) > started + timedelta(seconds=1.1), timeout=5)
        (scenario / "go-save").touch()
        wait_for((scenario / "saved").exists, timeout=20)
        wait_for(lambda: _session(client, sid)["last_activity_at"] != _session(client, sid)["started_at"])
        (scenario / "go-quit").touch()
        _finished(proc)
        wait_for(lambda: _session(client, sid)["status"] == "completed", timeout=10)
        wait_for(lambda: not current.exists())
    assert not list(data_dir.rglob(".edit-*")), "a temporary file was left behind"
    for directory in (data_dir / "scopes", current.parent):
        assert directory.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("editor", sorted(EDITORS))
def test_an_editor_in_a_folder_no_line_can_name_still_starts_its_session(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, editor: str
) -> None:
    """A newline in the working directory's name: the agent would refuse the
    whole start with it, so the editor leaves ``cwd`` out and the session
    starts without it."""
    with _editing(tmp_path, data_dir, runtime_dir, editor, folder="two\nlines") as (client, proc, sid, _):
        session = _session(client, sid)
        assert (session["status"], session["tool"], session["cwd"]) == ("active", editor, None)
        proc.kill()
        proc.communicate(timeout=EDITOR_TIMEOUT)  # and close its pipes


@pytest.mark.parametrize("editor", sorted(EDITORS))
def test_an_editor_that_is_killed_leaves_no_session_active(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, editor: str
) -> None:
    """The session is bound to the editor's process: kill -9 (no exit hook
    runs) and the agent abandons it as owner_exited."""
    with _editing(tmp_path, data_dir, runtime_dir, editor) as (client, proc, sid, _):
        assert _session(client, sid)["owner_pid"] == proc.pid
        proc.kill()
        proc.communicate(timeout=EDITOR_TIMEOUT)
        wait_for(lambda: _session(client, sid)["status"] == "abandoned", timeout=10)
        assert _session(client, sid)["end_reason"] == "owner_exited"
        wait_for(lambda: not _scope_file(data_dir, f"{editor}-{proc.pid}").exists())


@pytest.mark.parametrize("editor", sorted(EDITORS))
def test_an_editor_is_never_held_up_when_no_daemon_runs(tmp_path: Path, data_dir: Path, editor: str) -> None:
    """The data dir exists but no daemon runs: the editor's words wait in the
    file and the next command applies them (start, then end: nothing)."""
    scenario = tmp_path / "scenario"
    scenario.mkdir()
    for marker in ("go-save", "go-quit"):
        (scenario / marker).touch()
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    began = time.monotonic()
    proc = run_editor(editor, env, scenario)
    _finished(proc)
    assert time.monotonic() - began < 20
    assert read_or_empty(_scope_file(data_dir, f"{editor}-{proc.pid}")) == "end\n"


def test_editors_side_by_side_keep_their_own_sessions(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    """Two Neovims and a Vim at once: three scopes, three sessions; one
    quits, the others go on."""
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    with run_daemon(tmp_path, data_dir, runtime_dir):
        procs = {}
        for n, editor in enumerate(("nvim", "nvim", "vim")):
            scenario = tmp_path / f"scenario-{n}"
            scenario.mkdir()
            proc = run_editor(editor, env, scenario)
            procs[f"{editor}-{proc.pid}"] = (proc, scenario)
        try:
            for scope in procs:
                wait_for(_names_a_session(_scope_file(data_dir, scope)), timeout=20)
            ids = {scope: read_or_empty(_scope_file(data_dir, scope)).strip() for scope in procs}
            assert len(set(ids.values())) == 3
            active = json.loads(cli("list", "--all-scopes", "--status", "active", "--json").stdout)
            assert {s["scope"]: s["id"] for s in active} == ids
            first, (proc, scenario) = next(iter(procs.items()))
            for marker in ("go-save", "go-quit"):
                (scenario / marker).touch()
            _finished(proc)
            wait_for(lambda: cli("current", "--scope", first).returncode == 1)
            for scope in list(procs)[1:]:
                assert cli("current", "--scope", scope).stdout.strip() == ids[scope]
        finally:
            for proc, _ in procs.values():
                if proc.poll() is None:
                    proc.kill()
                proc.communicate(timeout=EDITOR_TIMEOUT)  # and close its pipes


@pytest.mark.parametrize("editor", sorted(EDITORS))
def test_an_editor_writes_nothing_when_the_agent_was_never_run(tmp_path: Path, editor: str) -> None:
    scenario = tmp_path / "scenario"
    scenario.mkdir()
    for marker in ("go-save", "go-quit"):
        (scenario / marker).touch()
    env = clean_env(tmp_path)  # the default data dir, under a fresh HOME: absent
    _finished(run_editor(editor, env, scenario))
    assert not (tmp_path / "home" / ".local" / "share" / "session-agent").exists()


# --- shells ---------------------------------------------------------------------------

SHELL_SNIPPET = INTEGRATIONS / "shell" / "session-agent.sh"
SHELLS = {
    "bash": ["--norc", "--noprofile", "-c"],
    "zsh": ["-f", "-c"],
}
# The prompt hook runs, then the prompt is expanded as the shell would show it.
SHOW_PROMPT = {
    "bash": '. "$SNIPPET"; PS1=\'${SESSION_AGENT_PS1}$ \'; eval "$PROMPT_COMMAND"; '
    'printf "%s|%s\\n" "$SESSION_AGENT_ID" "${PS1@P}"',
    "zsh": ". \"$SNIPPET\"; PROMPT='${SESSION_AGENT_PS1}%% '; for f in $precmd_functions; do $f; done; "
    'printf "%s|%s\\n" "$SESSION_AGENT_ID" "${(%%)${(e)PROMPT}}"',
}


def _shell(shell: str, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [program(shell), *SHELLS[shell], script],
        capture_output=True,
        text=True,
        env={**env, "SNIPPET": str(SHELL_SNIPPET)},
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return done


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_the_prompt_shows_the_current_session(tmp_path: Path, data_dir: Path, cli: Cli, shell: str) -> None:
    program(shell)
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    prompt_end = "$ " if shell == "bash" else "% "
    assert _shell(shell, SHOW_PROMPT[shell], env).stdout == f"|{prompt_end}\n"
    sid = start_session(cli)
    shown = _shell(shell, SHOW_PROMPT[shell], env).stdout
    assert shown == f"{sid}|[sa:{sid.rsplit('-', 1)[1]}] {prompt_end}\n"
    (data_dir / "current_session").write_text("start\n")  # not applied yet: nothing shown
    assert _shell(shell, SHOW_PROMPT[shell], env).stdout == f"|{prompt_end}\n"
    (data_dir / "current_session").unlink()
    os.mkfifo(data_dir / "current_session")  # never opened: the prompt must not hang
    assert _shell(shell, SHOW_PROMPT[shell], env).stdout == f"|{prompt_end}\n"
    # In a shell with SESSION_AGENT_SCOPE set, that scope's session is shown.
    scoped = cli("start", env={"SESSION_AGENT_SCOPE": "term-1"}).stdout.strip()
    shown = _shell(shell, SHOW_PROMPT[shell], {**env, "SESSION_AGENT_SCOPE": "term-1"}).stdout
    assert shown == f"{scoped}|[sa:{scoped.rsplit('-', 1)[1]}] {prompt_end}\n"
    for bad in ("../term-1", ".hidden", "a b"):
        assert (
            _shell(shell, SHOW_PROMPT[shell], {**env, "SESSION_AGENT_SCOPE": bad}).stdout
            == f"|{prompt_end}\n"
        )


# `session-agent init SHELL`, evaluated (twice: a prompt shows the session once), then the
# prompt as the shell would draw it.
INIT = {
    "bash": [
        "--norc",
        "--noprofile",
        "-c",
        'PS1=\'$ \'; eval "$($SA init bash)"; eval "$($SA init bash)"; eval "$PROMPT_COMMAND"; '
        'printf "%s\\n" "${PS1@P}"',
    ],
    "zsh": [
        "-f",
        "-c",
        'PROMPT=\'%% \'; eval "$($SA init zsh)"; eval "$($SA init zsh)"; '
        'for f in $precmd_functions; do $f; done; printf "%s\\n" "${(%%)${(e)PROMPT}}"',
    ],
    "fish": [
        "--no-config",
        "-c",
        "function fish_prompt; echo -n '> '; end; $SA init fish | source; $SA init fish | source; "
        "emit fish_prompt; fish_prompt; echo",
    ],
}


@pytest.mark.parametrize("shell", sorted(INIT))
def test_init_puts_the_session_in_the_prompt(tmp_path: Path, data_dir: Path, cli: Cli, shell: str) -> None:
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir), SA=str(SESSION_AGENT))

    def prompt() -> str:
        done = subprocess.run(
            [program(shell), *INIT[shell]],
            capture_output=True,
            text=True,
            env=env,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        return done.stdout

    own = {"bash": "$ ", "zsh": "% ", "fish": "> "}[shell]
    assert prompt() == f"{own}\n"
    sid = start_session(cli)
    assert prompt() == f"[sa:{sid.rsplit('-', 1)[1]}] {own}\n"
    cli("end")
    assert prompt() == f"{own}\n"
    os.mkfifo(data_dir / "current_session")  # never opened: the prompt must not hang
    assert prompt() == f"{own}\n"


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_the_prompt_hook_starts_no_process(tmp_path: Path, data_dir: Path, cli: Cli, shell: str) -> None:
    """Traced: a hundred prompts, not one fork, clone or exec after start-up."""
    strace = program("strace")
    start_session(cli)
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir), SNIPPET=str(SHELL_SNIPPET))
    hook = "__session_agent_prompt"
    loop = f'. "$SNIPPET"; i=0; while [ $i -lt 100 ]; do {hook}; i=$((i+1)); done; echo "$SESSION_AGENT_PS1"'
    trace = tmp_path / "trace"
    done = subprocess.run(
        [
            strace,
            "-f",
            "-qq",
            "-e",
            "trace=fork,vfork,clone,clone3,execve",
            "-o",
            str(trace),
            program(shell),
            *SHELLS[shell],
            loop,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[sa:")
    calls = [line for line in trace.read_text().splitlines() if "resumed" not in line]
    assert len(calls) == 1, calls  # the shell's own execve, nothing else


def test_the_tmux_snippet_shows_the_session_in_a_real_status_line(
    tmp_path: Path, data_dir: Path, cli: Cli
) -> None:
    """The snippet sourced by a real tmux, whose status line is read off the
    screen of a terminal it runs in (an outer tmux's pane): tmux expands the
    command as a format first (``##`` is ``#`` there), which a test running
    the command through ``sh`` cannot see."""
    snippet = INTEGRATIONS / "tmux" / "session-agent.tmux"
    conf = tmp_path / "tmux.conf"
    conf.write_text(f"set -g status-right ''\nsource-file {snippet}\nset -g status-interval 1\n")
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    env.pop("TMUX", None)
    outer = [program("tmux"), "-L", f"outer-{os.getpid()}"]
    inner = f"tmux -L inner-{os.getpid()} -f {conf} new-session"
    subprocess.run(
        [*outer, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "8", inner], env=env, check=True
    )
    try:

        def screen() -> str:
            return subprocess.run(
                [*outer, "capture-pane", "-p"], env=env, capture_output=True, text=True, check=True
            ).stdout

        wait_for(lambda: "[0]" in screen(), timeout=30)  # the inner tmux draws its status line
        assert "sa:" not in screen()
        sid = start_session(cli)
        wait_for(lambda: f"sa:{sid.rsplit('-', 1)[1]}" in screen(), timeout=30)
        cli("end")
        wait_for(lambda: "sa:" not in screen(), timeout=30)
    finally:
        subprocess.run([*outer, "kill-server"], env=env, check=False)
        subprocess.run([*outer[:1], "-L", f"inner-{os.getpid()}", "kill-server"], env=env, check=False)


# --- Claude Code and VS Code -----------------------------------------------------------


def _hook_commands(event: str, source: str = "startup") -> list[tuple[str, int]]:
    """The commands Claude Code runs for ``event``: a SessionStart group's
    matcher chooses by the event's ``source`` (a tool event's matches all)."""
    settings = json.loads((INTEGRATIONS / "claude-code" / "settings.json").read_text())
    return [
        (hook["command"], hook["timeout"])
        for group in settings["hooks"][event]
        if event != "SessionStart" or re.fullmatch(group["matcher"], source)
        for hook in group["hooks"]
    ]


HEARTBEATS = ("UserPromptSubmit", "PostToolUse", "Stop")


def _run_hook(
    command: str,
    timeout: int,
    env: dict[str, str],
    event: str,
    session_id: str = "abc123",
    cwd: Path | None = None,
    **more: object,
) -> None:
    """As Claude Code runs a command hook: ``sh -c`` in the session's
    directory, the event as one line of JSON on stdin, its own fields first."""
    payload = {
        "session_id": session_id,
        "cwd": str(cwd or Path.cwd()),
        "hook_event_name": event,
        "source": "startup",
        **more,
    }
    done = subprocess.run(
        [program("sh"), "-c", command],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", done.stdout  # SessionStart output would go into the model's context


def _fire(
    event: str, env: dict[str, str], session_id: str, cwd: Path, *, id_in_env: bool = True, **more: object
) -> None:
    """Run ``event``'s hooks. Claude Code 2.1 also gives the session id in
    the environment (``CLAUDE_CODE_SESSION_ID``); older ones only in the JSON."""
    if id_in_env:
        env = {**env, "CLAUDE_CODE_SESSION_ID": session_id}
    for command, timeout in _hook_commands(event, str(more.get("source", "startup"))):
        _run_hook(command, timeout, env, event, session_id, cwd, **more)


def test_the_claude_code_hooks_start_heartbeat_and_end_a_session(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    """Two Claude Code sessions at once, each in its scope (claude-<session_id>),
    each recording what it is; every heartbeat event counts."""
    settings = json.loads((INTEGRATIONS / "claude-code" / "settings.json").read_text())
    assert set(settings["hooks"]) == {"SessionStart", *HEARTBEATS, "SessionEnd"}
    claudes = ("abc123", "0b6c6f3e-1d2a-4c55-9f0e-7a1b2c3d4e5f")
    project = tmp_path / "my project"  # a space: the value is the rest of its line
    project.mkdir()
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    with run_daemon(tmp_path, data_dir, runtime_dir), connected(data_dir, runtime_dir) as client:
        ids = {}
        for claude in claudes:
            current = _scope_file(data_dir, f"claude-{claude}")
            _fire("SessionStart", env, claude, project)
            wait_for(_names_a_session(current))
            ids[claude] = read_or_empty(current).strip()
            session = _session(client, ids[claude])
            assert session["scope"] == f"claude-{claude}"
            assert (session["tool"], session["external_id"]) == ("claude-code", claude)
            assert (session["cwd"], session["project"]) == (str(project), "my project")
        first, second = claudes
        sid = ids[first]
        for event in HEARTBEATS:
            before = _session(client, sid)["last_activity_at"]
            counts_from = datetime.fromisoformat(before) + timedelta(seconds=1.1)
            # A heartbeat counts once a second has passed since the last one.
            wait_for(lambda at=counts_from: datetime.now(at.tzinfo) > at)  # type: ignore[misc]
            _fire(event, env, first, project)
            wait_for(lambda was=before: _session(client, sid)["last_activity_at"] != was, timeout=5)  # type: ignore[misc]
        untouched = _session(client, ids[second])
        assert untouched["last_activity_at"] == untouched["started_at"]
        _fire("SessionEnd", env, first, project)
        wait_for(lambda: _session(client, sid)["status"] == "completed")
        assert _session(client, ids[second])["status"] == "active"
        _fire("SessionEnd", env, "", project)  # no session id: nothing happens
        assert _session(client, ids[second])["status"] == "active"


@pytest.mark.parametrize("id_in_env", [True, False], ids=["id-in-env", "id-in-json"])
def test_the_claude_code_hooks_take_the_events_own_session_id(
    tmp_path: Path, data_dir: Path, cli: Cli, id_in_env: bool
) -> None:
    """A tool's input or response holding a ``session_id`` key of its own
    (an MCP tool's arguments, say) must not send the event to another scope:
    the hooks take the id from the environment, or else the event's own
    field, which Claude Code writes first."""
    nested = {"session_id": "someone-else", "cwd": "/elsewhere"}
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    _fire("SessionStart", env, "mine", tmp_path, id_in_env=id_in_env, tool_input=nested, tool_response=nested)
    assert cli("current", "--scope", "claude-mine").returncode == 0  # applies the start
    assert sorted(p.name for p in (data_dir / "scopes").iterdir()) == ["claude-mine"]
    for event in (*HEARTBEATS, "SessionEnd"):
        _fire(event, env, "mine", tmp_path, id_in_env=id_in_env, tool_input=nested, tool_response=nested)
    assert sorted(p.name for p in (data_dir / "scopes").iterdir()) == ["claude-mine"]
    assert read_or_empty(_scope_file(data_dir, "claude-mine")) == "end\n"


def test_the_claude_code_hooks_refuse_an_id_that_is_no_scope_name(tmp_path: Path, data_dir: Path) -> None:
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    for bad in ("../../escape", "a b", "x" * 57, ""):
        _fire("SessionStart", env, bad, tmp_path)
    assert not (data_dir / "scopes").exists()


def test_the_claude_code_hooks_are_harmless_without_the_agent(tmp_path: Path) -> None:
    env = clean_env(tmp_path)  # no data dir at all
    for event in ("SessionStart", *HEARTBEATS, "SessionEnd"):
        _fire(event, env, "abc123", tmp_path)
    assert not (tmp_path / "home").exists() or not list((tmp_path / "home").rglob("current_session"))


def test_the_vscode_task_starts_a_session_on_folder_open(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    tasks = json.loads((INTEGRATIONS / "vscode" / "tasks.json").read_text())
    on_open = [t for t in tasks["tasks"] if t.get("runOptions", {}).get("runOn") == "folderOpen"]
    assert len(on_open) == 1
    task = on_open[0]
    assert "${" not in task["command"]  # VS Code would try to substitute it
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    end = next(t for t in tasks["tasks"] if t is not task)
    folders = [tmp_path / "My Project", tmp_path / "other" / "My Project"]  # one scope per folder
    with run_daemon(tmp_path, data_dir, runtime_dir):
        for folder in folders:
            folder.mkdir(parents=True)
            _run_task(task, folder, env)
        wait_for(lambda: len(list((data_dir / "scopes").glob("vscode-My_Project-*/current_session"))) == 2)
        scopes = sorted(p.parent.name for p in (data_dir / "scopes").glob("vscode-*/current_session"))
        shown = [json.loads(cli("current", "--scope", scope, "--json").stdout) for scope in scopes]
        assert sorted((s["tool"], s["cwd"], s["project"]) for s in shown) == sorted(
            ("vscode", str(folder), "My Project") for folder in folders
        )
        _run_task(end, folders[0], env)
        wait_for(lambda: sum(cli("current", "--scope", s).returncode == 0 for s in scopes) == 1)


def _run_task(task: dict[str, Any], folder: Path, env: dict[str, str]) -> None:
    """As VS Code runs a shell task: in the workspace folder."""
    assert "${" not in task["command"]  # VS Code would try to substitute it
    shell = task["options"]["shell"]
    done = subprocess.run(
        [shell["executable"], *shell["args"], task["command"]],
        env=env,
        cwd=folder,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0


def _run_claude(
    tmp_path: Path, project: Path, env: dict[str, str], api: FakeAnthropic, *args: str
) -> subprocess.Popen[str]:
    """The real Claude Code CLI, with our hooks put into the user's settings
    by ``session-agent integrate claude-code``, offline: a fake key, the API
    on loopback, nothing else fetched."""
    settings = Path(env["HOME"]) / ".claude" / "settings.json"
    if not settings.exists():
        subprocess.run(
            [str(SESSION_AGENT), "integrate", "claude-code"], env=env, check=True, capture_output=True
        )
    return subprocess.Popen(
        [npm_program("claude"), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=project,
        env={
            **env,
            "ANTHROPIC_API_KEY": "sk-ant-test-not-a-key",
            "ANTHROPIC_BASE_URL": api.url,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        },
    )


def test_the_real_claude_code_records_what_its_session_was(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    """Claude Code itself, one prompt: its hooks start a session in the
    scope of its session id with tool, cwd and external id; the tool call
    is a heartbeat; the conversation's end ends the session. (Claude Code
    escapes a tool's output inside the event's JSON, so a nested
    ``session_id`` key cannot be made through it: the payload test below
    covers that.)"""
    project = tmp_path / "webshop"
    project.mkdir()
    git_repository(project, branch="checkout-flow")
    tool_call = Reply(tool="Bash", tool_input={"command": "echo hello", "description": "Say hello"})
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    scopes = data_dir / "scopes"
    with (
        run_daemon(tmp_path, data_dir, runtime_dir),
        fake_anthropic(tool_call, Reply("All done.")) as api,
        connected(data_dir, runtime_dir) as client,
    ):
        claude = _run_claude(tmp_path, project, env, api, "-p", "Say hello", "--allowedTools", "Bash")
        try:
            wait_for(lambda: any(_names_a_session(p)() for p in scopes.glob("claude-*/current_session")), 30)
            [current] = scopes.glob("claude-*/current_session")
            claude_session = current.parent.name.removeprefix("claude-")
            sid = read_or_empty(current).strip()
            session = _session(client, sid)
            assert (session["tool"], session["external_id"]) == ("claude-code", claude_session)
            assert (session["cwd"], session["project"]) == (str(project), "webshop")
            assert session["git"]["branch"] == "checkout-flow"
            started = datetime.fromisoformat(session["started_at"])
            # The model "thinks" past the heartbeat's one-second limit, then calls the tool.
            wait_for(lambda: datetime.now(started.tzinfo) > started + timedelta(seconds=1.1), timeout=5)
            api.release()
            wait_for(lambda: _session(client, sid)["last_activity_at"] != session["started_at"], timeout=30)
            api.release()
            out, err = claude.communicate(timeout=EDITOR_TIMEOUT)
            assert claude.returncode == 0, (out, err)
            assert "All done." in out
            wait_for(lambda: _session(client, sid)["status"] == "completed", timeout=10)
            assert _session(client, sid)["active_seconds"] > 1
            assert api.requests == 2
        finally:
            if claude.poll() is None:
                claude.kill()
                claude.communicate()


def test_a_real_claude_code_killed_ends_its_session_and_its_neighbour_goes_on(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    """Two Claude Codes side by side, each bound to its own process by its
    SessionStart hook (``owner=$PPID``: the hook's parent is the claude
    process): ``kill -9`` of one -- no SessionEnd -- ends its session
    (``owner_exited``) at once; the other's stays active."""
    project = tmp_path / "webshop"
    project.mkdir()
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    scopes = data_dir / "scopes"
    with (
        run_daemon(tmp_path, data_dir, runtime_dir),
        fake_anthropic(Reply("one"), Reply("two")) as api,
        connected(data_dir, runtime_dir) as client,
    ):
        claudes = [_run_claude(tmp_path, project, env, api, "-p", "Say hello") for _ in range(2)]
        try:

            def sessions() -> dict[int, dict[str, Any]]:
                found = {}
                for current in scopes.glob("claude-*/current_session"):
                    sid = read_or_empty(current).strip()
                    if len(sid) == 36:
                        session = _session(client, sid)
                        found[session["owner_pid"]] = session
                return found

            wait_for(lambda: len(sessions()) == 2, 30)
            by_owner = sessions()
            assert set(by_owner) == {c.pid for c in claudes}  # each bound to its own claude
            killed, survivor = claudes
            killed.kill()
            killed.communicate()
            gone = by_owner[killed.pid]["id"]
            wait_for(lambda: _session(client, gone)["status"] == "abandoned", timeout=10)
            assert _session(client, gone)["end_reason"] == "owner_exited"
            assert _session(client, by_owner[survivor.pid]["id"])["status"] == "active"
            api.release(2)
            out, err = survivor.communicate(timeout=EDITOR_TIMEOUT)
            assert survivor.returncode == 0, (out, err)
            wait_for(lambda: _session(client, by_owner[survivor.pid]["id"])["status"] == "completed", 10)
        finally:
            for claude in claudes:
                if claude.poll() is None:
                    claude.kill()
                    claude.communicate()


def test_a_resumed_real_claude_code_conversation_continues_its_session(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    """``claude --resume ID`` fires SessionStart (``source: resume``) with the
    same session id (found with the real program): a new session in the
    same scope whose ``parent`` is the conversation's previous one."""
    project = tmp_path / "webshop"
    project.mkdir()
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    scopes = data_dir / "scopes"
    with (
        run_daemon(tmp_path, data_dir, runtime_dir),
        fake_anthropic(Reply("one"), Reply("two")) as api,
        connected(data_dir, runtime_dir) as client,
    ):

        def current() -> str:
            """The id the conversation's scope names (each model turn waits for
            it: a start and an end written at once net to nothing)."""
            return "".join(read_or_empty(p).strip() for p in scopes.glob("claude-*/current_session"))

        first = _run_claude(tmp_path, project, env, api, "-p", "Say hello", "--output-format", "json")
        wait_for(lambda: len(current()) == 36, 30)
        older_id = current()
        api.release()
        out, err = first.communicate(timeout=EDITOR_TIMEOUT)
        assert first.returncode == 0, err
        conversation = json.loads(out)["session_id"]
        scope = f"claude-{conversation}"
        again = _run_claude(
            tmp_path,
            project,
            env,
            api,
            "-p",
            "--resume",
            conversation,
            "Again",
            "--output-format",
            "json",
        )
        wait_for(lambda: len(current()) == 36 and current() != older_id, 30)
        api.release()
        _, err = again.communicate(timeout=EDITOR_TIMEOUT)
        assert again.returncode == 0, err

        ended = functools.partial(completed_in_scope, client, scope)

        wait_for(lambda: len(ended()) == 2, timeout=10)
        newer, older = ended()
        assert older["id"] == older_id
        assert newer["parent"] == older["id"]
        assert older["parent"] is None
        assert newer["external_id"] == older["external_id"] == conversation


def test_a_real_claude_code_clear_goes_on_in_the_same_session(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    """The real ``/clear``: a resumed conversation cleared (a new session id
    from there on) and ended stays one session in the conversation's scope.
    ``/clear`` asks nothing of the model, so the run starts and ends within
    milliseconds -- a start and an end written at once net to nothing (the
    file protocol) -- so a SessionStart hook of the test's own holds Claude
    Code until the daemon has applied the start, as a user's slower hooks
    or the model would."""
    project = tmp_path / "webshop"
    project.mkdir()
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    scopes = data_dir / "scopes"
    subprocess.run([str(SESSION_AGENT), "integrate", "claude-code"], env=env, check=True, capture_output=True)
    settings_file = Path(env["HOME"]) / ".claude" / "settings.json"
    settings = json.loads(settings_file.read_text())
    applied = (
        f'f="{scopes}/claude-$CLAUDE_CODE_SESSION_ID/current_session"; n=0; while [ $n -lt 2000 ]; do '
        'IFS= read -r l <"$f"; case $l in ????????-????-????-????-????????????) exit 0 ;; esac; '
        "sleep 0.01; n=$((n+1)); done"
    )
    barrier = {"matcher": "startup|resume", "hooks": [{"type": "command", "command": applied, "timeout": 30}]}
    settings["hooks"]["SessionStart"].append(barrier)
    settings_file.write_text(json.dumps(settings))
    with (
        run_daemon(tmp_path, data_dir, runtime_dir),
        fake_anthropic(Reply("one")) as api,
        connected(data_dir, runtime_dir) as client,
    ):
        api.release()
        first = _run_claude(tmp_path, project, env, api, "-p", "Say hello", "--output-format", "json")
        out, err = first.communicate(timeout=EDITOR_TIMEOUT)
        assert first.returncode == 0, err
        conversation = json.loads(out)["session_id"]
        cleared = _run_claude(
            tmp_path,
            project,
            env,
            api,
            "-p",
            "--resume",
            conversation,
            "/clear",
            "--output-format",
            "json",
        )
        out, err = cleared.communicate(timeout=EDITOR_TIMEOUT)
        assert cleared.returncode == 0, err
        assert json.loads(out)["session_id"] != conversation  # the clear's new id
        scope = f"claude-{conversation}"

        ended = functools.partial(completed_in_scope, client, scope)

        wait_for(lambda: len(ended()) == 2, timeout=10)  # the first run's, and the cleared one's
        assert [p.name for p in scopes.iterdir() if p.is_dir()] == [scope]
        assert (scopes / f".claude-{json.loads(out)['session_id']}").read_text() == f"{scope}\n"
        assert not list(scopes.glob(".claude-pid-*"))


# --- Gemini CLI ---------------------------------------------------------------------


def _run_gemini(
    project: Path, env: dict[str, str], api: FakeGemini, prompt: str, *more: str
) -> subprocess.Popen[str]:
    """The real Gemini CLI on settings ``integrate gemini-cli`` made (over the
    user's own, which choose the API key), offline against ``api``, in a
    process group of its own (it relaunches itself as a child process)."""
    settings = Path(env["HOME"]) / ".gemini" / "settings.json"
    if not settings.exists():
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}}}))
        subprocess.run(
            [str(SESSION_AGENT), "integrate", "gemini-cli"], env=env, check=True, capture_output=True
        )
    return subprocess.Popen(
        [npm_program("gemini"), "-p", prompt, *more],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=project,
        start_new_session=True,
        env={
            **env,
            "GEMINI_API_KEY": "not-a-key",
            "GOOGLE_GEMINI_BASE_URL": api.url,
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
        },
    )


def _gemini_sessions(client: DaemonClient, scopes: Path) -> dict[str, dict[str, Any]]:
    """The active sessions of the Gemini CLI scopes, by scope."""
    found = {}
    for current in scopes.glob("gemini-*/current_session"):
        sid = read_or_empty(current).strip()
        if len(sid) == 36:
            found[current.parent.name] = _session(client, sid)
    return found


def test_the_real_gemini_cli_records_its_session(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> None:
    """Gemini CLI itself, one prompt: SessionStart starts a session in the
    scope of its session id (tool, external id, cwd, bound to the process
    that runs its hooks), BeforeAgent/AfterAgent are heartbeats, SessionEnd
    ends it."""
    project = tmp_path / "webshop"
    project.mkdir()
    git_repository(project, branch="main")
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    with (
        run_daemon(tmp_path, data_dir, runtime_dir),
        fake_gemini("Hello there.") as api,
        connected(data_dir, runtime_dir) as client,
    ):
        gemini = _run_gemini(project, env, api, "Say hello")
        try:
            wait_for(lambda: len(_gemini_sessions(client, data_dir / "scopes")) == 1, 60)
            [(scope, session)] = _gemini_sessions(client, data_dir / "scopes").items()
            assert scope == f"gemini-{session['external_id']}"
            assert (session["tool"], session["cwd"], session["project"]) == (
                "gemini-cli",
                str(project),
                "webshop",
            )
            assert session["owner_pid"] is not None
            api.release()
            out, err = gemini.communicate(timeout=EDITOR_TIMEOUT)
            assert gemini.returncode == 0, err
            assert "Hello there." in out
            wait_for(lambda: _session(client, session["id"])["status"] == "completed", timeout=10)
            assert _session(client, session["id"])["end_reason"] == "file"
        finally:
            if gemini.poll() is None:
                os.killpg(gemini.pid, signal.SIGKILL)
                gemini.communicate()


def test_a_real_gemini_cli_killed_ends_its_session_and_its_neighbour_goes_on(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    """Two Gemini CLIs side by side, the model "thinking": ``kill -9`` of one
    (its process group, as a closed terminal takes it) ends its session
    (``owner_exited``) at once -- no SessionEnd ran; the other goes on and
    ends by its SessionEnd."""
    project = tmp_path / "webshop"
    project.mkdir()
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    with (
        run_daemon(tmp_path, data_dir, runtime_dir),
        fake_gemini() as api,
        connected(data_dir, runtime_dir) as client,
    ):
        geminis = [_run_gemini(project, env, api, "Say hello") for _ in range(2)]
        try:
            wait_for(lambda: len(_gemini_sessions(client, data_dir / "scopes")) == 2, 60)
            sessions = list(_gemini_sessions(client, data_dir / "scopes").values())
            killed, survivor = geminis
            os.killpg(killed.pid, signal.SIGKILL)
            killed.communicate()
            # The group's SIGKILL takes a moment to end a process that is not our child.
            wait_for(lambda: len([s for s in sessions if not alive(s["owner_pid"])]) == 1, timeout=10)
            owners_gone = [s for s in sessions if not alive(s["owner_pid"])]
            gone, left = owners_gone[0], next(s for s in sessions if s is not owners_gone[0])
            wait_for(lambda: _session(client, gone["id"])["status"] == "abandoned", timeout=10)
            assert _session(client, gone["id"])["end_reason"] == "owner_exited"
            assert _session(client, left["id"])["status"] == "active"
            api.release(2)  # the killed one's request may still hold its place in the queue
            _, err = survivor.communicate(timeout=EDITOR_TIMEOUT)
            assert survivor.returncode == 0, err
            wait_for(lambda: _session(client, left["id"])["status"] == "completed", timeout=10)
        finally:
            for gemini in geminis:
                if gemini.poll() is None:
                    os.killpg(gemini.pid, signal.SIGKILL)
                    gemini.communicate()


def test_a_resumed_real_gemini_cli_conversation_continues_its_session(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    """``gemini --resume latest`` fires SessionStart (``source: resume``) with
    the conversation's session id: a new session in the same scope whose
    ``parent`` is the conversation's previous one."""
    project = tmp_path / "webshop"
    project.mkdir()
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    scopes = data_dir / "scopes"
    with (
        run_daemon(tmp_path, data_dir, runtime_dir),
        fake_gemini() as api,
        connected(data_dir, runtime_dir) as client,
    ):
        seen: list[str] = []

        def active() -> list[str]:
            return [s["id"] for s in _gemini_sessions(client, scopes).values()]

        for more in ((), ("--resume", "latest")):
            gemini = _run_gemini(project, env, api, "Say hello", *more)
            # The model's turn waits until the daemon applied the start (a start
            # and an end written at once net to nothing).
            wait_for(lambda last=seen[-1:]: active() not in ([], last), 60)  # type: ignore[misc]
            seen += active()
            api.release()
            _, err = gemini.communicate(timeout=EDITOR_TIMEOUT)
            assert gemini.returncode == 0, err
        [scope] = [p.name for p in scopes.iterdir()]

        ended = functools.partial(completed_in_scope, client, scope)

        wait_for(lambda: len(ended()) == 2, timeout=10)
        newer, older = ended()
        assert [older["id"], newer["id"]] == seen
        assert newer["parent"] == older["id"]
        assert older["parent"] is None
        assert newer["external_id"] == older["external_id"] == scope.removeprefix("gemini-")


def _fire_gemini(event: str, env: dict[str, str], session_id: str, cwd: Path, **more: object) -> None:
    """Run ``event``'s Gemini CLI hooks as it does (``sh -c``, the id in
    ``GEMINI_SESSION_ID``, the event's JSON on stdin; a SessionStart group's
    matcher chooses by ``source``)."""
    settings = json.loads((INTEGRATIONS / "gemini-cli" / "settings.json").read_text())
    source = str(more.get("source", "startup"))
    payload = json.dumps({"session_id": session_id, "hook_event_name": event, "cwd": str(cwd), **more})
    for group in settings["hooks"][event]:
        if event == "SessionStart" and not re.fullmatch(group["matcher"], source):
            continue
        for hook in group["hooks"]:
            done = subprocess.run(
                [program("sh"), "-c", hook["command"]],
                input=payload,
                capture_output=True,
                text=True,
                env={**env, "GEMINI_SESSION_ID": session_id},
                cwd=cwd,
                timeout=CLI_TIMEOUT,
                check=False,
            )
            assert done.returncode == 0, done.stderr


# The hosts whose /clear ends a conversation and starts one with a new id in
# the same process: (scope prefix, how their hooks run, a heartbeat event, an
# end's reason at exit).
CLEARING_HOSTS: dict[str, tuple[str, Callable[..., None], str, str]] = {
    "claude-code": ("claude", _fire, "UserPromptSubmit", "prompt_input_exit"),
    "gemini-cli": ("gemini", _fire_gemini, "BeforeAgent", "exit"),
}


@pytest.mark.parametrize("host", sorted(CLEARING_HOSTS))
def test_a_clear_continues_the_session_and_a_compaction_does_not_split_it(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, host: str
) -> None:
    """``/clear`` in Claude Code and Gemini CLI (found with the real programs;
    Claude Code's also run for real above): SessionEnd with ``reason: clear``,
    then SessionStart with ``source: clear`` and a new session id, from the
    same process. The session goes on: the new id becomes an alias of the old
    scope, so its heartbeats and its end land there; no scope is made for it.
    A compaction (SessionStart ``source: compact``, the same id) runs none of
    our hooks. A ``clear`` start with no cleared session before it starts one
    of its own."""
    prefix, fire, heartbeat, reason = CLEARING_HOSTS[host]
    settings = json.loads((INTEGRATIONS / host / "settings.json").read_text())
    assert not [g for g in settings["hooks"]["SessionStart"] if re.fullmatch(g["matcher"], "compact")]
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    old, new = "0b6c6f3e-1d2a-4c55-9f0e-7a1b2c3d4e5f", "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
    scopes = data_dir / "scopes"
    with run_daemon(tmp_path, data_dir, runtime_dir), connected(data_dir, runtime_dir) as client:
        fire("SessionStart", env, old, tmp_path)
        wait_for(_names_a_session(_scope_file(data_dir, f"{prefix}-{old}")))
        sid = read_or_empty(_scope_file(data_dir, f"{prefix}-{old}")).strip()
        fire("SessionEnd", env, old, tmp_path, reason="clear")
        fire("SessionStart", env, new, tmp_path, source="clear")
        assert sorted(p.name for p in scopes.iterdir() if p.is_dir()) == [f"{prefix}-{old}"]
        counts_from = datetime.fromisoformat(_session(client, sid)["last_activity_at"]) + timedelta(
            seconds=1.1
        )
        wait_for(lambda: datetime.now(counts_from.tzinfo) > counts_from)
        before = _session(client, sid)["last_activity_at"]
        fire(heartbeat, env, new, tmp_path)
        wait_for(lambda: _session(client, sid)["last_activity_at"] != before, timeout=5)
        fire("SessionEnd", env, new, tmp_path, reason=reason)
        wait_for(lambda: _session(client, sid)["status"] == "completed")
        assert _session(client, sid)["external_id"] == old
        fresh = "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c"  # no cleared session before it
        fire("SessionStart", env, fresh, tmp_path, source="clear")
        wait_for(_names_a_session(_scope_file(data_dir, f"{prefix}-{fresh}")))

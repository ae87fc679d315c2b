"""The real Codex CLI (``@openai/codex``) and GitHub Copilot CLI
(``@github/copilot``) with the hooks ``session-agent integrate`` puts in
place, offline against a stand-in Responses API on loopback
(``tests/support/fake_openai.py``).

Found with the real programs (and what the hooks rely on): both give the
hook's shell the host's own native process as its parent (``owner=$PPID``),
and put the session id first in the event's JSON on stdin (Codex:
``session_id``, Copilot: ``sessionId``); neither puts it in the hook's
environment. Offline, ``codex exec`` fires SessionStart, UserPromptSubmit,
Stop and SessionEnd; ``copilot -p`` fires sessionStart,
userPromptSubmitted, agentStop and sessionEnd. Codex runs only hooks the
user has trusted (its ``/hooks``); the tests pass
``--dangerously-bypass-hook-trust`` in place of that review.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.control.client import DaemonClient

from ..support.commands import SESSION_AGENT, clean_env
from ..support.daemon_process import connected, run_daemon, wait_for
from ..support.fake_openai import FakeOpenAI, fake_openai
from ..support.hosts import (
    NPM_TOOLS,
    alive,
    completed_in_scope,
    git_repository,
    npm_program,
    program,
    read_or_empty,
)

HOST_TIMEOUT = 60
INTEGRATIONS = Path(__file__).resolve().parents[2] / "agent" / "integrations"


@dataclass(frozen=True)
class AiHost:
    name: str  # as `integrate` knows it
    tool: str  # what its sessions record
    prefix: str  # its scopes: <prefix>-<its session id>
    prepare: Callable[[dict[str, str], FakeOpenAI], dict[str, str]]  # its settings; its environment
    command: Callable[[str, str | None], list[str]]  # prompt, the session to resume


def _codex_env(env: dict[str, str], api: FakeOpenAI) -> dict[str, str]:
    home = Path(env["HOME"]) / ".codex"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        'model = "gpt-5"\nmodel_provider = "fake"\n[model_providers.fake]\nname = "fake"\n'
        f'base_url = "{api.url}"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
    )
    return {**env, "OPENAI_API_KEY": "sk-test-not-a-key"}


def _codex(prompt: str, resume: str | None) -> list[str]:
    again = ["resume", resume] if resume else []
    return [
        npm_program("codex"),
        "exec",
        *again,
        "--skip-git-repo-check",
        "--dangerously-bypass-hook-trust",
        prompt,
    ]


def _copilot_env(env: dict[str, str], api: FakeOpenAI) -> dict[str, str]:
    return {
        **env,
        "COPILOT_OFFLINE": "true",
        "COPILOT_PROVIDER_BASE_URL": api.url,
        "COPILOT_PROVIDER_WIRE_API": "responses",
        "COPILOT_PROVIDER_API_KEY": "sk-test-not-a-key",
        "COPILOT_MODEL": "gpt-5",
        "COPILOT_ALLOW_ALL": "true",
        "COPILOT_AUTO_UPDATE": "false",
        # Its native program, unpacked once by scripts/test (235 MB a home otherwise).
        "XDG_CACHE_HOME": str(NPM_TOOLS / "cache"),
    }


def _copilot(prompt: str, resume: str | None) -> list[str]:
    again = [f"--resume={resume}"] if resume else []
    return [npm_program("copilot"), *again, "-p", prompt]


HOSTS = {
    "codex": AiHost("codex", "codex", "codex", _codex_env, _codex),
    "copilot-cli": AiHost("copilot-cli", "copilot-cli", "copilot", _copilot_env, _copilot),
}


def _run(
    host: AiHost, project: Path, env: dict[str, str], api: FakeOpenAI, prompt: str, resume: str | None = None
) -> subprocess.Popen[str]:
    """The host, on the settings ``integrate`` made, in a process group of its
    own (an npm launcher and the native program under it)."""
    subprocess.run([str(SESSION_AGENT), "integrate", host.name], env=env, check=True, capture_output=True)
    return subprocess.Popen(
        host.command(prompt, resume),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=project,
        start_new_session=True,
        env=host.prepare(env, api),
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def _sessions(client: DaemonClient, scopes: Path, host: AiHost) -> dict[str, dict[str, Any]]:
    """The active sessions of the host's scopes, by scope."""
    found = {}
    for current in scopes.glob(f"{host.prefix}-*/current_session"):
        sid = read_or_empty(current).strip()
        if len(sid) == 36:
            found[current.parent.name] = client.request("get", id=sid)
    return found


def _get(client: DaemonClient, sid: str) -> dict[str, Any]:
    found: dict[str, Any] = client.request("get", id=sid)
    return found


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_the_real_host_records_its_session(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, name: str
) -> None:
    """One prompt: the start hook starts a session in the scope of the
    host's session id (tool, external id, cwd, bound to the host's process);
    the end of the model's turn is a heartbeat (the time spent waiting on the
    model counts as active); the session end hook ends it."""
    host = HOSTS[name]
    project = tmp_path / "webshop"
    project.mkdir()
    git_repository(project, branch="checkout-flow")
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    scopes = data_dir / "scopes"
    with (
        run_daemon(tmp_path, data_dir, runtime_dir),
        fake_openai("Hello there.") as api,
        connected(data_dir, runtime_dir) as client,
    ):
        proc = _run(host, project, env, api, "Say hello")
        try:
            wait_for(lambda: len(_sessions(client, scopes, host)) == 1, HOST_TIMEOUT)
            [(scope, session)] = _sessions(client, scopes, host).items()
            assert scope == f"{host.prefix}-{session['external_id']}"
            assert (session["tool"], session["cwd"], session["project"]) == (
                host.tool,
                str(project),
                "webshop",
            )
            assert session["git"]["branch"] == "checkout-flow"
            assert session["owner_pid"] is not None
            assert session["owner_pid"] != proc.pid
            started = datetime.fromisoformat(session["started_at"])
            # The model "thinks" past the heartbeat's one-second limit.
            wait_for(lambda: datetime.now(started.tzinfo) > started + timedelta(seconds=1.1), timeout=5)
            api.release()
            out, err = proc.communicate(timeout=HOST_TIMEOUT)
            assert proc.returncode == 0, err
            assert "Hello there." in out
            wait_for(lambda: _get(client, session["id"])["status"] == "completed", timeout=10)
            ended = _get(client, session["id"])
            assert ended["end_reason"] == "file"
            assert ended["active_seconds"] > 1
        finally:
            _stop(proc)


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_a_real_host_killed_ends_its_session_and_its_neighbour_goes_on(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, name: str
) -> None:
    """Two side by side, the model "thinking": ``kill -9`` of one (its process
    group, as a closed terminal takes it) ends its session (``owner_exited``)
    at once -- no end hook ran; the other goes on and ends by its own."""
    host = HOSTS[name]
    project = tmp_path / "webshop"
    project.mkdir()
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    scopes = data_dir / "scopes"
    with (
        run_daemon(tmp_path, data_dir, runtime_dir),
        fake_openai() as api,
        connected(data_dir, runtime_dir) as client,
    ):
        procs = [_run(host, project, env, api, "Say hello") for _ in range(2)]
        try:
            wait_for(lambda: len(_sessions(client, scopes, host)) == 2, HOST_TIMEOUT)
            sessions = list(_sessions(client, scopes, host).values())
            killed, survivor = procs
            os.killpg(killed.pid, signal.SIGKILL)
            killed.communicate()
            # The group's SIGKILL takes a moment to end a process that is not our child.
            wait_for(lambda: len([s for s in sessions if not alive(s["owner_pid"])]) == 1, timeout=10)
            gone = [s for s in sessions if not alive(s["owner_pid"])]
            left = next(s for s in sessions if s is not gone[0])
            wait_for(lambda: _get(client, gone[0]["id"])["status"] == "abandoned", timeout=10)
            assert _get(client, gone[0]["id"])["end_reason"] == "owner_exited"
            assert _get(client, left["id"])["status"] == "active"
            api.release(2)  # the killed one's request may still hold its place
            _, err = survivor.communicate(timeout=HOST_TIMEOUT)
            assert survivor.returncode == 0, err
            wait_for(lambda: _get(client, left["id"])["status"] == "completed", timeout=10)
        finally:
            for proc in procs:
                _stop(proc)


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_a_resumed_real_conversation_continues_its_session(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, name: str
) -> None:
    """Resuming a conversation (``codex exec resume ID``, ``copilot
    --resume=ID``) starts again with the same session id: a new session in
    the same scope whose ``parent`` is the conversation's previous one."""
    host = HOSTS[name]
    project = tmp_path / "webshop"
    project.mkdir()
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    scopes = data_dir / "scopes"
    with (
        run_daemon(tmp_path, data_dir, runtime_dir),
        fake_openai() as api,
        connected(data_dir, runtime_dir) as client,
    ):
        # Each run's model turn waits until the daemon has applied its start: a
        # start and an end written at once net to nothing (the file protocol).
        first = _run(host, project, env, api, "Say hello")
        wait_for(lambda: len(_sessions(client, scopes, host)) == 1, HOST_TIMEOUT)
        [(scope, older)] = _sessions(client, scopes, host).items()
        api.release()
        _, err = first.communicate(timeout=HOST_TIMEOUT)
        assert first.returncode == 0, err
        conversation = scope.removeprefix(f"{host.prefix}-")
        again = _run(host, project, env, api, "Again", resume=conversation)
        wait_for(lambda: _sessions(client, scopes, host).get(scope, older)["id"] != older["id"], HOST_TIMEOUT)
        api.release()
        _, err = again.communicate(timeout=HOST_TIMEOUT)
        assert again.returncode == 0, err

        ended = functools.partial(completed_in_scope, client, scope)

        wait_for(lambda: len(ended()) == 2, timeout=10)
        newer, first_session = ended()
        assert first_session["id"] == older["id"]
        assert newer["parent"] == older["id"]
        assert older["parent"] is None
        assert newer["external_id"] == older["external_id"] == conversation
        assert [p.name for p in scopes.iterdir()] == [scope]


# The shipped hook files, read as the hosts read them: (file, the id's field,
# start, heartbeats, end).
SHIPPED = {
    "codex": (
        "codex/hooks.json",
        "session_id",
        "SessionStart",
        ("UserPromptSubmit", "PostToolUse", "Stop"),
        "SessionEnd",
    ),
    "copilot-cli": (
        "copilot-cli/session-agent.json",
        "sessionId",
        "sessionStart",
        ("userPromptSubmitted", "postToolUse", "agentStop"),
        "sessionEnd",
    ),
}


def _fire(name: str, event: str, env: dict[str, str], body: str, source: str = "startup") -> None:
    """Run ``event``'s hooks as the host does: a matcher group of a session
    start chooses by the event's ``source`` (Codex's); Copilot has none."""
    shipped, *_ = SHIPPED[name]
    hooks = json.loads((INTEGRATIONS / shipped).read_text())["hooks"][event]
    for entry in hooks:
        if "matcher" in entry and "Start" in event and not re.fullmatch(entry["matcher"], source):
            continue
        for hook in entry.get("hooks", [entry]):
            done = subprocess.run(
                [program("dash", "sh"), "-c", hook.get("command") or hook["bash"]],
                input=body,
                capture_output=True,
                text=True,
                env=env,
                timeout=10,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout == "", done.stdout


@pytest.mark.parametrize("name", sorted(SHIPPED))
@pytest.mark.parametrize("compact", [True, False], ids=["compact", "spaced"])
def test_the_hooks_take_the_events_own_id_however_the_json_is_written(
    tmp_path: Path, data_dir: Path, name: str, compact: bool
) -> None:
    """The hosts write compact JSON with their id first (the start and end
    hooks read that with the shell alone); JSON written otherwise, or an id
    field nested in a tool's input, still finds the event's own."""
    _, field, start, heartbeats, end = SHIPPED[name]
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    separators = (",", ":") if compact else (", ", ": ")
    for event in (start, *heartbeats, end):
        body = {field: "mine", "cwd": str(tmp_path), "tool_input": {field: "someone-else"}}
        _fire(name, event, env, json.dumps(body, separators=separators) + "\n")
        current = data_dir / "scopes" / f"{HOSTS[name].prefix}-mine" / "current_session"
        assert read_or_empty(current).startswith("start\n" if event != end else "end\n")
    assert [p.name for p in (data_dir / "scopes").iterdir()] == [f"{HOSTS[name].prefix}-mine"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_hooks_refuse_bad_ids_and_are_harmless_without_the_agent(
    tmp_path: Path, data_dir: Path, name: str
) -> None:
    _, field, start, heartbeats, end = SHIPPED[name]
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    for bad in ("../../escape", "a b", "x" * 57, ""):
        _fire(name, start, env, json.dumps({field: bad}, separators=(",", ":")))
    assert not (data_dir / "scopes").exists()
    bare = clean_env(tmp_path)  # no data dir at all
    for event in (start, *heartbeats, end):
        _fire(name, event, bare, json.dumps({field: "abc"}))
    assert not list(tmp_path.rglob("current_session"))


def test_a_codex_clear_continues_the_session(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> None:
    """Codex's ``/clear`` (found with the real program, its terminal UI):
    SessionStart with ``source: clear`` and a new id, from the same process,
    and no SessionEnd -- at exit both ids end. The start noted the process's
    scope; the clear's new id becomes an alias of it: one session throughout."""
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    old, new = "01a22c6f-970d-7cb0-8a1a-13e4d340159f", "01a22c6f-c422-7101-b201-b7323762b43a"

    def fire(event: str, conversation: str, **more: str) -> None:
        body = json.dumps({"session_id": conversation, "cwd": str(tmp_path), **more}, separators=(",", ":"))
        _fire("codex", event, env, body + "\n", source=more.get("source", "startup"))

    current = data_dir / "scopes" / f"codex-{old}" / "current_session"
    with run_daemon(tmp_path, data_dir, runtime_dir), connected(data_dir, runtime_dir) as client:
        fire("SessionStart", old, source="startup")
        wait_for(lambda: len(read_or_empty(current)) == 37)
        sid = read_or_empty(current).strip()
        fire("SessionStart", new, source="clear")
        assert sorted(p.name for p in (data_dir / "scopes").iterdir() if p.is_dir()) == [f"codex-{old}"]
        counts_from = datetime.fromisoformat(_get(client, sid)["last_activity_at"]) + timedelta(seconds=1.1)
        wait_for(lambda: datetime.now(counts_from.tzinfo) > counts_from)
        before = _get(client, sid)["last_activity_at"]
        fire("UserPromptSubmit", new)
        wait_for(lambda: _get(client, sid)["last_activity_at"] != before, timeout=5)
        fire("SessionEnd", new, reason="other")
        fire("SessionEnd", old, reason="other")
        wait_for(lambda: _get(client, sid)["status"] == "completed")
        assert [s["id"] for s in client.request("list", limit=10, scope=f"codex-{old}")["sessions"]] == [sid]
        assert not list((data_dir / "scopes").glob(".codex-pid-*"))

"""The Cursor hooks (``agent/integrations/cursor/hooks.json``) driven with the
payloads Cursor's hooks documentation gives: Cursor is a desktop program
that cannot be installed here, so its hooks are run as it runs them -- each
a shell command, the event's JSON on stdin -- with those payloads, through
``sh`` (dash, the strictest of the shells it may use).

Every event carries ``conversation_id`` (the conversation's stable id: the
scope is ``cursor-<it>``), ``generation_id``, ``model``,
``hook_event_name``, ``cursor_version``, ``workspace_roots`` (the first is
the session's ``cwd``) and ``user_email``. The hooks name no owner: which
process runs them is not known without the program, so a Cursor session
ends by ``sessionEnd`` or the idle timeout.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.control.client import DaemonClient

from ..support.commands import SESSION_AGENT, Cli, clean_env
from ..support.daemon_process import connected, run_daemon, wait_for
from ..support.hosts import program, read_or_empty

HOOKS = Path(__file__).resolve().parents[2] / "agent" / "integrations" / "cursor" / "hooks.json"
HEARTBEATS = ("afterFileEdit", "afterShellExecution", "afterAgentResponse", "stop")
CONVERSATION = "668320d2-2fd8-4888-b33c-2a466fec86e7"


def _payload(event: str, conversation: str, root: str, **more: object) -> dict[str, Any]:
    """An event as Cursor documents it: the common fields, then the event's."""
    return {
        "conversation_id": conversation,
        "generation_id": "490b90b7-a2ce-4c2c-bb76-cb77b125df2f",
        "model": "claude-sonnet-4",
        "hook_event_name": event,
        "cursor_version": "2.1.0",
        "workspace_roots": [root],
        "user_email": "dev@example.com",
        **more,
    }


EVENT_FIELDS: dict[str, dict[str, object]] = {
    "sessionStart": {"session_id": CONVERSATION, "is_background_agent": False, "composer_mode": "agent"},
    "beforeSubmitPrompt": {"prompt": "Fix the checkout", "attachments": []},
    "afterFileEdit": {"file_path": "/w/app.py", "edits": [{"old_string": "a", "new_string": "b"}]},
    "afterShellExecution": {"command": "pytest", "output": "ok", "duration": 1234},
    "afterAgentResponse": {"text": "Done."},
    "stop": {"status": "completed", "loop_count": 0},
    "sessionEnd": {"session_id": CONVERSATION, "reason": "completed", "duration_ms": 45000},
}


def _fire(event: str, env: dict[str, str], conversation: str, root: str, payload: str | None = None) -> None:
    """Run ``event``'s hooks as Cursor does: a shell command, the JSON on stdin
    (run elsewhere than the workspace: the cwd comes from the payload)."""
    body = payload or json.dumps(_payload(event, conversation, root, **EVENT_FIELDS[event]))
    for hook in json.loads(HOOKS.read_text())["hooks"][event]:
        done = subprocess.run(
            [program("dash", "sh"), "-c", hook["command"]],
            input=body,
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            timeout=10,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "", done.stdout  # output is read as the hook's answer


def _current(data_dir: Path, conversation: str) -> Path:
    return data_dir / "scopes" / f"cursor-{conversation}" / "current_session"


def _get(client: DaemonClient, sid: str) -> dict[str, Any]:
    found: dict[str, Any] = client.request("get", id=sid)
    return found


def _named(path: Path) -> str:
    """The session id the daemon wrote into ``path``, once it has."""
    wait_for(lambda: len(read_or_empty(path)) == 37)
    return read_or_empty(path).strip()


def test_cursor_conversations_start_heartbeat_and_end_their_sessions(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    """Two conversations at once, each in its scope with tool, external id
    and the workspace as cwd; every heartbeat event counts, a prompt while
    the session runs is one too; ``sessionEnd`` ends only its own."""
    assert set(json.loads(HOOKS.read_text())["hooks"]) == set(EVENT_FIELDS)
    workspace = tmp_path / "my shop"  # a space: the value is the rest of its line
    workspace.mkdir()
    other = "0f1e2d3c-4b5a-6978-8776-655443322110"
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    with run_daemon(tmp_path, data_dir, runtime_dir), connected(data_dir, runtime_dir) as client:
        ids = {}
        for conversation in (CONVERSATION, other):
            _fire("sessionStart", env, conversation, str(workspace))
            ids[conversation] = _named(_current(data_dir, conversation))
            session = _get(client, ids[conversation])
            assert (session["scope"], session["tool"], session["external_id"]) == (
                f"cursor-{conversation}",
                "cursor",
                conversation,
            )
            assert (session["cwd"], session["project"], session["owner_pid"]) == (
                str(workspace),
                "my shop",
                None,
            )
        sid = ids[CONVERSATION]
        for event in ("beforeSubmitPrompt", *HEARTBEATS):
            before = _get(client, sid)["last_activity_at"]
            counts_from = datetime.fromisoformat(before) + timedelta(seconds=1.1)
            # A heartbeat counts once a second has passed since the last one.
            wait_for(lambda at=counts_from: datetime.now(at.tzinfo) > at)  # type: ignore[misc]
            _fire(event, env, CONVERSATION, str(workspace))
            wait_for(lambda was=before: _get(client, sid)["last_activity_at"] != was, timeout=5)  # type: ignore[misc]
            assert read_or_empty(_current(data_dir, CONVERSATION)).strip() == sid  # the same session
        untouched = _get(client, ids[other])
        assert untouched["last_activity_at"] == untouched["started_at"]
        _fire("sessionEnd", env, CONVERSATION, str(workspace))
        wait_for(lambda: _get(client, sid)["status"] == "completed")
        assert _get(client, ids[other])["status"] == "active"


def test_a_prompt_starts_the_session_where_no_session_start_came(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    """Cursor versions without ``sessionStart`` (and a conversation taken up
    again after its session ended): the prompt starts the session; one taken
    up again continues its conversation (``parent``)."""
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    with run_daemon(tmp_path, data_dir, runtime_dir), connected(data_dir, runtime_dir) as client:
        _fire("beforeSubmitPrompt", env, CONVERSATION, str(tmp_path))
        first = _named(_current(data_dir, CONVERSATION))
        assert (_get(client, first)["tool"], _get(client, first)["cwd"]) == ("cursor", str(tmp_path))
        _fire("sessionEnd", env, CONVERSATION, str(tmp_path))
        wait_for(lambda: _get(client, first)["status"] == "completed")
        _fire("beforeSubmitPrompt", env, CONVERSATION, str(tmp_path))
        wait_for(lambda: read_or_empty(_current(data_dir, CONVERSATION)).strip() not in ("", first))
        second = _named(_current(data_dir, CONVERSATION))
        assert _get(client, second)["parent"] == first


def test_the_cursor_hooks_take_the_events_own_conversation(tmp_path: Path, data_dir: Path, cli: Cli) -> None:
    """A ``conversation_id`` inside a tool's input (a JSON string, as Cursor
    passes it) or inside a nested object must not send the event elsewhere;
    a workspace path a line cannot hold is left out, not the session."""
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    nested = json.dumps({"conversation_id": "someone-else"})
    for event in ("sessionStart", *HEARTBEATS, "sessionEnd"):
        body = {
            "tool_input": nested,  # first: escaped inside a string
            **_payload(event, "mine", '/odd"place', **EVENT_FIELDS[event]),
            "extra": {"conversation_id": "someone-else"},
        }
        _fire(event, env, "mine", "", payload=json.dumps(body))
        if event == "sessionStart":
            assert "cwd=" not in read_or_empty(_current(data_dir, "mine"))
            assert cli("current", "--scope", "cursor-mine").returncode == 0  # applies the start
    assert sorted(p.name for p in (data_dir / "scopes").iterdir()) == ["cursor-mine"]
    assert read_or_empty(_current(data_dir, "mine")) == "end\n"


def test_the_cursor_hooks_refuse_bad_ids_and_are_harmless_without_the_agent(
    tmp_path: Path, data_dir: Path
) -> None:
    env = clean_env(tmp_path, SESSION_AGENT_DATA_DIR=str(data_dir))
    for bad in ("../../escape", "a b", "x" * 57, ""):
        _fire("sessionStart", env, bad, str(tmp_path))
        _fire("beforeSubmitPrompt", env, bad, str(tmp_path))
    assert not (data_dir / "scopes").exists()
    bare = clean_env(tmp_path)  # no data dir at all
    for event in EVENT_FIELDS:
        _fire(event, bare, CONVERSATION, str(tmp_path))
    assert not list(tmp_path.rglob("current_session"))


def test_integrate_cursor_keeps_the_users_hooks(tmp_path: Path) -> None:
    """Cursor's entries are plain commands in one list per event: ours go
    after the user's and come out again, the file as it was."""
    env = clean_env(tmp_path)
    hooks = Path(env["HOME"]) / ".cursor" / "hooks.json"
    hooks.parent.mkdir(parents=True)
    mine = json.dumps({"version": 1, "hooks": {"stop": [{"command": "./audit.sh"}]}}, indent=2) + "\n"
    hooks.write_text(mine)
    run = [str(SESSION_AGENT), "integrate", "cursor"]
    subprocess.run(run, env=env, check=True, capture_output=True)
    settings = json.loads(hooks.read_text())
    assert settings["hooks"]["stop"][0] == {"command": "./audit.sh"}
    assert set(settings["hooks"]) == set(EVENT_FIELDS)
    subprocess.run([*run, "--remove"], env=env, check=True, capture_output=True)
    assert hooks.read_text() == mine
    hooks.unlink()
    subprocess.run(run, env=env, check=True, capture_output=True)
    assert list(json.loads(hooks.read_text())) == ["version", "hooks"]  # a new file: Cursor's form
    subprocess.run([*run, "--remove"], env=env, check=True, capture_output=True)
    assert not hooks.exists()

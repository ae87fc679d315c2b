"""``integrate``: our hooks into a host's own settings and out again, the
user's settings untouched (byte for byte where the format allows); with
the real Claude Code, its settings made by ``integrate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.commands import Cli

USER_SETTINGS: dict[str, Any] = {
    "model": "opus",
    "permissions": {"allow": ["Bash(git status)"]},
    "hooks": {
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send 'Claude is done'"}]}],
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit-log"}]}],
    },
}


def _home(tmp_path: Path) -> Path:
    return tmp_path / "home"  # clean_env's HOME


def _ok(cli: Cli, *args: str) -> str:
    done = cli(*args, data=None)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.session-agent-*.bak"))


# The hosts whose settings are JSON with a ``hooks`` object: where the user's
# are, settings of a user's in the host's own form, and the events ours use.
JSON_HOSTS: dict[str, tuple[str, dict[str, Any], set[str]]] = {
    "claude-code": (
        ".claude/settings.json",
        USER_SETTINGS,
        {"SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "SessionEnd"},
    ),
    "gemini-cli": (
        ".gemini/settings.json",
        {"security": {"auth": {"selectedType": "gemini-api-key"}}, "hooks": USER_SETTINGS["hooks"]},
        {"SessionStart", "BeforeAgent", "AfterTool", "AfterAgent", "SessionEnd"},
    ),
    "codex": (
        ".codex/hooks.json",
        {"hooks": USER_SETTINGS["hooks"]},
        {"SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "SessionEnd"},
    ),
    "cursor": (
        ".cursor/hooks.json",
        {
            "version": 1,
            "hooks": {"stop": [{"command": "./audit.sh"}], "beforeShellExecution": [{"command": "x"}]},
        },
        {
            "sessionStart",
            "beforeSubmitPrompt",
            "afterFileEdit",
            "afterShellExecution",
            "afterAgentResponse",
            "stop",
        },
    ),
}


@pytest.mark.parametrize("host", sorted(JSON_HOSTS))
def test_json_hooks_round_trip_keeps_the_users_settings_byte_for_byte(
    tmp_path: Path, cli: Cli, host: str
) -> None:
    where, users, events = JSON_HOSTS[host]
    settings = _home(tmp_path) / where
    settings.parent.mkdir(parents=True)
    original = json.dumps(users, indent=2) + "\n"
    settings.write_text(original)
    _ok(cli, "integrate", host)
    merged = json.loads(settings.read_text())
    for key, value in users.items():
        if key != "hooks":
            assert merged[key] == value
    for event, entries in users["hooks"].items():
        assert merged["hooks"][event][: len(entries)] == entries  # the user's first, ours after
    assert set(merged["hooks"]) >= events
    shared = events & set(users["hooks"])  # where the user's and ours share a list
    assert all(len(merged["hooks"][e]) == len(users["hooks"][e]) + 1 for e in shared)
    assert [p.read_text() for p in _backups(settings)] == [original]
    _ok(cli, "integrate", host)  # again: nothing changes, nothing backed up
    assert json.loads(settings.read_text()) == merged
    assert len(_backups(settings)) == 1
    assert f"{host:<12} set up" in _ok(cli, "integrate", "--list")
    _ok(cli, "integrate", host, "--remove")
    assert settings.read_text() == original
    assert "nothing of ours" in _ok(cli, "integrate", host, "--remove")


def test_the_hosts_own_home_variables_are_followed(tmp_path: Path, cli: Cli) -> None:
    """``CODEX_HOME`` and ``COPILOT_HOME`` move those hosts' settings."""
    homes = {"CODEX_HOME": str(tmp_path / "codex"), "COPILOT_HOME": str(tmp_path / "copilot")}
    for host in ("codex", "copilot-cli"):
        done = cli("integrate", host, env=homes, data=None)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "codex" / "hooks.json").exists()
    assert (tmp_path / "copilot" / "hooks" / "session-agent.json").exists()
    assert not (_home(tmp_path) / ".codex").exists()
    assert not (_home(tmp_path) / ".copilot").exists()
    listed = cli("integrate", "--list", env=homes, data=None).stdout
    assert f"codex        set up  {tmp_path / 'codex' / 'hooks.json'}" in listed


def test_codex_says_its_hooks_need_trusting(cli: Cli) -> None:
    assert "/hooks" in _ok(cli, "integrate", "codex")


def test_claude_code_in_a_project_and_in_a_compact_file(tmp_path: Path, cli: Cli) -> None:
    project = tmp_path / "webshop"
    project.mkdir()
    _ok(cli, "integrate", "claude-code", "--project", str(project))
    made = project / ".claude" / "settings.json"
    assert "SessionStart" in json.loads(made.read_text())["hooks"]
    assert "claude-code  set up" in _ok(cli, "integrate", "--list", "--project", str(project))
    _ok(cli, "integrate", "claude-code", "--project", str(project), "--remove")
    assert not made.exists()  # it held only ours
    compact = _home(tmp_path) / ".claude" / "settings.json"
    compact.parent.mkdir(parents=True)
    compact.write_text(json.dumps(USER_SETTINGS))
    _ok(cli, "integrate", "claude-code")
    _ok(cli, "integrate", "claude-code", "--remove")
    assert json.loads(compact.read_text()) == USER_SETTINGS  # the same settings, written with indents


@pytest.mark.parametrize(
    ("host", "where"),
    [("tmux", ".tmux.conf"), ("emacs", ".emacs.d/init.el"), ("kakoune", ".config/kak/kakrc")],
)
def test_a_block_in_a_text_file_goes_and_comes_back_byte_for_byte(
    tmp_path: Path, cli: Cli, host: str, where: str
) -> None:
    path = _home(tmp_path) / where
    path.parent.mkdir(parents=True, exist_ok=True)
    original = {
        "tmux": "# mine\nset -g mouse on\n",
        "emacs": ";; mine\n(setq inhibit-startup-screen t)\n",
        "kakoune": "# mine\ncolorscheme gruvbox\n",
    }[host]
    path.write_text(original)
    _ok(cli, "integrate", host)
    text = path.read_text()
    assert text.startswith(original)
    assert "session-agent" in text[len(original) :]
    _ok(cli, "integrate", host)
    assert path.read_text() == text  # once
    _ok(cli, "integrate", host, "--remove")
    assert path.read_text() == original


@pytest.mark.parametrize(
    ("host", "where"),
    [
        ("nvim", ".config/nvim/plugin/session-agent.lua"),
        ("vim", ".vim/plugin/session-agent.vim"),
        ("copilot-cli", ".copilot/hooks/session-agent.json"),
    ],
)
def test_an_editors_plugin_file(tmp_path: Path, cli: Cli, host: str, where: str) -> None:
    path = _home(tmp_path) / where
    _ok(cli, "integrate", host)
    assert "session-agent" in path.read_text()
    assert f"{host:<12} set up" in _ok(cli, "integrate", "--list")
    _ok(cli, "integrate", host, "--remove")
    assert not path.exists()


def test_a_symlinked_settings_file_is_written_through(tmp_path: Path, cli: Cli) -> None:
    dotfiles = tmp_path / "dotfiles" / "tmux.conf"
    dotfiles.parent.mkdir()
    dotfiles.write_text("set -g mouse on\n")
    link = _home(tmp_path) / ".tmux.conf"
    link.parent.mkdir(parents=True)
    link.symlink_to(dotfiles)
    _ok(cli, "integrate", "tmux")
    assert link.is_symlink()
    assert "session-agent" in dotfiles.read_text()


def test_bad_input_is_named_and_nothing_is_touched(tmp_path: Path, cli: Cli) -> None:
    settings = _home(tmp_path) / ".claude" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"model": "opus",')
    done = cli("integrate", "claude-code", data=None)
    assert done.returncode == 2
    assert "is not plain JSON" in done.stderr
    assert settings.read_text() == '{"model": "opus",'
    assert not _backups(settings)
    for args, words in (
        (("integrate", "atom"), "unknown host 'atom'"),
        (("integrate", "nvim", "--project", str(tmp_path)), "has no per-project settings"),
        (("integrate",), "name a HOST"),
        (("integrate", "nvim", "--list"), "--list takes no HOST"),
    ):
        done = cli(*args, data=None)
        assert done.returncode == 2, args
        assert words in done.stderr, (args, done.stderr)


def _gemini_resolves(value: str, env: dict[str, str]) -> str:
    """What Gemini CLI makes of a settings string before it runs it
    (``resolveEnvVarsInString`` of @google/gemini-cli 0.61.0, as it is)."""
    import re

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or ""
        if not name:
            return match.group(0)
        if name in env:
            return env[name]
        return match.group(3) if match.group(3) is not None else match.group(0)

    return re.sub(r"\$(?:(\w+)|{([^}]+?)(?::-([^}]*))?})", one, value)


def test_the_gemini_hooks_survive_gemini_cli_expanding_variables() -> None:
    """Gemini CLI expands ``$VAR`` and ``${VAR}``/``${VAR:-default}`` of its
    environment in settings strings before a hook runs (found with the real
    program: a nested ``${A:-${B}}`` came out as a broken path). Our Gemini
    hooks come through that unchanged, whatever is set."""
    from agent.integrate import INTEGRATIONS

    hooks = json.loads((INTEGRATIONS / "gemini-cli" / "settings.json").read_text())["hooks"]
    commands = [hook["command"] for groups in hooks.values() for group in groups for hook in group["hooks"]]
    assert len(commands) == 7
    names = ("SESSION_AGENT_DATA_DIR", "XDG_DATA_HOME", "HOME", "PWD", "GEMINI_SESSION_ID", "PPID")
    env = {name: f"/set/{name}" for name in names}
    for command in commands:
        assert _gemini_resolves(command, env) == command
        assert _gemini_resolves(command, {}) == command


def test_vscode_tasks_in_a_folder_round_trip(tmp_path: Path, cli: Cli) -> None:
    folder = tmp_path / "webshop"
    tasks = folder / ".vscode" / "tasks.json"
    tasks.parent.mkdir(parents=True)
    mine = {"version": "2.0.0", "tasks": [{"label": "build", "type": "shell", "command": "make"}]}
    original = json.dumps(mine, indent=2) + "\n"
    tasks.write_text(original)
    _ok(cli, "integrate", "vscode", "--project", str(folder))
    merged = json.loads(tasks.read_text())
    assert [t["label"] for t in merged["tasks"]] == ["build", "session-agent: start", "session-agent: end"]
    assert merged["tasks"][1]["runOptions"] == {"runOn": "folderOpen"}
    _ok(cli, "integrate", "vscode", "--project", str(folder))
    assert json.loads(tasks.read_text()) == merged  # once
    assert "vscode       set up" in _ok(cli, "integrate", "--list", "--project", str(folder))
    _ok(cli, "integrate", "vscode", "--project", str(folder), "--remove")
    assert tasks.read_text() == original
    done = cli("integrate", "vscode", data=None)
    assert done.returncode == 2
    assert "is set up per project" in done.stderr
    tasks.write_text('{"version": "2.0.0", // mine\n "tasks": []}')
    done = cli("integrate", "vscode", "--project", str(folder), data=None)
    assert done.returncode == 2
    assert "comments are not read here" in done.stderr

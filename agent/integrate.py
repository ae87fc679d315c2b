"""``integrate``: our hooks merged into a host's own settings, and taken out again.

Each host keeps its settings in a file of its own; ``integrate HOST`` puts
ours there -- user-wide, or a project's (``--project DIR``) where the host
reads per-project settings -- keeping every setting and hook of the
user's, and ``--remove`` takes exactly ours out. Ours are told apart by
what they are (``_MARKER`` in a hook's command; the lines between our
markers in a text file; our file's content), so running it twice changes
nothing, and running it after an upgrade replaces ours with the new ones.

Three ways of being set up:

* ``_JsonHooks`` (Claude Code, Gemini CLI, Codex CLI, Cursor): our entries
  appended to each event's list in the file's ``hooks`` object; the rest of
  the JSON kept as it is (key order included; the text is written again
  with two-space indents);
* ``_Block`` (tmux, Emacs, Kakoune): our lines between two marker lines at
  the end of a text file; ``--remove`` deletes those lines, leaving the file
  as it was byte for byte (a file that did not end in a newline gets one);
* ``_OwnFile`` (Neovim, Vim, GitHub Copilot CLI): a file of ours where the
  host loads plugins or hook files;
* ``_JsonTasks`` (VS Code): our tasks in a folder's ``tasks.json``.

A file that is changed is first copied beside itself
(``<name>.session-agent-<time>.bak``), and written whole or not at all (a
temp file renamed over it, its mode kept); a symlink (a dotfiles manager's)
is written through, not replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from agent.errors import InvalidArgumentError, SessionIOError

__all__ = ["HOSTS", "Host", "Integration"]

INTEGRATIONS = Path(__file__).resolve().parent / "integrations"
_MARKER = "SESSION_AGENT_DATA_DIR"  # in every command our hooks run
_MAX_SETTINGS = 4 << 20  # bytes: a settings file larger than this is not one


class Integration:
    """One settings file of one host: ours in it or not; put in, taken out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.backup: Path | None = None  # where the last write kept what it replaced

    def present(self) -> bool:
        raise NotImplementedError

    def install(self) -> None:
        raise NotImplementedError

    def remove(self) -> bool:
        """Take ours out; whether there was anything to take."""
        raise NotImplementedError

    # --- the file ------------------------------------------------------------------

    def _read(self) -> str | None:
        try:
            info = self.path.stat()
            if info.st_size > _MAX_SETTINGS:
                raise InvalidArgumentError(
                    f"{self.path} is larger than {_MAX_SETTINGS} bytes: not a settings file"
                )
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"{self.path} is not UTF-8 text; fix it by hand first") from None
        except OSError as exc:
            raise SessionIOError(f"cannot read {self.path}: {exc.strerror}") from None

    def _json_object(self, key: str, kind: type, advice: str) -> dict[str, object]:
        """The file as a JSON object whose ``key`` (if there) is a ``kind``;
        ``{}`` for a missing or empty file."""
        text = self._read()
        if text is None or not text.strip():
            return {}
        try:
            found = json.loads(text)
        except ValueError as exc:
            raise InvalidArgumentError(f"{self.path} is not plain JSON ({exc}); {advice}") from None
        if not isinstance(found, dict) or not isinstance(found.get(key, kind()), kind):
            raise InvalidArgumentError(f"{self.path} is not a JSON object with a {key} {kind.__name__}")
        return found

    def _write(self, text: str | None) -> None:
        """``text`` as the file's whole content (``None``: remove the file),
        after a backup of what was there; nothing when nothing changes."""
        if text == self._read():
            return
        target = self.path.resolve() if self.path.is_symlink() else self.path
        try:
            if target.exists():
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
                self.backup = target.with_name(f"{target.name}.session-agent-{stamp}.bak")
                shutil.copy2(target, self.backup)
            if text is None:
                target.unlink(missing_ok=True)
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
            fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(temp, mode)
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise SessionIOError(f"cannot write {target}: {exc.strerror}") from None


class _JsonHooks(Integration):
    """Entries in a JSON settings file's ``hooks`` object: matcher groups
    (Claude Code, Gemini CLI, Codex CLI) or plain commands (Cursor). Where
    ours name a ``version`` (Cursor's), a file without one gets it."""

    def __init__(self, path: Path, ours: Path) -> None:
        super().__init__(path)
        shipped = json.loads(ours.read_text(encoding="utf-8"))
        self._ours: dict[str, list[object]] = shipped["hooks"]
        self._version: object = shipped.get("version")

    def _settings(self) -> dict[str, object]:
        return self._json_object("hooks", dict, "fix it by hand first")

    def present(self) -> bool:
        hooks = self._settings().get("hooks", {})
        assert isinstance(hooks, dict)
        return any(_ours(group) for groups in hooks.values() if isinstance(groups, list) for group in groups)

    def install(self) -> None:
        settings = self._settings()
        if self._version is not None and "version" not in settings:
            settings = {"version": self._version, **settings}
        hooks = settings.setdefault("hooks", {})
        assert isinstance(hooks, dict)
        _strip(hooks)
        for event, groups in self._ours.items():
            existing = hooks.setdefault(event, [])
            if not isinstance(existing, list):
                raise InvalidArgumentError(f"{self.path}: hooks.{event} is not a list")
            existing.extend(groups)
        self._write(json.dumps(settings, indent=2, ensure_ascii=False) + "\n")

    def remove(self) -> bool:
        settings = self._settings()
        hooks = settings.get("hooks", {})
        assert isinstance(hooks, dict)
        if not _strip(hooks):
            return False
        if not hooks:
            del settings["hooks"]
            if settings.keys() <= {"version"}:
                settings = {}  # what install made of nothing
        self._write(json.dumps(settings, indent=2, ensure_ascii=False) + "\n" if settings else None)
        return True


def _ours(entry: object) -> bool:
    """A command of ours, or a matcher group holding one."""
    if not isinstance(entry, dict):
        return False
    if _MARKER in str(entry.get("command", "")):
        return True
    inner = entry.get("hooks", [])
    return isinstance(inner, list) and any(_ours(hook) for hook in inner)


def _strip(hooks: dict[str, object]) -> bool:
    """Take our groups out of ``hooks`` (events left empty go); whether any were."""
    found = False
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        kept = [group for group in groups if not _ours(group)]
        if len(kept) != len(groups):
            found = True
            if kept:
                hooks[event] = kept
            else:
                del hooks[event]
    return found


class _JsonTasks(Integration):
    """Tasks in a VS Code ``tasks.json`` (ours: labelled ``session-agent: ...``)."""

    def __init__(self, path: Path, ours: Path) -> None:
        super().__init__(path)
        self._ours: list[dict[str, object]] = json.loads(ours.read_text(encoding="utf-8"))["tasks"]

    def _tasks(self) -> dict[str, object]:
        return self._json_object(
            "tasks",
            list,
            "comments are not read here: add the tasks of agent/integrations/vscode/tasks.json by hand",
        )

    @staticmethod
    def _mine(task: object) -> bool:
        return isinstance(task, dict) and str(task.get("label", "")).startswith("session-agent:")

    def present(self) -> bool:
        listed = self._tasks().get("tasks", [])
        return isinstance(listed, list) and any(self._mine(task) for task in listed)

    def install(self) -> None:
        tasks = self._tasks()
        tasks.setdefault("version", "2.0.0")
        listed = tasks.setdefault("tasks", [])
        assert isinstance(listed, list)
        tasks["tasks"] = [task for task in listed if not self._mine(task)] + self._ours
        self._write(json.dumps(tasks, indent=2, ensure_ascii=False) + "\n")

    def remove(self) -> bool:
        tasks = self._tasks()
        listed = tasks.get("tasks", [])
        assert isinstance(listed, list)
        kept = [task for task in listed if not self._mine(task)]
        if len(kept) == len(listed):
            return False
        tasks["tasks"] = kept
        only_ours = not kept and set(tasks) <= {"version", "tasks"}
        self._write(None if only_ours else json.dumps(tasks, indent=2, ensure_ascii=False) + "\n")
        return True


class _Block(Integration):
    """Our lines between two markers at the end of a text file."""

    def __init__(self, path: Path, body: str, comment: str) -> None:
        super().__init__(path)
        self._begin = f"{comment} >>> session-agent (`session-agent integrate --remove` takes this out) >>>\n"
        self._end = f"{comment} <<< session-agent <<<\n"
        self._body = body if body.endswith("\n") else body + "\n"

    def _span(self, text: str) -> tuple[int, int] | None:
        begin = text.find(self._begin)
        if begin < 0 or (begin > 0 and text[begin - 1] != "\n"):
            return None
        end = text.find(self._end, begin)
        return None if end < 0 else (begin, end + len(self._end))

    def present(self) -> bool:
        text = self._read()
        return text is not None and self._span(text) is not None

    def install(self) -> None:
        text = self._read() or ""
        span = self._span(text)
        if span is not None:
            text = text[: span[0]] + text[span[1] :]
        if text and not text.endswith("\n"):
            text += "\n"
        self._write(text + self._begin + self._body + self._end)

    def remove(self) -> bool:
        text = self._read()
        span = None if text is None else self._span(text)
        if text is None or span is None:
            return False
        rest = text[: span[0]] + text[span[1] :]
        self._write(rest if rest else None)
        return True


class _OwnFile(Integration):
    """A file of ours where the host loads plugins from."""

    def __init__(self, path: Path, ours: Path) -> None:
        super().__init__(path)
        self._content = ours.read_text(encoding="utf-8")

    def present(self) -> bool:
        return self._read() is not None

    def install(self) -> None:
        if self._read() != self._content:
            self._write(self._content)

    def remove(self) -> bool:
        if self._read() is None:
            return False
        self._write(None)
        return True


class Host:
    """A host ``integrate`` knows: where its settings are, user-wide and per
    project (``None`` where it has none), and how ours go in."""

    def __init__(
        self, name: str, what: str, user: str | None, project: str | None, note: str | None = None
    ) -> None:
        self.name = name
        self.what = what
        self.note = note  # what the user still has to do once ours are in
        self._user = user
        self._project = project

    def integration(self, project: Path | None) -> Integration:
        """The integration for the user's settings, or ``project``'s."""
        if project is not None and self._project is None:
            raise InvalidArgumentError(
                f"{self.name} has no per-project settings: integrate it without --project"
            )
        if project is None and self._user is None:
            raise InvalidArgumentError(f"{self.name} is set up per project: give --project DIR")
        path = (
            project / self._project if project is not None and self._project else _home_path(self._user or "")
        )
        return self.at(path)

    def at(self, path: Path) -> Integration:
        return _integration(self.name, path)

    def places(self, project: Path | None) -> list[Path]:
        found = [] if self._user is None else [_home_path(self._user)]
        if project is not None and self._project is not None:
            found.append(project / self._project)
        return found


# The folders a host's user settings are in: the variable that moves them, and
# where they are without it.
_HOMES = {
    "$CONFIG": ("XDG_CONFIG_HOME", "~/.config"),
    "$CODEX_HOME": ("CODEX_HOME", "~/.codex"),
    "$COPILOT_HOME": ("COPILOT_HOME", "~/.copilot"),
}


def _home_path(template: str) -> Path:
    for name, (variable, default) in _HOMES.items():
        if template.startswith(name):
            template = (os.environ.get(variable) or default) + template[len(name) :]
    return Path(template.replace("~", str(Path.home()), 1))


def _integration(name: str, path: Path) -> Integration:
    if name in ("claude-code", "gemini-cli"):
        return _JsonHooks(path, INTEGRATIONS / name / "settings.json")
    if name in ("codex", "cursor"):
        return _JsonHooks(path, INTEGRATIONS / name / "hooks.json")
    if name == "copilot-cli":
        return _OwnFile(path, INTEGRATIONS / "copilot-cli" / "session-agent.json")
    if name == "kakoune":
        return _Block(path, (INTEGRATIONS / "kakoune" / "session-agent.kak").read_text(encoding="utf-8"), "#")
    if name == "vscode":
        return _JsonTasks(path, INTEGRATIONS / "vscode" / "tasks.json")
    if name == "tmux":
        return _Block(path, (INTEGRATIONS / "tmux" / "session-agent.tmux").read_text(encoding="utf-8"), "#")
    if name == "emacs":
        return _Block(path, (INTEGRATIONS / "emacs" / "session-agent.el").read_text(encoding="utf-8"), ";;")
    if name == "nvim":
        return _OwnFile(path, INTEGRATIONS / "nvim" / "session-agent.lua")
    if name == "vim":
        return _OwnFile(path, INTEGRATIONS / "vim" / "session-agent.vim")
    raise InvalidArgumentError(f"no integration for {name}")


HOSTS = {
    host.name: host
    for host in (
        Host(
            "claude-code",
            "Claude Code: its hooks in settings.json",
            "~/.claude/settings.json",
            ".claude/settings.json",
        ),
        Host(
            "gemini-cli",
            "Gemini CLI: its hooks in settings.json",
            "~/.gemini/settings.json",
            ".gemini/settings.json",
        ),
        Host(
            "codex",
            "Codex CLI: its hooks in hooks.json",
            "$CODEX_HOME/hooks.json",
            ".codex/hooks.json",
            note="Codex runs a new hook once you trust it: open /hooks in Codex and trust session-agent's",
        ),
        Host(
            "copilot-cli",
            "GitHub Copilot CLI: a hooks file of ours",
            "$COPILOT_HOME/hooks/session-agent.json",
            ".github/hooks/session-agent.json",
        ),
        Host("cursor", "Cursor: its hooks in hooks.json", "~/.cursor/hooks.json", ".cursor/hooks.json"),
        Host("vscode", "VS Code: tasks that start and end a folder's session", None, ".vscode/tasks.json"),
        Host("nvim", "Neovim: a plugin file", "$CONFIG/nvim/plugin/session-agent.lua", None),
        Host("vim", "Vim: a plugin file", "~/.vim/plugin/session-agent.vim", None),
        Host("emacs", "Emacs: a block in init.el", "~/.emacs.d/init.el", None),
        Host("kakoune", "Kakoune: a block in kakrc", "$CONFIG/kak/kakrc", None),
        Host("tmux", "tmux: a block in tmux.conf (the status line)", "~/.tmux.conf", None),
    )
}

"""User hooks: commands the daemon runs for session events (``[[hooks]]``).

In ``<data_dir>/config.toml``::

    [[hooks]]
    name = "notify"                     # keeps its place in the log (default: from the command)
    on = ["started", "ended"]           # event kinds (default: all)
    scope = "claude-*"                  # a shell pattern of scope names (default: any)
    project = "shop"                    # only this project's sessions (default: any)
    tool = "nvim"                       # only this tool's (default: any)
    command = ["notify-send", "session"]  # an argv list, run as is ...
    # shell = "echo $SESSION_AGENT_EVENT >> ~/events.log"   # ... or a line for /bin/sh -c
    timeout = "10s"                     # killed after this (default 10 s; at most 1 h)
    max_age = "1d"                      # older events are skipped (default 1 d; 0: none)

The event is the hook's stdin (its wire form, one JSON line: see
``agent.events``), and its essentials are in the environment
(``HOOK_ENV``). Hooks are code: a config.toml that names hooks and that
anyone but its owner can write -- or that is not the user's own -- is
refused, as ssh refuses such files. How they are run is
``agent.hook_runner``'s.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from agent.errors import ConfigError, InvalidArgumentError
from agent.events import Event, EventFilter
from agent.values import Value

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_TIMEOUT",
    "HOOK_ENV",
    "MAX_HOOKS",
    "Hook",
    "HookState",
    "check_owner_only",
    "hook_environment",
    "parse_hooks",
    "state_key",
]

DEFAULT_TIMEOUT = 10  # seconds
MAX_TIMEOUT = 3600
DEFAULT_MAX_AGE = 86400  # seconds
MAX_HOOKS = 64
_KEYS = frozenset({"name", "on", "scope", "project", "tool", "command", "shell", "timeout", "max_age"})
_MAX_ARG = 4096


class Hook(Value):
    """One ``[[hooks]]`` table, checked."""

    __slots__ = ("argv", "filter", "max_age", "name", "timeout")

    name: str
    filter: EventFilter
    argv: tuple[str, ...]
    timeout: int
    max_age: int

    def __init__(
        self, name: str, filter: EventFilter, argv: tuple[str, ...], timeout: int, max_age: int
    ) -> None:
        self._set(name=name, filter=filter, argv=argv, timeout=timeout, max_age=max_age)

    def wants(self, event: Event) -> bool:
        return self.filter.matches(event)


def parse_hooks(path: Path, raw: object) -> tuple[Hook, ...]:
    """The ``[[hooks]]`` array of ``path``; ``ConfigError`` names the bad entry."""
    from agent.config import parse_seconds

    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        raise ConfigError(f"{path}: hooks must be an array of tables ([[hooks]])")
    if len(raw) > MAX_HOOKS:
        raise ConfigError(f"{path}: at most {MAX_HOOKS} hooks")
    hooks: list[Hook] = []
    for number, entry in enumerate(raw, 1):
        where = f"{path}: hook {number}: "
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise ConfigError(f"{where}unknown key {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
        try:
            argv = _argv(entry)
            filter = EventFilter.from_args(entry, kinds_key="on")
            timeout = parse_seconds(entry.get("timeout", DEFAULT_TIMEOUT), "timeout")
            max_age = parse_seconds(entry.get("max_age", DEFAULT_MAX_AGE), "max_age")
        except InvalidArgumentError as exc:
            raise ConfigError(f"{where}{exc}") from None
        if not 1 <= timeout <= MAX_TIMEOUT:
            raise ConfigError(f"{where}timeout must be from 1 s to {MAX_TIMEOUT // 60} min")
        name = entry.get("name")
        if name is None:
            name = "cmd-" + hashlib.sha256("\0".join(argv).encode()).hexdigest()[:12]
        elif not isinstance(name, str) or not 1 <= len(name) <= 64 or not name.isprintable() or "/" in name:
            raise ConfigError(f"{where}name must be 1 to 64 printable characters without /")
        if any(hook.name == name for hook in hooks):
            raise ConfigError(f"{where}another hook has the name {name!r}; names must differ")
        hooks.append(Hook(name, filter, argv, timeout, max_age))
    return tuple(hooks)


def _argv(entry: dict[str, object]) -> tuple[str, ...]:
    command, shell = entry.get("command"), entry.get("shell")
    if (command is None) == (shell is None):
        raise InvalidArgumentError("give either command (an argv list) or shell (a line for /bin/sh)")
    if shell is not None:
        if not isinstance(shell, str) or not shell.strip() or len(shell) > _MAX_ARG or "\0" in shell:
            raise InvalidArgumentError("shell must be a non-empty line for /bin/sh")
        return ("/bin/sh", "-c", shell)
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(a, str) and a and len(a) <= _MAX_ARG and "\0" not in a for a in command)
    ):
        raise InvalidArgumentError('command must be a list of strings, such as ["notify-send", "hi"]')
    return tuple(command)


def check_owner_only(path: Path, info: os.stat_result) -> None:
    """Refuse hooks from a file that is not the user's alone to write."""
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"{path} names hooks but belongs to uid {info.st_uid}, not to you; hooks are run as "
            "code, so only your own file is read: fix its owner"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{path} names hooks but can be written by other users (mode {stat.filemode(info.st_mode)}); "
            f"hooks are run as code: run `chmod go-w {path}`"
        )


def hook_environment(event: Event, data_dir: Path) -> dict[str, str]:
    """The ``SESSION_AGENT_*`` variables a hook gets for ``event``."""
    session = event.session
    found = {
        "SESSION_AGENT_EVENT": event.kind.value,
        "SESSION_AGENT_SEQ": str(event.seq),
        "SESSION_AGENT_SESSION_ID": session.id,
        "SESSION_AGENT_SCOPE": session.scope,
        "SESSION_AGENT_STATUS": session.status.value,
        "SESSION_AGENT_DATA_DIR": str(data_dir),
    }
    optional = {
        "SESSION_AGENT_END_REASON": session.end_reason.value if session.end_reason else None,
        "SESSION_AGENT_PROJECT": session.details.project,
        "SESSION_AGENT_TOOL": session.details.tool,
        "SESSION_AGENT_CWD": session.details.cwd,
        "SESSION_AGENT_EXTERNAL_ID": session.details.external_id,
    }
    found.update({name: value for name, value in optional.items() if value is not None})
    return found


HOOK_ENV = (
    "SESSION_AGENT_EVENT",
    "SESSION_AGENT_SEQ",
    "SESSION_AGENT_SESSION_ID",
    "SESSION_AGENT_SCOPE",
    "SESSION_AGENT_STATUS",
    "SESSION_AGENT_DATA_DIR",
    "SESSION_AGENT_END_REASON",
    "SESSION_AGENT_PROJECT",
    "SESSION_AGENT_TOOL",
    "SESSION_AGENT_CWD",
    "SESSION_AGENT_EXTERNAL_ID",
)


class HookState(Value):
    """Where a hook is in the log, kept durably in the store's meta
    (``hook/<name>``): its ``cursor`` (the last event it is done with) and
    what its runs came to."""

    __slots__ = ("cursor", "failures", "last_failure", "last_run", "runs", "skipped")

    cursor: int
    runs: int
    failures: int
    skipped: int
    last_run: dict[str, object] | None  # {"seq", "at", "exit", "seconds"}
    last_failure: dict[str, object] | None  # {"seq", "at", "message"}

    def __init__(
        self,
        cursor: int,
        *,
        runs: int = 0,
        failures: int = 0,
        skipped: int = 0,
        last_run: dict[str, object] | None = None,
        last_failure: dict[str, object] | None = None,
    ) -> None:
        self._set(
            cursor=cursor,
            runs=runs,
            failures=failures,
            skipped=skipped,
            last_run=last_run,
            last_failure=last_failure,
        )

    def replace(self, **changes: object) -> HookState:
        fields: dict[str, object] = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return HookState(**fields)  # type: ignore[arg-type]

    def encode(self) -> bytes:
        import json

        return json.dumps({name: getattr(self, name) for name in self.__slots__}, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> HookState | None:
        import json

        try:
            data = json.loads(raw) if raw is not None else None
            if not isinstance(data, dict) or not isinstance(data.get("cursor"), int):
                return None
            return cls(**{name: data[name] for name in cls.__slots__ if name in data})
        except (ValueError, TypeError):
            return None

    def to_dict(self, name: str, last_seq: int) -> dict[str, object]:
        return {
            "name": name,
            "cursor": self.cursor,
            "behind": max(0, last_seq - self.cursor),
            "runs": self.runs,
            "failures": self.failures,
            "skipped": self.skipped,
            "last_run": self.last_run,
            "last_failure": self.last_failure,
        }


def state_key(name: str) -> bytes:
    return b"hook/" + name.encode("utf-8")

"""The rules a session is started with: what its start asked for, else the
data dir's ``config.toml``, else the built-in defaults.

``<data_dir>/config.toml`` (optional)::

    [sessions]
    idle_timeout = "30m"   # 90s, 30m, 1h30m, 2d or seconds; 0 or "off": never (the default)
    idle_grace = "2m"      # counted as work after the last activity; default 0

It lives in the data dir, so the daemon and a command that opens the store
itself read the same file and start sessions alike. It is read at each
start (kept while its mtime and size stay the same).

The idle timeout is off by default: a session started by hand, with no
heartbeats, must not be cut short by a rule its user never asked for.
Tools that send heartbeats (the integrations do) ask for one, or the user
sets it here.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.errors import ConfigError, InvalidArgumentError
from agent.session import MAX_IDLE_SECONDS, MAX_PID
from agent.values import Value

__all__ = ["CONFIG_NAME", "StartRequest", "StartRules", "load_defaults", "parse_seconds"]

CONFIG_NAME = "config.toml"
_MAX_CONFIG = 64 * 1024
_OFF = frozenset({"0", "off", "never", "none"})


def parse_seconds(raw: object, what: str) -> int:
    """A duration from the CLI, the socket, the file or the config, in
    seconds; 0 means "none". ``InvalidArgumentError`` names ``what``."""
    from agent.timespec import parse_duration

    if isinstance(raw, bool):
        raise InvalidArgumentError(f"{what} must be a duration, not {raw!r}")
    if isinstance(raw, int):
        seconds = raw
    elif isinstance(raw, str) and len(raw) <= 32:
        if raw.strip().lower() in _OFF:
            return 0
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            raise InvalidArgumentError(f"{what}: {exc}") from None
    else:
        raise InvalidArgumentError(f"{what} must be a duration such as 30m")
    if not 0 <= seconds <= MAX_IDLE_SECONDS:
        raise InvalidArgumentError(f"{what} must be between 0 and {MAX_IDLE_SECONDS // 86400} days")
    return seconds


class StartRequest(Value):
    """What a start asked for; ``None`` means "the default"."""

    __slots__ = ("idle_grace", "idle_timeout", "owner_pid", "replace")

    owner_pid: int | None
    idle_timeout: int | None  # seconds; 0: none, whatever the default
    idle_grace: int | None
    replace: bool

    def __init__(
        self,
        *,
        owner_pid: int | None = None,
        idle_timeout: int | None = None,
        idle_grace: int | None = None,
        replace: bool = False,
    ) -> None:
        if owner_pid is not None and (isinstance(owner_pid, bool) or not 0 < owner_pid <= MAX_PID):
            raise InvalidArgumentError(f"owner pid {owner_pid!r} is not a process id (1 to {MAX_PID})")
        self._set(owner_pid=owner_pid, idle_timeout=idle_timeout, idle_grace=idle_grace, replace=replace)


class StartRules(Value):
    """The rules a session is started with, defaults applied."""

    __slots__ = ("idle_grace", "idle_timeout", "owner_pid")

    owner_pid: int | None
    idle_timeout: int | None
    idle_grace: int

    def __init__(self, owner_pid: int | None, idle_timeout: int | None, idle_grace: int) -> None:
        self._set(owner_pid=owner_pid, idle_timeout=idle_timeout, idle_grace=idle_grace)

    @classmethod
    def resolve(cls, request: StartRequest, defaults: tuple[int, int]) -> StartRules:
        timeout = defaults[0] if request.idle_timeout is None else request.idle_timeout
        if request.idle_grace is None:
            grace = min(defaults[1], timeout)  # a default grace never outgrows a timeout
        elif request.idle_grace and not timeout:
            raise InvalidArgumentError(
                "an idle grace needs an idle timeout (--idle-timeout, or idle_timeout in config.toml)"
            )
        elif request.idle_grace > timeout:
            raise InvalidArgumentError(
                f"the idle grace ({request.idle_grace} s) cannot be longer than the idle timeout "
                f"({timeout} s): the session would end after it was found idle"
            )
        else:
            grace = request.idle_grace
        return cls(request.owner_pid, timeout or None, grace)


_cache: dict[Path, tuple[tuple[int, int, int], tuple[int, int]]] = {}


def load_defaults(data_dir: Path) -> tuple[int, int]:
    """``(idle_timeout, idle_grace)`` in seconds from ``config.toml``;
    ``(0, 0)`` without one. ``ConfigError`` when it cannot be used."""
    path = data_dir / CONFIG_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return (0, 0)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        cached = _cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        if info.st_size > _MAX_CONFIG:
            raise ConfigError(f"{path} is larger than {_MAX_CONFIG} bytes")
        raw = os.read(fd, _MAX_CONFIG + 1)
    finally:
        os.close(fd)
    defaults = _parse(path, raw)
    _cache[path] = (key, defaults)
    return defaults


def _parse(path: Path, raw: bytes) -> tuple[int, int]:
    import tomllib

    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"sessions"})
    sessions = document.get("sessions", {})
    if not isinstance(sessions, dict):
        raise ConfigError(f"{path}: [sessions] must be a table")
    unknown += [f"sessions.{k}" for k in sorted(set(sessions) - {"idle_timeout", "idle_grace"})]
    if unknown:
        known = "sessions.idle_timeout, sessions.idle_grace"
        raise ConfigError(f"{path}: unknown setting {', '.join(unknown)} (known: {known})")
    try:
        timeout = parse_seconds(sessions.get("idle_timeout", 0), "sessions.idle_timeout")
        grace = parse_seconds(sessions.get("idle_grace", 0), "sessions.idle_grace")
    except InvalidArgumentError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return timeout, grace

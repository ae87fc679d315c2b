"""The rules a session is started with: what its start asked for, else the
data dir's ``config.toml``, else the built-in defaults.

``<data_dir>/config.toml`` (optional)::

    [sessions]
    idle_timeout = "30m"   # 90s, 30m, 1h30m, 2d or seconds; 0 or "off": never (the default)
    idle_grace = "2m"      # counted as work after the last activity; default 0

    [scopes]
    remove_empty_after = "1h"  # a scope's directory, once nothing is active or left in it

    [report]
    week_start = "sunday"  # the first day of a week in reports; default: the locale's

    [events]
    keep = 100000          # the event log keeps at most this many events (the default) ...
    max_age = "30d"        # ... none older than this (the default; 0: no age limit)

    [sync]                 # sessions from several machines: see agent.sync_settings
    dir = "~/Sync/session-agent"
    host = "laptop"        # the name this machine ships as; default: its hostname
    omit = ["cwd", "title"]

    [[hooks]]              # commands run for session events: see agent.hooks
    on = ["ended"]
    command = ["notify-send", "session ended"]

It lives in the data dir, so the daemon and a command that opens the store
itself read the same file and start sessions alike. It is read at each
start (kept while its mtime and size stay the same); the daemon reads its
hooks anew when it changes, and the retention when it starts. A file that
names hooks must be writable by its owner alone (``agent.hooks``).

The idle timeout is off by default: a session started by hand, with no
heartbeats, must not be cut short by a rule its user never asked for.
Tools that send heartbeats (the integrations do) ask for one, or the user
sets it here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.activity import ACTIVITY_GAP
from agent.details import NO_DETAILS, Details
from agent.errors import ConfigError, InvalidArgumentError
from agent.layout import CONFIG_NAME
from agent.session import MAX_IDLE_SECONDS, MAX_PID
from agent.values import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent.hooks import Hook
    from agent.sync_settings import SyncSettings

__all__ = ["Retention", "Settings", "StartRequest", "StartRules", "load_settings", "parse_seconds"]

_MAX_CONFIG = 64 * 1024
_OFF = frozenset({"0", "off", "never", "none"})


def parse_seconds(raw: object, what: str | None) -> int:
    """A duration from the CLI, the socket, the file or the config, in
    seconds; 0 means "none". ``InvalidArgumentError`` names ``what`` (the
    setting or field; ``None`` where the caller names it itself)."""
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
            raise InvalidArgumentError(
                f"{what}: {exc}; 0 or off for none" if what else f"{exc}; 0 or off for none"
            ) from None
    else:
        raise InvalidArgumentError(f"{what or 'a duration'} must be a duration such as 30m")
    if not 0 <= seconds <= MAX_IDLE_SECONDS:
        limit = f"must be between 0 and {MAX_IDLE_SECONDS // 86400} days"
        raise InvalidArgumentError(f"{what} {limit}" if what else f"{raw!r} {limit}")
    return seconds


class StartRequest(Value):
    """What a start asked for; ``None`` means "the default". ``details``:
    what the session is, as given (the agent completes it: see
    ``agent.scope_rules``)."""

    __slots__ = ("details", "idle_grace", "idle_timeout", "owner_pid", "replace")

    owner_pid: int | None
    idle_timeout: int | None  # seconds; 0: none, whatever the default
    idle_grace: int | None
    replace: bool
    details: Details

    def __init__(
        self,
        *,
        owner_pid: int | None = None,
        idle_timeout: int | None = None,
        idle_grace: int | None = None,
        replace: bool = False,
        details: Details = NO_DETAILS,
    ) -> None:
        if owner_pid is not None and (isinstance(owner_pid, bool) or not 0 < owner_pid <= MAX_PID):
            raise InvalidArgumentError(f"owner pid {owner_pid!r} is not a process id (1 to {MAX_PID})")
        self._set(
            owner_pid=owner_pid,
            idle_timeout=idle_timeout,
            idle_grace=idle_grace,
            replace=replace,
            details=details,
        )


class StartRules(Value):
    """The rules a session is started with, defaults applied."""

    __slots__ = ("activity_gap", "idle_grace", "idle_timeout", "owner_pid")

    owner_pid: int | None
    idle_timeout: int | None
    idle_grace: int
    activity_gap: int

    def __init__(
        self, owner_pid: int | None, idle_timeout: int | None, idle_grace: int, activity_gap: int
    ) -> None:
        self._set(
            owner_pid=owner_pid, idle_timeout=idle_timeout, idle_grace=idle_grace, activity_gap=activity_gap
        )

    @classmethod
    def resolve(cls, request: StartRequest, settings: Settings) -> StartRules:
        timeout = settings.idle_timeout if request.idle_timeout is None else request.idle_timeout
        if request.idle_grace is None:
            grace = min(settings.idle_grace, timeout)  # a default grace never outgrows a timeout
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
        return cls(request.owner_pid, timeout or None, grace, settings.activity_gap)


REMOVE_EMPTY_SCOPES_AFTER = 3600  # seconds


DEFAULT_KEEP = 100_000  # events
DEFAULT_MAX_AGE = 30 * 86400  # seconds


class Retention(Value):
    """How much of the log is kept: the newest ``keep`` events, none older
    than ``max_age`` seconds (the newest event always stays: it holds the
    counter)."""

    __slots__ = ("keep", "max_age")

    keep: int
    max_age: int

    def __init__(self, keep: int = DEFAULT_KEEP, max_age: int = DEFAULT_MAX_AGE) -> None:
        self._set(keep=keep, max_age=max_age)


SNAPSHOT_EVERY = 3600  # seconds
SNAPSHOT_KEEP = 6
_MAX_SNAPSHOT_KEEP = 1000
_MAX_EVENTS_KEEP = 100_000_000


class Settings(Value):
    """What ``config.toml`` sets, in seconds, defaults filled in."""

    __slots__ = (
        "activity_gap",
        "hooks",
        "idle_grace",
        "idle_timeout",
        "remove_empty_scopes_after",
        "retention",
        "snapshot_every",
        "snapshot_keep",
        "sync",
        "week_start",
    )
    idle_timeout: int
    idle_grace: int
    activity_gap: int
    remove_empty_scopes_after: int
    snapshot_every: int
    snapshot_keep: int
    week_start: int | None  # 0 Monday ... 6 Sunday; None: the locale's
    retention: Retention  # the event log's
    hooks: tuple[Hook, ...]
    sync: SyncSettings | None  # None: nothing is shipped or read

    def __init__(
        self,
        *,
        idle_timeout: int = 0,
        idle_grace: int = 0,
        remove_empty_scopes_after: int = REMOVE_EMPTY_SCOPES_AFTER,
        snapshot_every: int = SNAPSHOT_EVERY,
        snapshot_keep: int = SNAPSHOT_KEEP,
        activity_gap: int = ACTIVITY_GAP,
        week_start: int | None = None,
        retention: Retention | None = None,
        hooks: tuple[Hook, ...] = (),
        sync: SyncSettings | None = None,
    ) -> None:
        self._set(
            sync=sync,
            week_start=week_start,
            retention=retention or Retention(),
            hooks=hooks,
            idle_timeout=idle_timeout,
            idle_grace=idle_grace,
            activity_gap=activity_gap,
            remove_empty_scopes_after=remove_empty_scopes_after,
            snapshot_every=snapshot_every,
            snapshot_keep=snapshot_keep,
        )


_cache: dict[Path, tuple[tuple[int, int, int], Settings]] = {}


def load_settings(data_dir: Path) -> Settings:
    """The settings of ``config.toml``, the defaults without one.
    ``ConfigError`` when it cannot be used."""
    path = data_dir / CONFIG_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ConfigError(f"{path} is {kind}; config.toml must be a file: remove or replace it")
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        cached = _cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        if info.st_size > _MAX_CONFIG:
            raise ConfigError(f"{path} is larger than {_MAX_CONFIG} bytes")
        raw = os.read(fd, _MAX_CONFIG + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    settings = _parse(path, raw)
    if settings.hooks:
        from agent.hooks import check_owner_only

        check_owner_only(path, info)
    _cache[path] = (key, settings)
    return settings


_KNOWN = {
    "sessions": ("idle_timeout", "idle_grace", "activity_gap"),
    "scopes": ("remove_empty_after",),
    "snapshots": ("every", "keep"),
    "report": ("week_start",),
    "events": ("keep", "max_age"),
    "sync": ("dir", "host", "omit", "rescan"),
}
_ARRAYS = ("hooks",)


def _parse(path: Path, raw: bytes) -> Settings:
    import tomllib

    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(document) - set(_KNOWN) - set(_ARRAYS))
    tables: dict[str, dict[str, object]] = {}
    for name, keys in _KNOWN.items():
        table = document.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        tables[name] = table
        unknown += [f"{name}.{k}" for k in sorted(set(table) - set(keys))]
    if unknown:
        known = ", ".join(f"{name}.{k}" for name, keys in _KNOWN.items() for k in keys)
        raise ConfigError(f"{path}: unknown setting {', '.join(unknown)} (known: {known})")
    sessions, scopes, snapshots = tables["sessions"], tables["scopes"], tables["snapshots"]
    week_start = _weekday(path, tables["report"].get("week_start"))
    retention = _retention(path, tables["events"])
    hooks: tuple[Hook, ...] = ()
    if "hooks" in document:
        from agent.hooks import parse_hooks

        hooks = parse_hooks(path, document["hooks"])
    sync = None
    if "sync" in document:
        from agent.sync_settings import parse_sync

        sync = parse_sync(path, tables["sync"])
    keep = snapshots.get("keep", SNAPSHOT_KEEP)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= _MAX_SNAPSHOT_KEEP:
        raise ConfigError(f"{path}: snapshots.keep must be a whole number from 1 to {_MAX_SNAPSHOT_KEEP}")
    try:
        return Settings(
            idle_timeout=parse_seconds(sessions.get("idle_timeout", 0), "sessions.idle_timeout"),
            idle_grace=parse_seconds(sessions.get("idle_grace", 0), "sessions.idle_grace"),
            remove_empty_scopes_after=parse_seconds(
                scopes.get("remove_empty_after", REMOVE_EMPTY_SCOPES_AFTER), "scopes.remove_empty_after"
            ),
            snapshot_every=parse_seconds(snapshots.get("every", SNAPSHOT_EVERY), "snapshots.every"),
            snapshot_keep=keep,
            activity_gap=parse_seconds(sessions.get("activity_gap", ACTIVITY_GAP), "sessions.activity_gap"),
            week_start=week_start,
            retention=retention,
            hooks=hooks,
            sync=sync,
        )
    except InvalidArgumentError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _retention(path: Path, table: dict[str, object]) -> Retention:
    keep = table.get("keep", DEFAULT_KEEP)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= _MAX_EVENTS_KEEP:
        raise ConfigError(f"{path}: events.keep must be a whole number from 1 to {_MAX_EVENTS_KEEP}")
    try:
        max_age = parse_seconds(table.get("max_age", DEFAULT_MAX_AGE), "events.max_age")
    except InvalidArgumentError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Retention(keep, max_age)


def _weekday(path: Path, raw: object) -> int | None:
    from agent.periods import WEEKDAYS

    if raw is None:
        return None
    if not isinstance(raw, str) or raw.strip().lower() not in WEEKDAYS:
        raise ConfigError(f"{path}: report.week_start must be one of {', '.join(WEEKDAYS)}, not {raw!r}")
    return WEEKDAYS.index(raw.strip().lower())

"""``[sync]`` in config.toml: where this machine's history is shipped, under
what name, and what is left out of it.

::

    [sync]
    dir = "~/Sync/session-agent"   # a folder a sync engine replicates (required)
    host = "laptop"                # the name this machine ships as
    omit = ["cwd", "title"]        # fields never shipped
    rescan = "30s"                 # how often the folder is looked at unasked

Nothing is shipped or read until ``dir`` is set. ``host`` names this
machine's subfolder of ``dir``; unset, it is the hostname -- but a store
that shipped from another machine (a restored backup, a copied data dir)
does not go on under that machine's name until ``host`` says so
(``agent.sync_ship``). A host name is a folder name every file system and
sync engine keeps as it is: letters, digits, ``.``, ``_``, ``-``.

``rescan``: the daemon watches the folder, but a network file system tells
it nothing of files another machine wrote, and a folder that was unmounted
or full tells nothing when it is back: every ``rescan`` it looks anyway.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from agent.errors import ConfigError
from agent.values import Value

__all__ = ["OMITTABLE", "SyncSettings", "default_host_name", "host_name_problem", "parse_sync"]

# What a machine may keep to itself. The rest (when, how long, in which
# scope, how it ended, active time) is what a report needs.
OMITTABLE = ("cwd", "git", "title", "labels", "tags", "external_id", "project", "tool", "parent", "host")

_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def host_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a host's name (its folder's), or ``None``."""
    if not _HOST_NAME.fullmatch(name):
        return (
            f"{name!r} is not a host name: 1 to 63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return None


def default_host_name() -> str:
    """This machine's hostname, made a valid host name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", os.uname().nodename or "")[:63].lstrip("._-")
    return name or "localhost"


DEFAULT_RESCAN = 30  # seconds


class SyncSettings(Value):
    __slots__ = ("dir", "host", "omit", "rescan")

    dir: Path
    host: str | None  # named in the config; None: the hostname
    omit: frozenset[str]
    rescan: int  # seconds

    def __init__(
        self,
        dir: Path,
        host: str | None = None,
        omit: frozenset[str] = frozenset(),
        rescan: int = DEFAULT_RESCAN,
    ) -> None:
        self._set(dir=dir, host=host, omit=omit, rescan=rescan)

    @property
    def identity(self) -> str:
        """The name this machine ships as."""
        return self.host or default_host_name()


def parse_sync(path: Path, table: dict[str, object]) -> SyncSettings:
    """``[sync]`` of ``path``; ``ConfigError`` names what is wrong."""
    raw_dir = table.get("dir")
    if not isinstance(raw_dir, str) or not raw_dir.strip():
        raise ConfigError(f'{path}: [sync] needs dir = "/path/to/a/synced/folder"')
    folder = Path(os.path.expanduser(raw_dir.strip()))
    if not folder.is_absolute():
        raise ConfigError(f"{path}: sync.dir must be an absolute path (or start with ~), not {raw_dir!r}")
    host = table.get("host")
    if host is not None:
        if not isinstance(host, str):
            raise ConfigError(f"{path}: sync.host must be a string")
        problem = host_name_problem(host)
        if problem:
            raise ConfigError(f"{path}: sync.host: {problem}")
    omit = table.get("omit", [])
    if not isinstance(omit, list) or not all(isinstance(f, str) for f in omit):
        raise ConfigError(f"{path}: sync.omit must be a list of field names ({', '.join(OMITTABLE)})")
    unknown = sorted(set(omit) - set(OMITTABLE))
    if unknown:
        raise ConfigError(
            f"{path}: sync.omit: {', '.join(unknown)} cannot be left out; "
            f"fields that can: {', '.join(OMITTABLE)}"
        )
    from agent.config import parse_seconds
    from agent.errors import InvalidArgumentError

    try:
        rescan = parse_seconds(table.get("rescan", DEFAULT_RESCAN), "sync.rescan")
    except InvalidArgumentError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not 1 <= rescan <= 86400:
        raise ConfigError(f"{path}: sync.rescan must be from 1 second to 1 day")
    return SyncSettings(folder, host, frozenset(omit), rescan)

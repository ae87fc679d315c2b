"""``Paths``: the data dir and the runtime dir, as paths, and private directories.

The rules that choose them are ``agent.locations``'s (option > environment
> platform default); this module gives them as ``pathlib`` paths and
creates private directories. What the data dir holds is named in
``agent.layout``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from agent.errors import SessionIOError
from agent.layout import CURRENT_FILE_NAME, DB_NAME, SCOPES_DIR, scope_dir
from agent.locations import APP_NAME, SOCKET_NAME, resolve_dirs, socket_dir
from agent.values import Value

__all__ = ["APP_NAME", "Paths", "ensure_private_dir"]


class Paths(Value):
    """The data dir and the runtime dir, and what lives in them."""

    __slots__ = ("data_dir", "runtime_dir")

    data_dir: Path
    runtime_dir: Path

    def __init__(self, data_dir: Path, runtime_dir: Path) -> None:
        self._set(data_dir=data_dir, runtime_dir=runtime_dir)

    @classmethod
    def resolve(
        cls,
        data_dir: str | os.PathLike[str] | None = None,
        runtime_dir: str | os.PathLike[str] | None = None,
    ) -> Paths:
        data, runtime = resolve_dirs(data_dir, runtime_dir)
        return cls(Path(data), Path(runtime))

    @property
    def db(self) -> Path:
        return self.data_dir / DB_NAME

    @property
    def current_file(self) -> Path:
        return self.data_dir / CURRENT_FILE_NAME

    @property
    def scopes_dir(self) -> Path:
        return self.data_dir / SCOPES_DIR

    def current_file_of(self, scope: str) -> Path:
        """The current file of ``scope`` (a valid name: see ``agent.scope``)."""
        return scope_dir(self.data_dir, scope) / CURRENT_FILE_NAME

    @property
    def socket_dir(self) -> Path:
        """Per data dir (see ``agent.locations.socket_dir``)."""
        return Path(socket_dir(str(self.data_dir), str(self.runtime_dir)))

    @property
    def socket(self) -> Path:
        return self.socket_dir / SOCKET_NAME

    def describe(self) -> dict[str, str]:
        """Where everything is, for ``status``."""
        return {
            "data_dir": str(self.data_dir),
            "store": str(self.db),
            "current_file": str(self.current_file),
            "scopes_dir": str(self.scopes_dir),
            "socket": str(self.socket),
        }


def ensure_private_dir(path: Path, *, allow_symlink: bool = True, option: str = "--data-dir") -> Path:
    """Create ``path`` with mode 0700 if missing; refuse one others control.

    An existing directory must be ours and not writable by group or others:
    anyone who can write there could plant files we would read. Where
    someone else could have planted ``path`` itself (the runtime dir's
    fallback lives in the shared temp dir), ``allow_symlink=False`` refuses a
    symlink rather than follow it. A data dir may be a symlink: it lives
    among the user's own files. ``option`` is the option that chooses
    another place, named in the message.
    """
    try:
        with contextlib.suppress(FileExistsError):  # something else is there: looked at below
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(path) if allow_symlink else os.lstat(path)
    except OSError as exc:
        raise SessionIOError(
            f"cannot create the directory {path}: {exc.strerror}; choose another with {option}"
        ) from None
    if stat.S_ISLNK(st.st_mode):
        raise SessionIOError(
            f"{path} is a symlink, which is not followed here; remove it, or choose another with {option}"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise SessionIOError(f"{path} is not a directory; choose another with {option}")
    if st.st_uid != os.getuid():
        raise SessionIOError(f"{path} belongs to uid {st.st_uid}, not to you; choose another with {option}")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SessionIOError(
            f"{path} is writable by other users; run `chmod 700 {path}` or choose another with {option}"
        )
    return path

"""Where session-agent keeps its files.

Precedence for each directory: command-line option > ``SESSION_AGENT_*``
environment variable > platform default (platformdirs). On Linux the data dir
defaults to ``$XDG_DATA_HOME/session-agent`` (``~/.local/share/session-agent``)
and the runtime dir to ``$XDG_RUNTIME_DIR/session-agent``. When
``$XDG_RUNTIME_DIR`` is unset or unusable (not a directory of ours with mode
0700), the runtime dir is ``<tmp>/session-agent-<uid>`` instead, created 0700
and refused if someone else owns it.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from agent.errors import SessionIOError
from agent.values import Value

__all__ = ["APP_NAME", "DATA_DIR_ENV", "RUNTIME_DIR_ENV", "Paths", "ensure_private_dir"]

APP_NAME = "session-agent"
DATA_DIR_ENV = "SESSION_AGENT_DATA_DIR"
RUNTIME_DIR_ENV = "SESSION_AGENT_RUNTIME_DIR"


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
        chosen = data_dir or os.environ.get(DATA_DIR_ENV) or _default_data_dir()
        runtime = runtime_dir or os.environ.get(RUNTIME_DIR_ENV) or _default_runtime_dir()
        return cls(Path(chosen).expanduser().absolute(), Path(runtime).expanduser().absolute())

    @property
    def db(self) -> Path:
        return self.data_dir / "db"

    @property
    def current_file(self) -> Path:
        return self.data_dir / "current_session"

    def current_file_of(self, scope: str) -> Path:
        """The current file of ``scope`` (a valid name: see ``agent.scope``)."""
        from agent.scope import scope_dir

        return scope_dir(self.data_dir, scope) / "current_session"

    @property
    def socket_dir(self) -> Path:
        """Per data dir, so two daemons on two data dirs never collide.

        A short hash keeps the socket path under the 107-byte ``sun_path``."""
        if self.data_dir == _default_data_dir():
            return self.runtime_dir
        import hashlib  # only here: the CLI's hot path never needs it

        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:16]
        return self.runtime_dir / f"d-{digest}"

    @property
    def socket(self) -> Path:
        return self.socket_dir / "control.sock"

    def describe(self) -> dict[str, str]:
        """Where everything is, for ``status``."""
        return {
            "data_dir": str(self.data_dir),
            "store": str(self.db),
            "current_file": str(self.current_file),
            "scopes_dir": str(self.data_dir / "scopes"),
            "socket": str(self.socket),
        }


def _default_data_dir() -> Path:
    """platformdirs' ``user_data_dir``. On Linux, its XDG rule is computed
    here: every command needs this path (to find the socket), and importing
    platformdirs costs more than the rest of the client path's work."""
    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_DATA_HOME", "")
        if not os.path.isabs(base):  # unset, empty or relative: ignored, as platformdirs does
            base = os.path.join(os.path.expanduser("~"), ".local", "share")
        return Path(base, APP_NAME).absolute()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)).absolute()


def _default_runtime_dir() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and _is_private_dir(Path(xdg)):
        return Path(xdg) / APP_NAME
    import tempfile  # only on this fallback: it is slow to import

    return Path(tempfile.gettempdir()) / f"{APP_NAME}-{os.getuid()}"


def _is_private_dir(path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700


def ensure_private_dir(path: Path, *, allow_symlink: bool = True) -> Path:
    """Create ``path`` with mode 0700 if missing; refuse one others control.

    An existing directory must be ours and not writable by group or others:
    anyone who can write there could plant files we would read. Where
    someone else could have planted ``path`` itself (the runtime dir's
    fallback lives in the shared temp dir), ``allow_symlink=False`` refuses a
    symlink rather than follow it. A data dir may be a symlink: it lives
    among the user's own files.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(path) if allow_symlink else os.lstat(path)
    except OSError as exc:
        raise SessionIOError(f"cannot create the directory {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise SessionIOError(f"{path} is a symlink, which is not followed here; remove it, or choose another")
    if not stat.S_ISDIR(st.st_mode):
        raise SessionIOError(f"{path} is not a directory; choose another with --data-dir")
    if st.st_uid != os.getuid():
        raise SessionIOError(f"{path} belongs to uid {st.st_uid}, not to you; choose another with --data-dir")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SessionIOError(
            f"{path} is writable by other users; run `chmod 700 {path}` or choose another directory"
        )
    return path

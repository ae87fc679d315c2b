"""Where session-agent's files are, as plain strings.

The rules behind ``agent.paths.Paths``, kept free of ``pathlib``,
``hashlib`` and ``platformdirs`` because the fast path
(``agent.fast_cli``) needs the control socket's path before anything else
and pays for every module it imports.

Precedence for each directory: command-line option > ``SESSION_AGENT_*``
environment variable > platform default. On Linux the data dir defaults to
``$XDG_DATA_HOME/session-agent`` (``~/.local/share/session-agent``) and the
runtime dir to ``$XDG_RUNTIME_DIR/session-agent``. When
``$XDG_RUNTIME_DIR`` is unset or unusable (not a directory of ours with mode
0700), the runtime dir is ``<tmp>/session-agent-<uid>`` instead, created
0700 and refused if someone else owns it.
"""

from __future__ import annotations

import os
import stat
import sys

from agent.environment import DATA_DIR_ENV, RUNTIME_DIR_ENV

__all__ = [
    "APP_NAME",
    "SOCKET_NAME",
    "default_data_dir",
    "resolve_dirs",
    "socket_dir",
]

APP_NAME = "session-agent"
SOCKET_NAME = "control.sock"


def resolve_dirs(
    data_dir: str | os.PathLike[str] | None = None, runtime_dir: str | os.PathLike[str] | None = None
) -> tuple[str, str]:
    """The absolute data and runtime dirs: the options given, else the
    environment's, else the defaults."""
    data = _absolute(data_dir or os.environ.get(DATA_DIR_ENV) or default_data_dir())
    if data == "/":
        from agent.errors import InvalidArgumentError

        raise InvalidArgumentError(
            "the data dir cannot be / itself: give a directory of its own with --data-dir"
        )
    runtime = runtime_dir or os.environ.get(RUNTIME_DIR_ENV) or _default_runtime_dir()
    return data, _absolute(runtime)


def socket_dir(data_dir: str, runtime_dir: str) -> str:
    """Per data dir, so two daemons on two data dirs never collide: the
    default data dir's is the runtime dir, any other's a subdirectory named
    by a short hash (the socket path must fit in 107 bytes)."""
    if data_dir == _default_data_dir_if_any():
        return runtime_dir
    digest = _sha256_hex(os.fsencode(data_dir))[:16]
    return os.path.join(runtime_dir, f"d-{digest}")


def default_data_dir() -> str:
    """platformdirs' ``user_data_dir``. On Linux, its XDG rule is computed
    here: importing platformdirs costs more than the rest of the client
    path's work. ``InvalidArgumentError`` when ``$HOME`` is empty or
    relative (the store would land under ``/`` or the working directory)."""
    found = _default_data_dir_if_any()
    if found is None:
        from agent.errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"HOME is {os.environ.get('HOME', '')!r}, so there is no default data dir; "
            f"set HOME, or choose one with --data-dir or {DATA_DIR_ENV}"
        )
    return found


def _default_data_dir_if_any() -> str | None:
    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_DATA_HOME", "")
        if not os.path.isabs(base):  # unset, empty or relative: ignored, as platformdirs does
            home = os.path.expanduser("~")
            if not os.path.isabs(home) or home == "/":
                return None
            base = os.path.join(home, ".local", "share")
        return _absolute(os.path.join(base, APP_NAME))
    import platformdirs

    return _absolute(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def _default_runtime_dir() -> str:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and _is_private_dir(xdg):
        return os.path.join(xdg, APP_NAME)
    import tempfile  # only on this fallback: it is slow to import

    return os.path.join(tempfile.gettempdir(), f"{APP_NAME}-{os.getuid()}")


def _is_private_dir(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700


def _absolute(path: str | os.PathLike[str]) -> str:
    """As ``Path(path).expanduser().absolute()``: ``~`` expanded, made
    absolute, but ``..`` kept (it may cross a symlink)."""
    text = os.path.expanduser(os.fspath(path))
    if not os.path.isabs(text):
        text = os.path.join(os.getcwd(), text)
    return _collapse(text)


def _collapse(path: str) -> str:
    """Drop empty and ``.`` components and trailing slashes, as pathlib does."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    lead = "//" if path.startswith("//") and not path.startswith("///") else "/"
    return lead + "/".join(parts)


def _sha256_hex(data: bytes) -> str:
    """SHA-256 from the interpreter's built-in module when it has one:
    ``hashlib`` loads OpenSSL, 6 ms of the fast path's budget."""
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]  # Python 3.12+
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]  # 3.11
        except ImportError:
            from hashlib import sha256
    return str(sha256(data).hexdigest())

"""The current-session file: safe reads, atomic compare-and-swap writes.

The file names the active session (``<id>\\n``) or is absent. Other programs
read it with ``cat`` and edit it to drive sessions, so this module:

* reads without following a symlink or blocking on a FIFO, and never more
  than ``MAX_CONTENT + 1`` bytes;
* replaces the file only if it still is what the caller observed (and
  applied), so no edit is lost to our own writes. An existing file is
  swapped with the new one by ``renameat2(RENAME_EXCHANGE)`` -- readers see
  the old content or the new, never a missing file -- and what came out is
  compared with what was observed; if an edit had landed, it is swapped
  back. Where there is nothing to replace, the new file is linked into place
  with ``link(2)``, which fails rather than overwrite an edit. A removal
  renames the file aside and compares it first. (File systems without
  RENAME_EXCHANGE get the rename-aside path for replacements too, where a
  reader may briefly find no file.);
* fsyncs the new file and the directory before a change counts as done;
* identifies a file by ``(st_dev, st_ino, st_size, st_mtime_ns)`` and its
  content, which is how the manager tells its own last write from an edit.

Temporary names start with ``.current_session.`` and are cleaned up at the
next start.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import stat
import struct
from pathlib import Path

from agent import faults
from agent.errors import SessionIOError
from agent.layout import CURRENT_FILE_NAME
from agent.values import Value

TYPE_CHECKING = False  # typing costs every command milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "MAX_CONTENT",
    "CurrentFile",
    "FileChangedError",
    "FileKind",
    "Observation",
    "Stamp",
    "random_token",
]

MAX_CONTENT = 4096
_TEMP_PREFIX = "." + CURRENT_FILE_NAME + "."
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class FileKind(enum.Enum):
    MISSING = "missing"
    REGULAR = "regular file"
    SYMLINK = "symlink"
    FIFO = "FIFO"
    SOCKET = "socket"
    DIRECTORY = "directory"
    OTHER = "special file"


def _kind_of(mode: int) -> FileKind:
    if stat.S_ISREG(mode):
        return FileKind.REGULAR
    if stat.S_ISLNK(mode):
        return FileKind.SYMLINK
    if stat.S_ISFIFO(mode):
        return FileKind.FIFO
    if stat.S_ISSOCK(mode):
        return FileKind.SOCKET
    if stat.S_ISDIR(mode):
        return FileKind.DIRECTORY
    return FileKind.OTHER


class Observation(Value):
    """What was at the path at one moment. ``content`` is read for regular
    files only, and holds at most ``MAX_CONTENT + 1`` bytes."""

    __slots__ = ("content", "identity", "kind")

    kind: FileKind
    identity: tuple[int, int, int, int] | None  # dev, ino, size, mtime_ns
    content: bytes | None

    def __init__(
        self,
        kind: FileKind,
        identity: tuple[int, int, int, int] | None = None,
        content: bytes | None = None,
    ) -> None:
        self._set(kind=kind, identity=identity, content=content)

    @property
    def mtime_ns(self) -> int | None:
        return self.identity[3] if self.identity else None


MISSING = Observation(FileKind.MISSING)


class Stamp(Value):
    """Our last completed write: which id, and the file's identity after it."""

    __slots__ = ("identity", "session_id")

    session_id: str
    identity: tuple[int, int, int, int]

    _FORMAT = struct.Struct("<36sQQQq")

    def __init__(self, session_id: str, identity: tuple[int, int, int, int]) -> None:
        self._set(session_id=session_id, identity=identity)

    def encode(self) -> bytes:
        return self._FORMAT.pack(self.session_id.encode("ascii"), *self.identity)

    @classmethod
    def decode(cls, raw: bytes | None) -> Stamp | None:
        """``None`` for a missing or unreadable stamp: it only ever means
        "we may not have finished writing", which is the safe assumption."""
        if raw is None or len(raw) != cls._FORMAT.size:
            return None
        sid, dev, ino, size, mtime_ns = cls._FORMAT.unpack(raw)
        return cls(sid.decode("ascii", "replace"), (dev, ino, size, mtime_ns))

    def matches(self, observed: Observation) -> bool:
        return observed.kind is FileKind.REGULAR and observed.identity == self.identity


class FileChangedError(Exception):
    """The file is no longer what the caller observed: observe and decide again."""


class CurrentFile:
    def __init__(self, data_dir: Path, temp_token: Callable[[], str] | None = None) -> None:
        """``temp_token``: the random part of temporary names (a test plants
        a file at the name it makes)."""
        self.dir = Path(data_dir)
        self.path = self.dir / CURRENT_FILE_NAME
        self._temp_token = temp_token or random_token

    # --- reading --------------------------------------------------------------

    def observe(self) -> Observation:
        """Look at the path without following a symlink or blocking."""
        try:
            return _observe(self.path)
        except OSError as exc:
            raise SessionIOError(f"cannot read {self.path}: {exc.strerror}") from None

    # --- writing --------------------------------------------------------------

    def replace(self, expected: Observation, session_id: str | None) -> Stamp | None:
        """Make the file hold ``session_id`` (or be absent) if it still is ``expected``.

        Returns the stamp of the new file, or ``None`` when the file was
        removed. Raises ``FileChangedError`` (touching nothing that was not
        ``expected``) if an edit landed since ``expected`` was observed.
        """
        if expected.kind is FileKind.DIRECTORY:
            raise ValueError("a directory in place of the current file is never replaced")
        try:
            if session_id is not None and expected.kind is not FileKind.MISSING:
                stamp = self._exchange(expected, session_id)
                if stamp is not None:
                    return stamp
            aside = self._move_aside(expected)
            try:
                stamp = self._link_new(session_id) if session_id else None
            except BaseException:
                if aside is not None:
                    self._put_back(aside)  # a failed write changes nothing
                raise
            if aside is not None:
                os.unlink(aside)
            self._fsync_dir()
            return stamp
        except OSError as exc:
            raise SessionIOError(f"cannot write {self.path}: {exc.strerror}") from None

    def _exchange(self, expected: Observation, session_id: str) -> Stamp | None:
        """Swap a new file in with one atomic ``renameat2(RENAME_EXCHANGE)``,
        so a reader sees the old content or the new, never no file; then
        check that what came out is what was observed. ``None`` when the
        file system cannot exchange (the caller falls back to move-aside)."""
        temp, stamp = self._write_temp(session_id)
        try:
            faults.point("file.before_rename")
            try:
                exchanged = _exchange(temp, self.path)
            except FileNotFoundError:
                raise FileChangedError from None  # the name was removed since
            if not exchanged:
                return None
            faults.point("file.after_rename")
            if not _same(temp, expected):
                # An edit landed after we looked: give the name back to it,
                # unless an even newer one has taken the name meanwhile.
                if _observe(self.path).identity == stamp.identity:
                    _exchange(temp, self.path)
                raise FileChangedError
            self._fsync_dir()
            return stamp
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def _move_aside(self, expected: Observation) -> Path | None:
        if expected.kind is FileKind.MISSING:
            return None
        aside = self._temp_name("old")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            raise FileChangedError from None
        if not _same(aside, expected):
            self._put_back(aside)
            raise FileChangedError
        faults.point("file.after_move_aside")
        return aside

    def _put_back(self, aside: Path) -> None:
        try:
            if os.path.isdir(aside) and not os.path.islink(aside):
                os.rename(aside, self.path)  # fails with ENOTDIR over a new file
            else:
                os.link(aside, self.path, follow_symlinks=False)
                os.unlink(aside)
        except OSError:
            # A newer edit already took the name; it supersedes the one aside.
            if not os.path.isdir(aside) or os.path.islink(aside):
                os.unlink(aside)

    def _write_temp(self, session_id: str) -> tuple[Path, Stamp]:
        """A new, fsynced file holding ``session_id``, under a temporary name."""
        temp = self._temp_name("tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, f"{session_id}\n".encode("ascii"))
            faults.point("file.before_fsync")
            os.fsync(fd)
            faults.point("file.after_fsync")
            return temp, Stamp(session_id, _identity(os.fstat(fd)))
        except BaseException:
            os.unlink(temp)
            raise
        finally:
            os.close(fd)

    def _link_new(self, session_id: str) -> Stamp:
        temp, stamp = self._write_temp(session_id)
        try:
            faults.point("file.before_rename")
            try:
                os.link(temp, self.path, follow_symlinks=False)
            except FileExistsError:
                raise FileChangedError from None
            faults.point("file.after_rename")
            return stamp
        finally:
            os.unlink(temp)

    def _temp_name(self, suffix: str) -> Path:
        return self.dir / f"{_TEMP_PREFIX}{self._temp_token()}.{suffix}"

    def _fsync_dir(self) -> None:
        faults.point("file.before_dir_fsync")
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        faults.point("file.after_dir_fsync")

    def remove_leftovers(self) -> int:
        """Delete temporary files a crash left behind; returns how many."""
        removed = 0
        try:
            with os.scandir(self.dir) as entries:
                for entry in entries:
                    ours = entry.name.startswith(_TEMP_PREFIX) and entry.name.endswith((".tmp", ".old"))
                    if ours and not entry.is_dir(follow_symlinks=False):
                        os.unlink(entry.path)
                        removed += 1
        except OSError as exc:
            raise SessionIOError(f"cannot clean up {self.dir}: {exc.strerror}") from None
        return removed


_RENAME_EXCHANGE = 2  # from <linux/fs.h>
_AT_FDCWD = -100
_renameat2: Any = None  # the libc function once looked up; False if it has none


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the files at ``a`` and ``b``; ``False`` if this file
    system (or libc) cannot. Other failures raise ``OSError``."""
    global _renameat2
    if _renameat2 is None:
        import ctypes  # only here: most commands never replace an existing file

        libc = ctypes.CDLL(None, use_errno=True)
        _renameat2 = getattr(libc, "renameat2", False)
        if _renameat2:
            _renameat2.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_uint,
            ]
    if not _renameat2:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def random_token() -> str:
    """Unguessable temp-name part, as ``secrets.token_hex(6)`` (which would
    import hashlib on every command's path)."""
    return os.urandom(6).hex()


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _observe(path: Path) -> Observation:
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return MISSING
    except OSError as exc:
        # ELOOP: a symlink; ENXIO: a socket; EACCES/EPERM: unreadable. lstat tells.
        if exc.errno not in (errno.ELOOP, errno.ENXIO, errno.EACCES, errno.EPERM):
            raise
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return MISSING
        return Observation(_kind_of(st.st_mode), _identity(st))
    try:
        st = os.fstat(fd)
        kind = _kind_of(st.st_mode)
        if kind is not FileKind.REGULAR:
            return Observation(kind, _identity(st))
        chunks = []
        remaining = MAX_CONTENT + 1
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return Observation(kind, _identity(st), b"".join(chunks))
    finally:
        os.close(fd)


def _same(path: Path, expected: Observation) -> bool:
    """Is the file at ``path`` (moved aside, so no one else writes the name)
    the one observed: same inode, size, mtime and, if regular, content?"""
    try:
        return _observe(path) == expected
    except OSError:
        return False

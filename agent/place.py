"""Where a session's work happens: its project and git state, from ``cwd``.

Read from the repository's own files, without running ``git`` (a process
per start would cost more than the start): ``.git`` (a directory, or a
file ``gitdir: <path>`` for a linked worktree or a submodule), ``HEAD``
and ``commondir``. A repository may be hostile -- a FIFO or a huge file as
``HEAD``, a ``.git`` file pointing anywhere, symlinks -- so every read is
non-blocking, never follows a symlink, takes regular files only and at
most ``_MAX_READ`` bytes; anything unexpected means "no git state", never
an error or a wait.

The project is the repository's name: the top-level directory of the
working tree, or for a linked worktree the *main* repository's (so a
project's worktrees count as one project); outside a repository, the
directory's own name.
"""

from __future__ import annotations

import os
import stat

from agent.details import GitState

__all__ = ["describe_place", "this_host"]

_MAX_READ = 4096
_MAX_DEPTH = 128  # directories walked up from cwd
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


def describe_place(cwd: str) -> tuple[str | None, GitState | None]:
    """``(project, git)`` for work in ``cwd`` (an absolute path)."""
    directory = os.path.normpath(cwd)
    for _ in range(_MAX_DEPTH):
        found = _git_at(directory)
        if found is not None:
            return found
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    name = os.path.basename(os.path.normpath(cwd))
    return (name or None), None


def _git_at(directory: str) -> tuple[str | None, GitState] | None:
    dot_git = os.path.join(directory, ".git")
    try:
        mode = os.lstat(dot_git).st_mode
    except OSError:
        return None
    worktree = False
    project = os.path.basename(directory) or None
    if stat.S_ISDIR(mode):
        git_dir = dot_git
    elif stat.S_ISREG(mode):
        content = _read_small(dot_git)
        if content is None or not content.startswith("gitdir:"):
            return None
        git_dir = os.path.normpath(os.path.join(directory, content[len("gitdir:") :].strip()))
        common = _read_small(os.path.join(git_dir, "commondir"))
        if common is not None:  # a linked worktree: named after the main repository
            worktree = True
            common_dir = os.path.normpath(os.path.join(git_dir, common.strip()))
            project = _repository_name(common_dir) or project
    else:
        return None  # a symlink or anything else: not followed
    head = _read_small(os.path.join(git_dir, "HEAD"))
    branch = commit = None
    if head is not None:
        head = head.strip()
        if head.startswith("ref: refs/heads/"):
            branch = head[len("ref: refs/heads/") :] or None
        elif len(head) in (40, 64) and all(c in "0123456789abcdef" for c in head):
            commit = head
    try:
        return project, GitState(directory, branch, commit, worktree)
    except ValueError:
        return None  # a branch name that is not one line of text: no git state


def _repository_name(common_dir: str) -> str | None:
    """``/src/engine/.git`` -> ``engine``; a bare ``/srv/engine.git`` -> ``engine``."""
    base = os.path.basename(common_dir)
    if base == ".git":
        return os.path.basename(os.path.dirname(common_dir)) or None
    return base.removesuffix(".git") or None


def _read_small(path: str) -> str | None:
    """A small regular file's text; ``None`` for anything else."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_READ:
            return None
        data = os.read(fd, _MAX_READ + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > _MAX_READ:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


_host: tuple[str, str | None] | None = None


def this_host() -> tuple[str, str | None]:
    """``(hostname, machine id)`` of this machine (read once per process)."""
    global _host
    if _host is None:
        machine_id = None
        for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
            text = _read_small(path)
            if text and text.strip().isalnum():
                machine_id = text.strip()
                break
        _host = (os.uname().nodename or "localhost", machine_id)
    return _host

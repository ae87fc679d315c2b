"""Test-only fault injection at named points on the write paths.

Off unless the entry point finds ``SESSION_AGENT_FAULTS`` or
``SESSION_AGENT_FAULTS_FILE`` set (``install_from_environment``) or a test
calls ``configure``; when off, ``point()`` tests one boolean.

A spec is a comma list of ``POINT=ACTION``, ``POINT=ACTION@N`` (fire on the
N-th pass only; default the 1st) or ``POINT=ACTION@N+`` (fire on the N-th
pass and every one after it: a fault that stays until it is lifted).
Actions:

* ``crash`` -- ``os._exit(86)``: no cleanup, no flush, like a power cut for
  everything not yet synced;
* ``kill`` -- ``SIGKILL`` to ourselves, exactly what ``kill -9`` does;
* ``enospc`` / ``eio`` / ``eacces`` -- raise that ``OSError``.

``SESSION_AGENT_FAULTS_FILE`` names a file holding a spec, read again
whenever it changes (checked at every point, so only tests pay for it): a
test can inject a fault into a running daemon and lift it again. Pass
counts start over whenever the plan changes.

``POINTS`` lists every point of a transition, in the order it passes them;
``SYNC_POINTS`` those of shipping to the sync dir.
"""

from __future__ import annotations

import errno
import os
import signal

from agent.environment import FAULTS_ENV, FAULTS_FILE_ENV

__all__ = [
    "CRASH_EXIT_CODE",
    "POINTS",
    "SYNC_POINTS",
    "configure",
    "install_from_environment",
    "point",
]

CRASH_EXIT_CODE = 86
POINTS = (
    "manager.reconcile",  # an external edit was read and is about to be applied
    "manager.end_by_rule",  # a rule (idle, owner) ended the active session; not yet recorded
    "store.commit",  # before a synced batch is written
    "store.after_commit",  # the batch is durable, the caller does not know yet
    "manager.after_store",  # between the store write and the file write
    "file.before_fsync",  # the temp file is written, not yet synced
    "file.after_fsync",  # synced, not yet in place
    "file.after_move_aside",  # the old file is renamed aside, the new not yet linked
    "file.before_rename",  # the new file is about to take the name
    "file.after_rename",  # it has the name; the directory is not yet synced
    "file.before_dir_fsync",
    "file.after_dir_fsync",
    "manager.after_file",  # the file is written, its stamp not yet in the store
)
# Shipping to the sync dir (agent.sync_ship), off every transition's path
# (tests/reliability/test_sync_faults.py crashes the daemon at each).
SYNC_POINTS = (
    "sync.before_rename",  # a segment is written and synced under its temp name
    "sync.after_rename",  # it has its name; the shipping cursor is not yet moved
)
_ERRNOS = {"enospc": errno.ENOSPC, "eio": errno.EIO, "eacces": errno.EACCES}
_ACTIONS = ("crash", "kill", *_ERRNOS)


class _Fault:
    __slots__ = ("action", "fire_at", "passes", "sticky")

    def __init__(self, action: str, fire_at: int, sticky: bool) -> None:
        self.action = action
        self.fire_at = fire_at  # the pass that fires (1-based)
        self.sticky = sticky  # and every pass after it
        self.passes = 0


_plan: dict[str, _Fault] = {}
_enabled = False
_control_file: str | None = None
_control_seen: tuple[int, int, int] | None = None


def parse(spec: str) -> dict[str, _Fault]:
    plan: dict[str, _Fault] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        action, _, nth = action.partition("@")
        name, action = name.strip(), action.strip().lower()
        if name not in POINTS + SYNC_POINTS:
            known = ", ".join(POINTS + SYNC_POINTS)
            raise ValueError(f"faults: unknown point {name!r} in {item!r}; points: {known}")
        if action not in _ACTIONS:
            raise ValueError(f"faults: unknown action {action!r} in {item!r}; actions: {', '.join(_ACTIONS)}")
        sticky = nth.endswith("+")
        fire_at = int(nth.rstrip("+") or 1)
        if fire_at < 1:
            raise ValueError(f"faults: the pass number in {item!r} must be 1 or more")
        plan[name] = _Fault(action, fire_at, sticky)
    return plan


def configure(spec: str | None, control_file: str | None = None) -> None:
    """Replace the plan; ``None`` or ``""`` (and no control file) turns injection off."""
    global _enabled, _control_file, _control_seen
    _plan.clear()
    _plan.update(parse(spec or ""))
    _control_file, _control_seen = control_file, None
    _enabled = bool(_plan) or control_file is not None


def point(name: str) -> None:
    if not _enabled:
        return
    if _control_file is not None:
        _reload()
    fault = _plan.get(name)
    if fault is None:
        return
    fault.passes += 1
    if fault.passes < fault.fire_at or (fault.passes > fault.fire_at and not fault.sticky):
        return
    if fault.action == "crash":
        os._exit(CRASH_EXIT_CODE)
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    code = _ERRNOS[fault.action]
    raise OSError(code, f"{os.strerror(code)} (injected at {name})")


def _reload() -> None:
    global _control_seen
    assert _control_file is not None
    try:
        st = os.stat(_control_file)
        seen: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        seen = None
    if seen == _control_seen:
        return
    _control_seen = seen
    _plan.clear()
    if seen is not None:
        with open(_control_file, encoding="utf-8") as f:
            _plan.update(parse(f.read()))


def install_from_environment() -> None:
    """Set the plan from ``SESSION_AGENT_FAULTS``/``SESSION_AGENT_FAULTS_FILE``:
    called by the entry point (``agent.fast_cli.main``), never at import, so
    a malformed spec is a usage error naming the variable, not a traceback
    from whatever module imported this one first."""
    from agent.errors import InvalidArgumentError

    try:
        configure(os.environ.get(FAULTS_ENV), os.environ.get(FAULTS_FILE_ENV))
    except (ValueError, OSError) as exc:
        raise InvalidArgumentError(f"{FAULTS_ENV}: {exc}") from None

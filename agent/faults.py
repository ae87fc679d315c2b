"""Test-only fault injection at named points on the write paths.

Off unless ``SESSION_AGENT_FAULTS`` is set (or a test calls ``configure``);
when off, ``point()`` is one dictionary truth test. The spec is a comma list
of ``NAME=ACTION`` or ``NAME=ACTION@N`` (fire on the N-th pass, default 1st):

* ``crash``  -- ``os._exit(86)``, as abrupt as ``kill -9`` for our purposes
* ``enospc`` / ``eio`` / ``eacces`` -- raise that ``OSError``

Points: ``store.commit`` (before a batch is written), ``file.before_fsync``,
``file.before_rename``, ``file.after_rename``, ``manager.after_store``
(between the store write and the file write), ``manager.after_file``
(between the file write and recording it in the store).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

__all__ = ["CRASH_EXIT_CODE", "ENV_VAR", "configure", "point"]

ENV_VAR = "SESSION_AGENT_FAULTS"
CRASH_EXIT_CODE = 86
_ERRNOS = {"enospc": errno.ENOSPC, "eio": errno.EIO, "eacces": errno.EACCES}


@dataclass
class _Fault:
    action: str
    passes_left: int  # fires when this reaches zero


_plan: dict[str, _Fault] = {}


def configure(spec: str | None) -> None:
    """Replace the plan; ``None`` or ``""`` turns injection off."""
    _plan.clear()
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        name, _, action = item.partition("=")
        action, _, nth = action.partition("@")
        action = action.strip().lower()
        if action != "crash" and action not in _ERRNOS:
            raise ValueError(f"{ENV_VAR}: unknown action {action!r} in {item!r}")
        _plan[name.strip()] = _Fault(action, int(nth or 1))


def point(name: str) -> None:
    if not _plan:
        return
    fault = _plan.get(name)
    if fault is None:
        return
    fault.passes_left -= 1
    if fault.passes_left != 0:
        return
    if fault.action == "crash":
        os._exit(CRASH_EXIT_CODE)
    code = _ERRNOS[fault.action]
    raise OSError(code, f"{os.strerror(code)} (injected at {name})")


configure(os.environ.get(ENV_VAR))

"""``Reconciler``: the daemon applies the current files, and retries by itself.

File events, the rules' timers and SIGHUP ask it to apply some scopes'
files (or every scope's). A failure -- a full disk, a file that keeps
changing, a request that failed halfway -- is logged once and retried
after a delay that grows to ``RETRY_DELAYS[-1]`` seconds and stays there
until it passes: the fault gone, the files and the store agree again
without anyone asking.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from agent.errors import SessionError, SessionIOError
from agent.manager import SessionManager
from agent.watcher import dir_identity

__all__ = ["RETRY_DELAYS", "Reconciler"]

log = logging.getLogger(__name__)

# Soon, and never long after the fault is gone (a file naming a replaced
# session must not linger).
RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0)


class Reconciler:
    def __init__(self, manager: SessionManager, data_dir: Path) -> None:
        self._manager = manager
        self._data_dir = data_dir
        self._identity = dir_identity(data_dir)  # the data dir we were started on
        self._failures = 0
        self._last_problem: str | None = None
        self._retry: asyncio.TimerHandle | None = None

    def check_data_dir(self) -> None:
        """``SessionIOError`` if the data dir is not the one we started on."""
        if dir_identity(self._data_dir) != self._identity:
            raise SessionIOError(
                f"the data dir {self._data_dir} was moved or deleted while the daemon ran; "
                "put it back, or restart the daemon"
            )

    def apply(self, why: str, scopes: frozenset[str] | None = None) -> None:
        """Apply the current files of ``scopes`` (``None``: every scope);
        after a failure, try again later, every scope."""
        if scopes is None and self._retry is not None:
            self._retry.cancel()
            self._retry = None
        try:
            self.check_data_dir()
            if scopes is None:
                self._manager.reconcile_all()
            else:
                for scope in sorted(scopes):
                    self._manager.reconcile(scope)
        except Exception as exc:
            if not isinstance(exc, SessionError):  # a bug: keep the traceback, keep running
                log.exception("unexpected error while applying the current file")
            self.retry_later(f"could not apply the current file ({why}): {exc}")
            return
        if self._failures and scopes is None:
            log.info("the current file is applied again")
            self._failures = 0
            self._last_problem = None

    def retry_later(self, problem: str) -> None:
        """Log ``problem`` (once while it repeats) and apply every scope
        after a delay that grows with each consecutive failure."""
        if self._retry is not None:
            self._retry.cancel()
        delay = RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS) - 1)]
        self._failures += 1
        repeated = problem == self._last_problem
        self._last_problem = problem
        log.log(logging.DEBUG if repeated else logging.ERROR, "%s; retrying in %g s", problem, delay)
        self._retry = asyncio.get_running_loop().call_later(delay, self.apply, "retry", None)

    def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

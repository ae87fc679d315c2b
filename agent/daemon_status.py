"""What the daemon says about itself: the ``status`` report and systemd's STATUS=.

The report's daemon part (pid, resources, the control socket) is gathered
here; the rest is ``agent.status``'s, as for an embedded command. The
STATUS= line follows the manager's changes.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

from agent import __version__
from agent.changes import ActiveSession, Change
from agent.control.server import ControlServer
from agent.layout import DEFAULT_SCOPE
from agent.manager import SessionManager
from agent.paths import Paths
from agent.session import format_time
from agent.status import status_report
from agent.systemd import Notifier
from agent.watcher import WatchSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent.event_stream import EventStream
    from agent.hook_runner import HookRunner
    from agent.sync_service import SyncService

__all__ = ["DaemonStatus"]


class DaemonStatus:
    def __init__(
        self,
        paths: Paths,
        watch: WatchSettings,
        notifier: Notifier,
        manager: SessionManager,
        server: ControlServer,
        *,
        socket_activated: bool,
        started: tuple[datetime, float],
        followers: tuple[EventStream, HookRunner, SyncService],
    ) -> None:
        """``started``: when the daemon started, in wall time and on the monotonic clock."""
        self._paths = paths
        self._watch = watch
        self._notifier = notifier
        self._manager = manager
        self._server = server
        self._stream, self._hooks, self._sync = followers
        self._socket_activated = socket_activated
        self._started_at, self._started_monotonic = started
        self._ready_at: tuple[float, float] | None = None  # (monotonic, CPU seconds) when start-up ended
        self._actives: dict[str, ActiveSession] = {}
        self._shown: str | None = None

    def ready(self, actives: dict[str, ActiveSession]) -> str:
        """Start-up is over: the line to say so (and tell systemd)."""
        self._ready_at = (time.monotonic(), _cpu_seconds())
        self._actives = dict(actives)
        self._shown = self.line()
        self._notifier.ready(self._shown)
        return self._shown

    def on_change(self, change: Change) -> None:
        if change.after is None:
            self._actives.pop(change.scope, None)
        else:
            self._actives[change.scope] = change.after
        if self._notifier.enabled and (line := self.line()) != self._shown:
            self._shown = line
            self._notifier.status(line)

    def line(self) -> str:
        others = len(self._actives) - (DEFAULT_SCOPE in self._actives)
        default = self._actives.get(DEFAULT_SCOPE)
        line = f"session {default.session.id} active" if default else "no active session"
        return line + (f"; {others} more in other scopes" if others else "")

    def report(self) -> dict[str, Any]:
        """The answer to a ``status`` request."""
        import psutil

        process = psutil.Process()
        with process.oneshot():
            rss = process.memory_info().rss
            times = process.cpu_times()
        now = time.monotonic()
        cpu = times.user + times.system
        # Start-up (imports, opening the store) dominates an average since the
        # start: the figure users want is what the daemon costs while it runs.
        ready_at, cpu_at_ready = self._ready_at or (self._started_monotonic, 0.0)
        running = now - ready_at
        daemon = {
            "running": True,
            "pid": os.getpid(),
            "version": __version__,
            "started_at": format_time(self._started_at),
            "uptime_seconds": round(now - self._started_monotonic, 3),
            "rss_bytes": rss,
            "cpu_seconds": round(cpu, 3),
            "cpu_percent": round(100 * (cpu - cpu_at_ready) / running, 3) if running > 0 else 0.0,
            "cpu_percent_span_seconds": round(running, 3),
            "connections": self._server.connection_count,
            "socket_activated": self._socket_activated,
            "systemd_notify": self._notifier.enabled,
        }
        watcher = {"step_ms": self._watch.step_ms, "debounce_ms": self._watch.debounce_ms}
        states = self._manager.active_states()
        log = self._manager.store.events
        events = {
            "last": log.last_seq,
            "first": log.first_seq(),
            "subscribers": self._stream.subscriber_count,
        }
        return status_report(
            daemon,
            self._paths,
            states,
            self._manager.clock,
            watcher=watcher,
            events=events,
            hooks=self._hooks.status(),
            sync=self._sync.status(),
        )


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system

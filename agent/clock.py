"""The clocks a session's rules are measured on.

* **Wall time** (UTC) is what records say: ``started_at``, ``ended_at``,
  ``last_activity_at``. It jumps when the clock is set (NTP, a user, a VM
  restored), so it is never used to measure how long something took.
* **The boot clock** (``CLOCK_BOOTTIME``) counts seconds since boot,
  *including* time spent suspended, and never jumps. Idleness is measured on
  it: a laptop asleep for eight hours was idle for eight hours, and a clock
  set forward by two hours made no one idle. (``CLOCK_MONOTONIC`` stops
  during suspend, which would make a night's sleep look like activity.)
* **The boot id** (``/proc/sys/kernel/random/boot_id``) says whether a
  boot-clock reading taken earlier belongs to this boot.

Tests of whole processes simulate a suspend or a clock jump with
``agent.simulated_clock``, which the entry point installs when asked
(``SESSION_AGENT_TEST_CLOCK``); in-process tests pass their own ``Clock``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["Clock", "SystemClock", "default_clock", "install"]

_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


class Clock:
    """The interface; ``SystemClock`` is the real one, tests pass their own."""

    def now(self) -> datetime:
        raise NotImplementedError

    def boot(self) -> float:
        """Seconds on the boot clock."""
        raise NotImplementedError

    def boot_id(self) -> str:
        raise NotImplementedError

    def boot_at(self, moment: datetime) -> float:
        """The boot clock's reading at ``moment`` (a past wall time, such as
        a file's mtime), as well as it can be told: exact unless the wall
        clock was set in between."""
        ago = max(0.0, (self.now() - moment).total_seconds())
        return self.boot() - ago


class SystemClock(Clock):
    def __init__(self) -> None:
        self._boot_id: str | None = None

    def now(self) -> datetime:
        return datetime.now(UTC)

    def boot(self) -> float:
        return time.clock_gettime(time.CLOCK_BOOTTIME)

    def boot_id(self) -> str:
        if self._boot_id is None:  # a process never outlives its boot
            try:
                with open(_BOOT_ID_PATH, encoding="ascii") as f:
                    self._boot_id = f.read(64).strip()
            except OSError:
                self._boot_id = ""  # unknown: nothing is taken to be from this boot
        return self._boot_id


_installed: Clock | None = None  # set by the entry point alone (tests' simulated clock)


def install(clock: Clock) -> None:
    """Make ``clock`` what ``default_clock`` gives: the entry point's to call
    (``agent.simulated_clock.install_from_environment``), never an import's."""
    global _installed
    _installed = clock


def default_clock() -> Clock:
    """The clock of this process: the system's, unless the entry point
    installed another."""
    return _installed or SystemClock()

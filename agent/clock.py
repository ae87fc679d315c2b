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

Tests simulate a suspend or a clock jump with ``SESSION_AGENT_TEST_CLOCK``:
the path of a JSON file ``{"wall": s, "boot": s, "boot_id": "..."}`` whose
offsets (seconds) are added to the real clocks, re-read whenever it
changes. A suspend of S seconds moves both clocks by S; a jump of the wall
clock moves only ``wall``; a reboot changes ``boot_id``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta

from agent.environment import TEST_CLOCK_ENV

__all__ = ["Clock", "SystemClock"]

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
        self._real_boot_id: str | None = None
        self._offsets_path = os.environ.get(TEST_CLOCK_ENV) or None
        self._offsets_seen: tuple[int, int] | None = None
        self._wall_offset = self._boot_offset = 0.0
        self._boot_id_override: str | None = None

    def now(self) -> datetime:
        self._read_offsets()
        moment = datetime.now(UTC)
        return moment + timedelta(seconds=self._wall_offset) if self._wall_offset else moment

    def boot(self) -> float:
        self._read_offsets()
        return time.clock_gettime(time.CLOCK_BOOTTIME) + self._boot_offset

    def boot_id(self) -> str:
        self._read_offsets()
        if self._boot_id_override:
            return self._boot_id_override
        if self._real_boot_id is None:  # a process never outlives its boot
            try:
                with open(_BOOT_ID_PATH, encoding="ascii") as f:
                    self._real_boot_id = f.read(64).strip()
            except OSError:
                self._real_boot_id = ""  # unknown: nothing is taken to be from this boot
        return self._real_boot_id

    def _read_offsets(self) -> None:
        if self._offsets_path is None:
            return
        try:
            info = os.stat(self._offsets_path)
        except OSError:
            seen = None
        else:
            seen = (info.st_mtime_ns, info.st_size)
        if seen == self._offsets_seen:
            return
        self._offsets_seen = seen
        try:
            with open(self._offsets_path, encoding="utf-8") as f:
                offsets = json.load(f)
        except (OSError, ValueError):
            offsets = {}
        self._wall_offset = float(offsets.get("wall", 0))
        self._boot_offset = float(offsets.get("boot", 0))
        self._boot_id_override = offsets.get("boot_id") or None

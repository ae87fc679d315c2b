"""Tests only: the system's clocks moved by offsets a test sets from outside.

``SESSION_AGENT_TEST_CLOCK`` names a JSON file ``{"wall": s, "boot": s,
"boot_id": "..."}`` whose offsets (seconds) are added to the real clocks,
re-read whenever it changes. A suspend of S seconds moves both clocks by
S; a jump of the wall clock moves only ``wall``; a reboot changes
``boot_id``. The entry point installs it when the variable is set
(``install_from_environment``); nothing of it runs otherwise.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

from agent import clock
from agent.environment import TEST_CLOCK_ENV

__all__ = ["SimulatedClock", "install_from_environment"]


class SimulatedClock(clock.SystemClock):
    def __init__(self, offsets_path: str) -> None:
        super().__init__()
        self._offsets_path = offsets_path
        self._offsets_seen: tuple[int, int] | None = None
        self._wall_offset = self._boot_offset = 0.0
        self._boot_id_override: str | None = None

    def now(self) -> datetime:
        self._read_offsets()
        return super().now() + timedelta(seconds=self._wall_offset)

    def boot(self) -> float:
        self._read_offsets()
        return super().boot() + self._boot_offset

    def boot_id(self) -> str:
        self._read_offsets()
        return self._boot_id_override or super().boot_id()

    def _read_offsets(self) -> None:
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


def install_from_environment() -> None:
    """Install the simulated clock if ``SESSION_AGENT_TEST_CLOCK`` names a file."""
    path = os.environ.get(TEST_CLOCK_ENV)
    if path:
        clock.install(SimulatedClock(path))

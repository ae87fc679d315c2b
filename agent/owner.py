"""Owner processes: telling whether the process a session is bound to lives.

A pid alone does not name a process: pids are reused, and a new process
can get the old pid within a fraction of a second. A process is named here
by ``(boot id, pid, start time in clock ticks since boot)``, read from
``/proc/<pid>/stat`` -- exact, unlike a start time in wall-clock seconds
(psutil's ``create_time`` is the boot time plus the ticks, and the boot time
it derives from the wall clock moves when the clock is set).

The daemon learns of an exit without polling (``agent.owner_watch``).
"""

from __future__ import annotations

from agent.clock import Clock
from agent.values import Value

__all__ = ["OwnerIdentity", "process_start_ticks"]

_GONE_STATES = frozenset("ZXx")  # zombie or dead: it has exited, whoever reaps it


def process_start_ticks(pid: int) -> int | None:
    """The start time of the *running* process ``pid`` in clock ticks since
    boot, or ``None`` if there is none (or only its zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read(4096)
    except OSError:  # no such process, or hidden from us (hidepid)
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0].decode("ascii", "replace") in _GONE_STATES:
        return None
    try:
        return int(fields[19])  # field 22, starttime
    except ValueError:
        return None


class OwnerIdentity(Value):
    """One process, for as long as it lives, and never another one."""

    __slots__ = ("boot_id", "pid", "start_ticks")

    pid: int
    start_ticks: int
    boot_id: str

    def __init__(self, pid: int, start_ticks: int, boot_id: str) -> None:
        self._set(pid=pid, start_ticks=start_ticks, boot_id=boot_id)

    @classmethod
    def of(cls, pid: int, clock: Clock) -> OwnerIdentity | None:
        """The running process ``pid`` now; ``None`` if there is none."""
        ticks = process_start_ticks(pid)
        return None if ticks is None else cls(pid, ticks, clock.boot_id())

    def alive(self, clock: Clock) -> bool:
        return (
            bool(self.boot_id)
            and self.boot_id == clock.boot_id()
            and (process_start_ticks(self.pid) == self.start_ticks)
        )

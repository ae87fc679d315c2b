"""``SignalInbox``: POSIX signals, taken in without ever blocking the daemon.

Signals coalesce: the handler only marks the signal pending (a dict insert,
no lock, no I/O) and the interpreter's wakeup fd wakes the loop, which
hands each pending signal on once. A storm of thousands therefore costs one
action each, never blocks, and never reports a full wakeup pipe
(``warn_on_full_buffer=False``: that report, written to stderr from the
signal machinery, could deadlock on stderr's lock). asyncio's
``add_signal_handler`` queues a callback per signal and warns on a full
pipe, which is what a storm turned into a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterable

__all__ = ["SignalInbox"]


class SignalInbox:
    """While open, ``signals`` are handed to ``receive`` on the event loop."""

    def __init__(self, signals: Iterable[signal.Signals], receive: Callable[[signal.Signals], None]) -> None:
        self._signals = tuple(signals)
        self._receive = receive
        self._pending: dict[int, None] = {}  # marked by the handler, in arrival order
        self._previous: dict[signal.Signals, object] = {}
        self._previous_fd = -1
        self._pipe: tuple[int, int] | None = None

    def open(self) -> None:
        loop = asyncio.get_running_loop()
        wake_read, wake_write = self._pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous = {sig: signal.signal(sig, self._mark) for sig in self._signals}
        self._previous_fd = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        loop.add_reader(wake_read, self._take)

    def close(self) -> None:
        if self._pipe is None:
            return
        wake_read, wake_write = self._pipe
        self._pipe = None
        asyncio.get_running_loop().remove_reader(wake_read)
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]  # what signal.signal gave back
        os.close(wake_read)
        os.close(wake_write)

    def _mark(self, signum: int, frame: object) -> None:
        """The signal handler: mark, nothing else."""
        self._pending[signum] = None

    def _take(self) -> None:
        """On the loop: empty the wakeup pipe, then hand on each pending signal once."""
        assert self._pipe is not None
        with contextlib.suppress(BlockingIOError):
            while os.read(self._pipe[0], 4096):
                pass
        # Swapped, not iterated in place: the handler may run between any two
        # bytecodes and would change the dict under the iteration. Marks made
        # after the swap land in the new dict and wake us again.
        pending, self._pending = self._pending, {}
        for signum in pending:
            self._receive(signal.Signals(signum))

"""The little of systemd the daemon needs, with the standard library only.

* ``Notifier`` sends ``sd_notify`` datagrams (``READY=1``, ``STATUS=``,
  ``WATCHDOG=1``, ``STOPPING=1``) to ``$NOTIFY_SOCKET``. Without that
  variable it does nothing, and it never raises or blocks: a lost
  notification must not stop the daemon (systemd then times the start out
  and says why), and a receiver that does not read must not hang it.
* ``listen_fds`` picks up sockets passed by socket activation
  (``$LISTEN_FDS``/``$LISTEN_PID``, fds from 3).
* ``under_journal`` tells whether stderr is connected to the journal, which
  adds its own timestamps.
"""

from __future__ import annotations

import logging
import os
import socket
import stat

__all__ = ["Notifier", "listen_fds", "under_journal"]

log = logging.getLogger(__name__)

_LISTEN_FDS_START = 3


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # A leading "@" names a socket in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram; ``False`` if it was not sent."""
        if not self._address:
            return False
        message = "\n".join(fields).encode("utf-8", "replace")
        try:
            flags = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            with socket.socket(socket.AF_UNIX, flags) as sock:
                sock.connect(self._address)
                sock.send(message)  # never blocks: a full queue drops this one
        except OSError as exc:
            log.debug("sd_notify to %r failed: %s", self._address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping")


def _watchdog_interval(env: os._Environ[str] | dict[str, str]) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or ``None``."""
    raw = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not raw or (pid and pid != str(os.getpid())):
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number", raw)
        return None
    return usec / 2 / 1e6 if usec > 0 else None


def listen_fds(environ: dict[str, str] | None = None) -> list[socket.socket]:
    """Sockets passed by systemd socket activation, meant for this process."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    sockets = []
    for fd in range(_LISTEN_FDS_START, _LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


def under_journal() -> bool:
    """Is stderr the journal? ``$JOURNAL_STREAM`` is ``DEV:INODE`` of that stream."""
    raw = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = raw.partition(":")
    try:
        st = os.fstat(2)
        return stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False

"""``HostChoice``: which machines' sessions a query covers -- this one (the
default), one named host (``--host NAME``) or all of them (``--all-hosts``).

On the wire (``list``, ``get``, ``report``) it is ``hosts``: absent for this
machine, ``"*"`` for all, or a host's name. In a query over several hosts,
this machine's sessions are named by the host it ships as (``[sync] host``
or its hostname), as the other machines see them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from agent.details import Host
from agent.errors import InvalidArgumentError, StorageError
from agent.session import Session
from agent.values import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent.store import SessionStore

__all__ = ["ALL_HOSTS", "HostChoice"]

ALL_HOSTS = "*"


class HostChoice(Value):
    """``name``: the host asked for (``None``: every host); ``own``: this
    machine's name."""

    __slots__ = ("name", "own")

    name: str | None
    own: str

    def __init__(self, name: str | None, own: str) -> None:
        self._set(name=name, own=own)

    @property
    def local(self) -> bool:
        """Whether this machine's sessions are covered."""
        return self.name is None or self.name == self.own

    @property
    def remote(self) -> bool:
        """Whether other machines' sessions are."""
        return self.name != self.own

    @property
    def remote_host(self) -> str | None:
        """The remote host asked for (``None``: all of them)."""
        return self.name

    def named(self, session: Session) -> Session:
        """A local session as a query over hosts shows it: its host named as
        this machine ships."""
        machine = session.details.host.machine_id if session.details.host else None
        return session.replace(details=session.details.replace(host=Host(self.own, machine)))

    @classmethod
    def resolve(cls, raw: object, store: SessionStore, data_dir: Path) -> HostChoice | None:
        """From the wire's ``hosts``; ``None``: this machine alone.
        ``InvalidArgumentError`` for a host nothing is known of."""
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw:
            raise InvalidArgumentError('hosts must be a host\'s name or "*"')
        own = own_name(store, data_dir)
        if raw == ALL_HOSTS:
            return cls(None, own)
        if raw == own:
            return cls(raw, own)
        known = store.remote.hosts()
        if raw not in known:
            listed = ", ".join([own, *known])
            raise InvalidArgumentError(
                f"no sessions of host {raw!r} have been taken in; the hosts known here: {listed} "
                "(see `session-agent sync status`)"
            )
        return cls(raw, own)

    def remote_sessions(
        self, store: SessionStore, before: str | None, errors: list[StorageError] | None
    ) -> Iterator[Session]:
        """The remote sessions covered, newest first, below the id ``before``."""
        if not self.remote:
            return
        for _, session in store.remote.newest_first(self.remote_host, before, errors):
            yield session


def own_name(store: SessionStore, data_dir: Path) -> str:
    """The name this machine ships as (its hostname when no sync is set)."""
    from agent.config import load_settings
    from agent.sync_settings import default_host_name

    sync = load_settings(data_dir).sync
    if sync is None:
        return default_host_name()
    from agent.sync_ship import own_host

    return own_host(store, sync)

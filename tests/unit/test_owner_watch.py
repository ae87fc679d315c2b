"""The daemon's watch on an owner process, on a real event loop with real
processes: the pidfd path, the polling fallback (pidfd_open made to fail
as on Linux < 5.3), and owners already gone when the watch begins."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from datetime import UTC, datetime

import pytest

from agent import owner_watch
from agent.clock import SystemClock
from agent.owner import OwnerIdentity
from agent.owner_watch import OwnerWatch


async def _watch_until_exit(proc: subprocess.Popen[bytes], *, kill_after: float) -> tuple[datetime, datetime]:
    """Watch ``proc``, kill it, and return (kill time, time the watch saw it)."""
    clock = SystemClock()
    exited = asyncio.Event()
    watch = OwnerWatch(clock, exited.set)
    identity = OwnerIdentity.of(proc.pid, clock)
    assert identity is not None
    watch.watch(identity)
    await asyncio.sleep(kill_after)
    assert not exited.is_set(), "reported an exit while the owner lived"
    assert watch.exited_at(identity) is None
    killed = datetime.now(UTC)
    proc.kill()
    await asyncio.wait_for(exited.wait(), 10)
    seen = watch.exited_at(identity)
    assert seen is not None
    watch.stop()
    return killed, seen


def test_a_pidfd_reports_the_exit_at_once(owner: subprocess.Popen[bytes]) -> None:
    killed, seen = asyncio.run(_watch_until_exit(owner, kill_after=0.1))
    assert killed <= seen
    assert (seen - killed).total_seconds() < 1


def test_without_pidfds_the_watch_polls(
    monkeypatch: pytest.MonkeyPatch, owner: subprocess.Popen[bytes]
) -> None:
    def no_pidfd(pid: int) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    monkeypatch.setattr(owner_watch, "FALLBACK_POLL", 0.05)
    killed, seen = asyncio.run(_watch_until_exit(owner, kill_after=0.2))
    assert killed <= seen


def test_an_owner_gone_before_the_watch_begins_is_reported(owner: subprocess.Popen[bytes]) -> None:
    async def scenario() -> None:
        clock = SystemClock()
        identity = OwnerIdentity.of(owner.pid, clock)
        assert identity is not None
        owner.kill()
        owner.wait()  # reaped: the pid names no one (or, later, someone else)
        exited = asyncio.Event()
        watch = OwnerWatch(clock, exited.set)
        watch.watch(identity)
        await asyncio.wait_for(exited.wait(), 5)
        assert watch.exited_at(identity) is not None
        watch.watch(None)
        assert watch.identity is None

    asyncio.run(scenario())


def test_a_pidfd_numbered_past_1024_is_read(
    monkeypatch: pytest.MonkeyPatch, owner: subprocess.Popen[bytes]
) -> None:
    """A daemon with many subscribers holds file descriptors past 1,024,
    where select() refuses to look (found by the crash run)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard open-file limit ({hard}) is below 2,048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    original_open = os.pidfd_open

    def numbered_high(pid: int, flags: int = 0) -> int:
        fd = original_open(pid, flags)
        moved = os.dup2(fd, 1600)
        os.close(fd)
        return moved

    monkeypatch.setattr(os, "pidfd_open", numbered_high)
    try:
        killed, seen = asyncio.run(_watch_until_exit(owner, kill_after=0.1))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert killed <= seen

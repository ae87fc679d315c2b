"""No edit is lost: a tool that writes `start`, waits for the id, writes `end`
and waits for the file to vanish, against a reconciler running flat out in
another thread (as the daemon's watcher will), a thousand times in a row."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import SessionManager, SessionStatus

DEADLINE = 5.0


def _write_atomically(path: Path, content: bytes) -> None:
    temp = path.with_name(f"tool.{os.getpid()}.tmp")
    temp.write_bytes(content)
    temp.replace(path)


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > give_up:
            raise AssertionError(f"waited {DEADLINE}s for {what}")
        time.sleep(0)  # yield to the reconciler thread; this is a poll, not a wait


def _names_a_session(path: Path) -> bool:
    try:
        uuid.UUID(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    return True


@pytest.mark.parametrize("rounds", [1000])
def test_start_end_loop_against_a_running_reconciler(manager: SessionManager, rounds: int) -> None:
    stop = threading.Event()
    failures: list[BaseException] = []

    def reconcile_flat_out() -> None:
        try:
            while not stop.is_set():
                manager.reconcile()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    reconciler = threading.Thread(target=reconcile_flat_out)
    reconciler.start()
    path = manager.current_file
    try:
        for i in range(rounds):
            _write_atomically(path, b"start\n")
            _wait_for(lambda: _names_a_session(path), f"the id (round {i})")
            _write_atomically(path, b"end\n")
            _wait_for(lambda: not path.exists(), f"the file to vanish (round {i})")
    finally:
        stop.set()
        reconciler.join(timeout=10)
    assert failures == []
    sessions = manager.list_sessions()
    assert len(sessions) == rounds
    assert {s.status for s in sessions} == {SessionStatus.COMPLETED}

"""Helpers for tests that need a second real process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOLD_STORE = """
import sys
from agent import close_db, open_db
db = open_db(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
close_db(db)
"""

HOLD_INSTANCE_LOCK = """
import sys
from pathlib import Path
from agent.instance import InstanceLock
lock = InstanceLock.acquire(Path(sys.argv[1]))
print("holding", flush=True)
sys.stdin.readline()
lock.release()
"""


@contextmanager
def held_by_another_process(script: str, path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real second process running ``script`` on ``path``: it takes a lock,
    says "holding", and lets go when the block ends."""
    with subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "holding"
            yield proc
        finally:
            proc.stdin.close()
            proc.wait(timeout=10)


@contextmanager
def store_held_by_another_process(db_path: Path) -> Iterator[subprocess.Popen[str]]:
    with held_by_another_process(HOLD_STORE, db_path) as proc:
        yield proc

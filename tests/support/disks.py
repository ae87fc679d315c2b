"""Real file-system faults (we run as root): a small tmpfs that really
fills, and a bind mount that can be taken away and put back."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["fill", "mount_bind", "small_tmpfs", "unmount"]


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found is not None, f"{name} is not installed"
    return found


@contextmanager
def small_tmpfs(size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` of its own, unmounted after the block."""
    mountpoint = Path(tempfile.mkdtemp(prefix="sa-full-", dir="/tmp"))
    options = f"size={size},mode=0700"
    subprocess.run([_tool("mount"), "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run([_tool("umount"), "-l", str(mountpoint)], check=False)
        mountpoint.rmdir()


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the filler is removed to free it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # then the last scraps
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def mount_bind(source: Path, target: Path) -> None:
    subprocess.run([_tool("mount"), "--bind", str(source), str(target)], check=True)


def unmount(target: Path, *, check: bool = True) -> None:
    subprocess.run([_tool("umount"), str(target)], check=check, capture_output=not check)

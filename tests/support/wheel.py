"""Running pip and the installed program for the tests of what users install."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["PIP_TIMEOUT", "REPO", "run_ok", "run_program", "source_files"]

REPO = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 600


def run_program(
    argv: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=PIP_TIMEOUT, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def run_ok(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    done = run_program(argv, env, cwd)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def source_files() -> list[str]:
    """What a clone holds: the files git tracks and the new ones it does not
    ignore (a stale build/ or egg-info must not hide a packaging mistake)."""
    git = shutil.which("git")
    assert git is not None
    listed = subprocess.run(
        [git, "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    return [name for name in listed.stdout.decode().split("\0") if name and (REPO / name).is_file()]

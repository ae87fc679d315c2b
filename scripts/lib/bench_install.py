"""The program as users install it: the wheel built from this tree, in a
virtualenv of its own (``.bench/wheel-venv``), rebuilt on every run so it
is the code being measured, not an editable checkout (whose import hook
alone costs every command ~12 ms at start-up).

``SESSION_AGENT_BENCH_INSTALLED`` names one installed already (the test
suite's own install of this tree's wheel, for its smoke run of the bench)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".bench" / "wheel-venv"
PIP_TIMEOUT = 600


def _tracked_files() -> list[str]:
    git = shutil.which("git")
    if git is None:
        raise RuntimeError("git is needed to tell the project's files from build leftovers")
    listed = subprocess.run(
        [git, "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return [n for n in listed.stdout.decode().split("\0") if n and (ROOT / n).is_file()]


def installed_program() -> Path:
    """``session-agent`` from a fresh install of the wheel of this tree."""
    given = os.environ.get("SESSION_AGENT_BENCH_INSTALLED")
    if given:
        return Path(given)
    with tempfile.TemporaryDirectory(prefix="sa-wheel-") as scratch:
        clone, dist = Path(scratch, "clone"), Path(scratch, "dist")
        for name in _tracked_files():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
        subprocess.run(
            [*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(clone)],
            check=True,
            timeout=PIP_TIMEOUT,
        )
        (wheel,) = dist.glob("session_agent-*.whl")
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(VENV)], check=True)
        subprocess.run(
            [
                *pip,
                "--python",
                str(VENV / "bin" / "python"),
                "install",
                "--quiet",
                "--force-reinstall",
                "--constraint",
                str(ROOT / "constraints.txt"),
                str(wheel),
            ],
            check=True,
            timeout=PIP_TIMEOUT,
        )
    return VENV / "bin" / "session-agent"

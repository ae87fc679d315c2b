"""The installed program, for the tests that run what users install
(``test_install.py``) and the bench's smoke test: the wheel built from this
tree once per worker (the tests that use it share one ``xdist_group``,
``install``, so one worker builds it)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from ..support.wheel import REPO, run_ok, source_files

CONSTRAINTS = REPO / "constraints.txt"


@pytest.fixture(scope="session")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tree as a fresh clone has it."""
    target = tmp_path_factory.mktemp("clone")
    for name in source_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)
    return target


@pytest.fixture(scope="session")
def wheel(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run_ok(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(clone)],
        dict(os.environ),
    )
    (built,) = out.glob("session_agent-*.whl")
    return built


@pytest.fixture(scope="session")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the wheel and its dependencies, nothing else."""
    root = tmp_path_factory.mktemp("venv")
    run_ok([sys.executable, "-m", "venv", "--without-pip", str(root)], dict(os.environ))
    run_ok(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(root / "bin/python"),
            "install",
            "--quiet",
            "--constraint",
            str(CONSTRAINTS),
            str(wheel),
        ],
        dict(os.environ),
    )
    return root

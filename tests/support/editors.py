"""The editors the integrations are tested with, headless, each loading the
shipped integration and a scenario of the test's own
(``tests/integrations/editor_scenarios``): after start-up it waits for
``go-save``, saves a file, reports ``saved``, waits for ``go-quit`` and quits."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from .hosts import program

__all__ = ["EDITORS", "INTEGRATIONS", "SCENARIOS", "run_editor"]

INTEGRATIONS = Path(__file__).resolve().parents[2] / "agent" / "integrations"
SCENARIOS = Path(__file__).resolve().parents[1] / "integrations" / "editor_scenarios"


EDITORS: dict[str, Callable[[], list[str]]] = {
    "nvim": lambda: [
        program("nvim"), "--headless", "-u", "NONE", "-i", "NONE", "-n",
        "-c", f"luafile {INTEGRATIONS / 'nvim/session-agent.lua'}",
        "-c", f"luafile {SCENARIOS / 'scenario.lua'}",
    ],
    "vim": lambda: [
        program("vim.nox", "vim"), "-Nu", "NONE", "-i", "NONE", "-n", "-es",
        "-S", str(INTEGRATIONS / "vim/session-agent.vim"),
        "-S", str(SCENARIOS / "scenario.vim"),
    ],
    "emacs": lambda: [
        program("emacs-nox", "emacs"), "--batch", "-Q",
        "-l", str(INTEGRATIONS / "emacs/session-agent.el"),
        "-l", str(SCENARIOS / "scenario.el"),
    ],
}  # fmt: skip


def run_editor(editor: str, env: dict[str, str], scenario: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        EDITORS[editor](),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "SCENARIO_DIR": str(scenario)},
        cwd=scenario,
    )

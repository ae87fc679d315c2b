"""CLI wall time: session-agent through the daemon and embedded, against
the floor and the peers, measured round-robin in the same run so that the
machine's noise falls on all of them alike.

* floor: ``python -c "import click, json, socket"``, the same interpreter;
* watson (PyPI ``td-watson``), installed into a throw-away venv of its own;
* timew (Debian ``timewarrior``) when it is on the PATH. It stores times to
  the second and refuses a stop in the same second as its start, so its
  "stop" here is ``timew cancel`` (the same process and database work).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench_env import SESSION_AGENT, Home, daemon, private_home, summary, wall

ROOT = Path(__file__).resolve().parents[2]
WATSON_VENV = ROOT / ".bench" / "watson-venv"
FLOOR = [sys.executable, "-c", "import click, json, socket"]


@dataclass
class Case:
    name: str
    run: Callable[[], float]
    samples: list[float] = field(default_factory=list)


@dataclass
class CliResults:
    figures: dict[str, dict[str, float]]
    skipped: dict[str, str]


def _watson() -> Path | None:
    """The watson executable, installing it first if needed; ``None`` if that fails."""
    exe = WATSON_VENV / "bin" / "watson"
    if exe.exists():
        return exe
    try:
        venv.create(WATSON_VENV, with_pip=True, clear=True)
        subprocess.run(
            [
                str(WATSON_VENV / "bin" / "pip"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "td-watson",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError):
        shutil.rmtree(WATSON_VENV, ignore_errors=True)
        return None
    return exe if exe.exists() else None


@contextlib.contextmanager
def _cases(rounds: int, with_peers: bool, skipped: dict[str, str]) -> Iterator[list[Case]]:
    with private_home("cli-daemon") as home, private_home("cli-embedded") as embedded, daemon(home):
        sa = str(SESSION_AGENT)
        cases = [
            Case("floor", lambda: wall(FLOOR, home.env)),
            Case("daemon start", lambda: wall([sa, "start"], home.env)),
            Case("daemon current", lambda: wall([sa, "current"], home.env)),
            Case("daemon end", lambda: wall([sa, "end"], home.env)),
            Case("embedded start", lambda: wall([sa, "start"], embedded.env)),
            Case("embedded current", lambda: wall([sa, "current"], embedded.env)),
            Case("embedded end", lambda: wall([sa, "end"], embedded.env)),
        ]
        cases += _peer_cases(home, with_peers, skipped)
        yield cases


def _peer_cases(home: Home, with_peers: bool, skipped: dict[str, str]) -> list[Case]:
    if not with_peers:
        skipped["watson"] = skipped["timew"] = "not run with --quick"
        return []
    cases = []
    watson = _watson()
    if watson is None:
        skipped["watson"] = "could not install td-watson into a venv (no package index?)"
    else:
        env = {**home.env, "WATSON_DIR": str(home.root / "watson")}
        cases += [
            Case("watson start", lambda: wall([str(watson), "start", "bench"], env)),
            Case("watson stop", lambda: wall([str(watson), "stop"], env)),
        ]
    timew = shutil.which("timew")
    if timew is None:
        skipped["timew"] = "timew is not installed (Debian package timewarrior)"
    else:
        env = {**home.env, "TIMEWARRIORDB": str(home.root / "timew")}
        (home.root / "timew").mkdir()
        subprocess.run([timew], env=env, input=b"yes\n", capture_output=True, check=False)  # creates its db
        cases += [
            Case("timew start", lambda: wall([timew, "start", "bench"], env)),
            Case("timew stop", lambda: wall([timew, "cancel"], env)),
        ]
    return cases


def measure(rounds: int, *, with_peers: bool) -> CliResults:
    skipped: dict[str, str] = {}
    with _cases(rounds, with_peers, skipped) as cases:
        for case in cases:  # warm the page cache and the .pyc files
            case.run()
        for _ in range(rounds):
            for case in cases:
                case.samples.append(case.run())
    figures = {case.name: summary(case.samples) for case in cases}
    floor = figures["floor"]["median"]
    for stats in figures.values():
        stats["x_floor"] = round(stats["median"] / floor, 2)
    return CliResults(figures, skipped)

"""CLI wall time: session-agent through the daemon and embedded, against
the floors and the peers, measured round-robin in the same run so that the
machine's noise falls on all of them alike.

* "installed": the wheel of this tree in a virtualenv of its own, as users
  run it (``bench_install``); "checkout": the editable install in .venv;
* floors: ``python -I -c pass`` (the bare interpreter, for the commands
  through the daemon) and ``python -c "import click, json, socket"`` (for
  the embedded ones, which must open the store), the same interpreter;
* watson (PyPI ``td-watson``), installed into a throw-away venv of its own;
* timew (Debian ``timewarrior``) when it is on the PATH. It stores times to
  the second and refuses a stop in the same second as its start, so its
  "stop" here is ``timew cancel`` (the same process and database work).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench_env import SESSION_AGENT, Home, daemon, private_home, summary, wall
from bench_install import installed_program

ROOT = Path(__file__).resolve().parents[2]
WATSON_VENV = ROOT / ".bench" / "watson-venv"
BARE_FLOOR = "floor: python -I -c pass"
CLICK_FLOOR = "floor: python -c 'import click, json, socket'"
DETAILS = (
    "--tool", "claude-code", "--external-id", "0b6c6f3e-1d2a-4c55-9f0e-7a1b2c3d4e5f",
    "--project", "webshop", "--tag", "ai", "--tag", "review", "--title", "Checkout flow",
)  # fmt: skip
# Which floor each kind of case is measured against.
FLOORS = {"daemon": BARE_FLOOR, "embedded": CLICK_FLOOR, "watson": CLICK_FLOOR, "timew": BARE_FLOOR}


@dataclass
class Case:
    name: str
    run: Callable[[], float]
    samples: list[float] = field(default_factory=list)


@dataclass
class CliResults:
    figures: dict[str, dict[str, float]]
    skipped: dict[str, str]


def watson() -> Path | None:
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
    installed = installed_program()
    python = str(installed.with_name("python"))
    with private_home("cli-daemon") as home, private_home("cli-embedded") as embedded, daemon(home):
        cases = [
            Case(BARE_FLOOR, lambda: wall([python, "-I", "-c", "pass"], home.env)),
            Case(CLICK_FLOOR, lambda: wall([python, "-c", "import click, json, socket"], home.env)),
        ]
        for label, program in (("installed", str(installed)), ("checkout", str(SESSION_AGENT))):
            for mode, where in (("daemon", home), ("embedded", embedded)):
                for command in ("start", "current", "end"):
                    cases.append(Case(f"{label} {mode} {command}", _runner([program, command], where.env)))
        # A start as a hook gives it: what the session is (and the cwd, a git checkout, by default).
        described = [str(installed), "start", *DETAILS]
        cases += [
            Case("installed daemon start, described", _runner(described, home.env)),
            Case("installed daemon end, described", _runner([str(installed), "end"], home.env)),
        ]
        cases += _peer_cases(home, with_peers, skipped)
        yield cases


def _runner(argv: list[str], env: dict[str, str]) -> Callable[[], float]:
    return lambda: wall(argv, env)


def _peer_cases(home: Home, with_peers: bool, skipped: dict[str, str]) -> list[Case]:
    if not with_peers:
        skipped["watson"] = skipped["timew"] = "not run with --quick"
        return []
    cases = []
    watson_exe = watson()
    if watson_exe is None:
        skipped["watson"] = "could not install td-watson into a venv (no package index?)"
    else:
        env = {**home.env, "WATSON_DIR": str(home.root / "watson")}
        cases += [
            Case("watson start", lambda: wall([str(watson_exe), "start", "bench"], env)),
            Case("watson stop", lambda: wall([str(watson_exe), "stop"], env)),
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
    for name, stats in figures.items():
        kind = next((k for k in FLOORS if f" {k} " in f" {name} "), None)
        floor = figures[FLOORS[kind]]["median"] if kind else figures[BARE_FLOOR]["median"]
        stats["x_floor"] = round(stats["median"] / floor, 2)
    return CliResults(figures, skipped)

"""Shared fixtures: a private data dir, a real manager, and the real CLI.

What tests import (the ``Cli`` type, ``start_session``, ...) is in
``tests/support``; only fixtures and pytest hooks live here."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent import SessionManager

from .support.commands import CLI_TIMEOUT, SESSION_AGENT, SLEEP, Cli, clean_env, open_manager

_REPORT: list[str] = []
# Under pytest-xdist each worker is a process of its own: the controller
# chooses the seed and a directory, and the workers leave their figures
# there for the controller's summary.
_FIGURES_ENV = "SESSION_AGENT_TEST_FIGURES"
_SEED_ENV = "SESSION_AGENT_TEST_SEED"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker: the controller has chosen
        return
    os.environ[_FIGURES_ENV] = tempfile.mkdtemp(prefix="sa-figures-")
    chosen = config.getoption("--seed")
    os.environ[_SEED_ENV] = str(chosen if chosen is not None else int.from_bytes(os.urandom(4), "big"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the slow stress tests")
    parser.addoption("--seed", type=int, default=None, help="seed of the randomised reliability runs")
    parser.addoption(
        "--crashes", type=int, default=1000, help="crashes in the full crash run (with --run-slow)"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The reliability suites' figures (crashes, operations, connections...)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker: its lines are in the figures dir
        return
    lines = list(_REPORT)
    figures = Path(os.environ.get(_FIGURES_ENV, "/nonexistent"))
    for part in sorted(figures.glob("*")):
        lines += part.read_text().splitlines()
    shutil.rmtree(figures, ignore_errors=True)
    if lines:
        terminalreporter.section("reliability figures")
        for line in dict.fromkeys(lines):  # the seed line comes from every worker
            terminalreporter.write_line(line)


def _add_figure(line: str) -> None:
    _REPORT.append(line)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None:  # the controller prints the summary: leave it the line
        with open(Path(os.environ[_FIGURES_ENV], worker), "a", encoding="utf-8") as figures:
            figures.write(line + "\n")


@pytest.fixture
def report() -> Callable[[str], None]:
    """Add a line to the figures printed at the end of the run."""
    return _add_figure


@pytest.fixture(scope="session")
def seed() -> int:
    """``--seed``, or a fresh one; printed so that a failure can be replayed."""
    value = int(os.environ[_SEED_ENV])  # the controller's choice, the same in every worker
    _add_figure(f"seed {value} (replay with --seed {value})")
    return int(value)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow stress run: give --run-slow to include it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """A short, private runtime dir: a socket path must fit in 107 bytes,
    and pytest's tmp_path can be longer than that by itself."""
    path = Path(tempfile.mkdtemp(prefix="sa-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def runtimes() -> Iterator[tuple[Path, Path]]:
    """Two short runtime dirs, for two daemons (two machines) in one test."""
    base = Path(tempfile.mkdtemp(prefix="sa-", dir="/tmp"))
    yield base / "a", base / "b"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def owner() -> Iterator[subprocess.Popen[bytes]]:
    """A live process to bind sessions to; killed (if still alive) after the test."""
    proc = subprocess.Popen([SLEEP, "600"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def manager(data_dir: Path) -> Iterator[SessionManager]:
    with open_manager(data_dir) as m:
        yield m


@pytest.fixture
def cli(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> Cli:
    """Run the installed ``session-agent`` on ``data_dir`` (and ``runtime_dir``,
    where a daemon of the test listens); never raises on exit codes."""

    def run(
        *args: str, env: dict[str, str] | None = None, data: Path | None = data_dir
    ) -> subprocess.CompletedProcess[str]:
        full_env = clean_env(tmp_path, SESSION_AGENT_RUNTIME_DIR=str(runtime_dir), **(env or {}))
        prefix = ["--data-dir", str(data)] if data is not None else []
        result = subprocess.run(
            [str(SESSION_AGENT), *prefix, *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return run

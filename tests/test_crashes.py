"""Crash suite: the real daemon and the embedded CLI killed at every fault
point and at random moments, restarted, and checked (see ``crash_harness``).

The default run crashes at each point once in the daemon and once in an
embedded command, plus random kills; ``--run-slow`` adds the full run of
``--crashes`` (default 1,000) crashes, seeded by ``--seed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.faults import POINTS

from .crash_harness import crash_run

pytestmark = pytest.mark.reliability

Report = Callable[[str], None]


@pytest.mark.parametrize("point", POINTS)
def test_a_daemon_crash_at_each_point_loses_nothing(
    tmp_path: Path, runtime_dir: Path, seed: int, point: str
) -> None:
    with crash_run(tmp_path, runtime_dir, seed + POINTS.index(point)) as run:
        for _ in range(2):
            run.cycle(f"point:{point}")
        run.final_check()
    assert run.crashes == 2


@pytest.mark.parametrize("point", POINTS)
def test_an_embedded_crash_at_each_point_loses_nothing(
    tmp_path: Path, runtime_dir: Path, seed: int, point: str
) -> None:
    with crash_run(tmp_path, runtime_dir, seed + 100 + POINTS.index(point)) as run:
        for _ in range(2):
            run.cycle(f"embedded:{point}")
        run.final_check()


def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path, runtime_dir: Path, seed: int) -> None:
    with crash_run(tmp_path, runtime_dir, seed + 200) as run:
        for _ in range(12):
            run.cycle("kill")
        run.cycle("embedded-kill")
        run.final_check()
    assert run.history.acknowledged > 0


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_full_crash_run(
    tmp_path: Path, runtime_dir: Path, seed: int, report: Report, pytestconfig: pytest.Config
) -> None:
    wanted = pytestconfig.getoption("--crashes")
    began = time.monotonic()
    with crash_run(tmp_path, runtime_dir, seed) as run:
        while run.crashes < wanted:
            run.cycle(run.random_kind())
        run.final_check()
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(run.by_kind.items()))
    report(
        f"crash run: {run.crashes} crashes ({kinds}), {run.history.acknowledged} operations acknowledged, "
        f"{len(run.history.acked_starts)} sessions started, 0 invariant violations, "
        f"{time.monotonic() - began:.0f} s, seed {seed}"
    )

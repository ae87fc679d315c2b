"""Crash suite: the real daemon and the embedded CLI killed at every fault
point and at random moments, restarted, and checked (see ``crash_harness``).

The default run crashes at each point once in the daemon and once in an
embedded command, plus random kills; ``--run-slow`` adds the full run of
``--crashes`` (default 1,000) crashes, seeded by ``--seed``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import SessionError
from agent.faults import POINTS

from ..support.crash_harness import all_sessions, crash_run

pytestmark = pytest.mark.reliability

Report = Callable[[str], None]


@pytest.fixture
def cycles(request: pytest.FixtureRequest) -> int:
    """Crashes per point: one in the default suite (its wall time on two
    cores), two with --run-slow (each at a pass and an action of its own)."""
    return 2 if request.config.getoption("--run-slow") else 1


@pytest.mark.parametrize("point", POINTS)
def test_a_daemon_crash_at_each_point_loses_nothing(
    tmp_path: Path, runtime_dir: Path, seed: int, point: str, cycles: int
) -> None:
    # Pauses (for idle timeouts to expire) serve only the point where a rule ends a session.
    pauses = point == "manager.end_by_rule"
    with crash_run(tmp_path, runtime_dir, seed + POINTS.index(point), pauses=pauses) as run:
        for _ in range(cycles):
            run.cycle(f"point:{point}")
        run.final_check()
    assert run.crashes == cycles


@pytest.mark.parametrize("point", POINTS)
def test_an_embedded_crash_at_each_point_loses_nothing(
    tmp_path: Path, runtime_dir: Path, seed: int, point: str, cycles: int
) -> None:
    with crash_run(tmp_path, runtime_dir, seed + 100 + POINTS.index(point)) as run:
        for _ in range(cycles):
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
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(run.history.reasons.items()))
    report(
        f"crash run: {run.crashes} crashes ({kinds}), {run.history.acknowledged} operations acknowledged, "
        f"{len(run.history.acked_starts)} sessions started ({reasons}), {run.events} events (each run by "
        "a hook at least once and in order, none missed by a subscriber resuming after each crash, the log "
        "agreeing with the store), 0 invariant violations, "
        f"{time.monotonic() - began:.0f} s, seed {seed}"
    )


@pytest.mark.parametrize("point", ["store.commit", "store.after_commit", "manager.after_store"])
def test_a_crash_in_the_middle_of_a_replace_leaves_one_or_the_other(
    tmp_path: Path, runtime_dir: Path, seed: int, point: str
) -> None:
    """The replaced session ends in the batch that starts its successor:
    after a crash there, either both happened or neither."""
    with crash_run(tmp_path, runtime_dir, seed) as run:
        daemon = run.start_daemon()
        client = run.connected()
        first = client.request("start")
        run.control.write_text(f"{point}=crash@1")
        with pytest.raises((SessionError, OSError)):
            client.request("start", replace=True)
        client.close()
        daemon.proc.wait(timeout=10)
        daemon.close()
        run.final_check()
        daemon = run.start_daemon()
        client = run.connected()
        try:
            sessions = all_sessions(client)
        finally:
            client.close()
            daemon.close()
    old = sessions[first["id"]]
    if old["status"] == "active":
        assert len(sessions) == 1
    else:
        assert old["end_reason"] == "replaced"
        (new,) = (s for s in sessions.values() if s["id"] != first["id"])
        assert (new["status"], new["started_at"]) == ("active", old["ended_at"])


@pytest.mark.parametrize("rule", ["owner", "idle"])
def test_a_crash_as_a_rule_ends_a_session_is_repaired_at_restart(
    tmp_path: Path, runtime_dir: Path, seed: int, rule: str
) -> None:
    with crash_run(tmp_path, runtime_dir, seed) as run:
        daemon = run.start_daemon()
        client = run.connected()
        run.control.write_text("manager.end_by_rule=kill")
        args = {"owner_pid": run.owner()} if rule == "owner" else {"idle_timeout": 1}
        session = client.request("start", **args)
        client.close()
        run.history.started(session)
        if rule == "owner":
            run.kill_owner(session["owner_pid"])
        daemon.proc.wait(timeout=15)  # the rule fired, and the daemon died recording it
        assert daemon.proc.returncode == -signal.SIGKILL
        daemon.close()
        run.final_check()  # restarted: the rule applied at start-up, invariants hold
        assert run.history.reasons.get("owner_exited" if rule == "owner" else "idle") == 1

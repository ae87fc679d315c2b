"""``scripts/bench --quick`` as a smoke test: it must run and report every
figure. No timing is judged here; the bench itself compares with the goals.

Marked slow (``scripts/test --run-slow``): 25-35 s of a worker, the most of
any default test, against a budget the default suite must keep on 2 cores;
the full bench runs it all at every release's figures."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ..support.commands import clean_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.xdist_group("install")  # beside the tests that install the wheel: it uses theirs
def test_the_quick_bench_runs_and_reports_every_figure(tmp_path: Path, venv: Path) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "bench"), "--quick", "--json"],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path, SESSION_AGENT_BENCH_INSTALLED=str(venv / "bin" / "session-agent")),
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    measured = {
        f"{install} {mode} {command}"
        for install in ("installed", "checkout")
        for mode in ("daemon", "embedded")
        for command in ("start", "current", "end")
    }
    measured |= {"installed daemon start, described", "installed daemon end, described"}
    floors = {"floor: python -I -c pass", "floor: python -c 'import click, json, socket'"}
    assert set(report["cli_ms"]) >= measured | floors
    hooks = {f"{editor} {kind}" for editor in ("nvim", "vim", "emacs") for kind in ("start", "heartbeat")}
    hooks |= {"claude-code SessionStart", "claude-code SessionEnd", "floor: sh -c 'exit 0'"}
    hooks |= {"gemini-cli SessionStart", "gemini-cli SessionEnd", "codex SessionStart", "codex SessionEnd"}
    hooks |= {"copilot-cli sessionStart", "copilot-cli sessionEnd", "cursor sessionStart"}
    hooks |= {"cursor sessionEnd"}
    hooks |= {"kakoune start (KakBegin)", "kakoune heartbeat (FocusIn, BufWritePost)", "kakoune end (KakEnd)"}
    editors = ("nvim", "vim", "emacs", "kakoune")
    heartbeats = {n for n in report["hooks"]["ms"] if " heartbeat" in n and n.split()[0] not in editors}
    assert set(report["hooks"]["ms"]) - heartbeats == hooks
    # Claude Code's (the id from the environment, and from the JSON); Gemini's, Codex's, Copilot's,
    # Cursor's two (a prompt while a session runs, and the others)
    assert len(heartbeats) == 7
    assert report["hooks"]["skipped"] == {}
    assert all(figure["median"] > 0 and figure["n"] == 3 for figure in report["hooks"]["ms"].values())
    assert all(figure["median"] > 0 for figure in report["cli_ms"].values())
    assert report["skipped"] == {"watson": "not run with --quick", "timew": "not run with --quick"}
    assert report["daemon"]["edit_to_durable_ms"]["n"] == 12
    assert [h["sessions"] for h in report["history"]] == [1_000, 5_000]
    assert report["throughput"]["pairs_per_second"] > 0
    assert all(h["report_7d_ms"]["median"] > 0 and h["export"]["peak_rss_mb"] > 0 for h in report["history"])
    assert report["reports"]["sessions"] == 1_000
    events = report["events"]
    assert set(events["commit_to_subscriber_ms"]) == {"1 subscriber", "100 subscribers"}
    assert events["commit_to_subscriber_ms"]["1 subscriber"]["n"] == 11  # the start and 10 updates
    assert events["commit_to_subscriber_ms"]["100 subscribers"]["n"] == 1_100  # every subscriber timed
    assert events["event_to_hook_started_ms"]["n"] == 6
    assert events["idle_100_subscribers"]["subscribers"] == 100
    assert set(report["reports"]["ms"]) >= {"session-agent report --since 2000-01-01 --by project"}
    assert len(report["goals"]) >= 12
    assert all(isinstance(goal["met"], bool) for goal in report["goals"])

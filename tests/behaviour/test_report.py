"""``report``: where the time went, exact on a known history -- clipped to
the range, split at local midnights (daylight-saving days included), each
grouping and filter, sessions still running -- as a table, JSON and CSV,
embedded and through the daemon."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ..support.commands import SESSION_AGENT, Cli, backdate_active, clean_env, open_manager
from ..support.daemon_process import run_daemon
from ..support.history import BERLIN, at, ended, store_sessions

HOUR = 3600.0


def _report(cli: Cli, *args: str, tz: str = "Europe/Berlin") -> dict[str, Any]:
    done = cli("report", *args, "--json", env={"TZ": tz})
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _by_key(groups: list[dict[str, Any]]) -> dict[str, tuple[float, float, int]]:
    return {g["key"]: (g["wall_seconds"], g["active_seconds"], g["sessions"]) for g in groups}


def test_a_session_across_midnight_counts_on_both_days(data_dir: Path, cli: Cli) -> None:
    store_sessions(
        data_dir,
        ended(
            "2026-11-23T23:00",
            "2026-11-24T01:30",
            project="webshop",
            active=[("2026-11-23T23:00", "2026-11-23T23:40"), ("2026-11-24T00:50", "2026-11-24T01:30")],
        ),
    )
    report = _report(cli, "--since", "2026-11-23", "--until", "2026-11-25", "--by", "day,project")
    days = {g["key"]: g for g in report["groups"]}
    assert _by_key([days["2026-11-23"]]) == {"2026-11-23": (HOUR, 40 * 60, 1)}
    assert _by_key([days["2026-11-24"]]) == {"2026-11-24": (1.5 * HOUR, 40 * 60, 1)}
    assert _by_key(days["2026-11-24"]["groups"]) == {"webshop": (1.5 * HOUR, 40 * 60, 1)}
    total = report["total"]
    assert (total["wall_seconds"], total["active_seconds"], total["sessions"]) == (2.5 * HOUR, 80 * 60, 1)


@pytest.mark.parametrize(
    ("day", "hours"),
    [("2026-03-29", 23), ("2026-10-25", 25), ("2026-11-24", 24)],
    ids=["spring-forward", "fall-back", "plain-day"],
)
def test_a_day_with_a_daylight_saving_change_has_its_own_length(
    data_dir: Path, cli: Cli, day: str, hours: int
) -> None:
    """A session from 22:00 the day before to 02:00 the day after: the day
    between holds all of its local hours, 23 or 25 on a change."""
    before = (datetime.fromisoformat(day) - timedelta(days=1)).date().isoformat()
    after = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    store_sessions(data_dir, ended(f"{before}T22:00", f"{after}T02:00", project="p"))
    report = _report(
        cli,
        "--since",
        before,
        "--until",
        (datetime.fromisoformat(after) + timedelta(days=1)).date().isoformat(),
        "--by",
        "day",
    )
    assert _by_key(report["groups"]) == {
        before: (2 * HOUR, 0.0, 1),
        day: (hours * HOUR, 0.0, 1),
        after: (2 * HOUR, 0.0, 1),
    }


def test_time_is_clipped_exactly_to_the_range(data_dir: Path, cli: Cli) -> None:
    store_sessions(
        data_dir,
        ended(
            "2026-11-24T08:00",
            "2026-11-24T12:00",
            project="a",
            active=[("2026-11-24T08:00", "2026-11-24T11:00")],
        ),
        ended("2026-11-24T13:00", "2026-11-24T14:00", project="b"),  # outside
        ended("2026-11-24T06:00", "2026-11-24T07:00", project="c"),  # ends before the range
        ended("2026-11-24T07:00", "2026-11-24T09:00", project="d"),  # ends inside it
    )
    report = _report(cli, "--since", "2026-11-24T09:30", "--until", "2026-11-24T12:30")
    assert _by_key(report["groups"]) == {"a": (2.5 * HOUR, 1.5 * HOUR, 1)}
    # A session ending exactly where the range starts is not in it; one
    # that started before and ends inside is, by its part inside.
    report = _report(cli, "--since", "2026-11-24T07:00", "--until", "2026-11-24T08:30")
    assert _by_key(report["groups"]) == {"d": (1.5 * HOUR, 0.0, 1), "a": (0.5 * HOUR, 0.5 * HOUR, 1)}


def test_a_long_session_that_started_long_before_the_range_is_found(data_dir: Path, cli: Cli) -> None:
    """Only the range is read, but no further back than the longest session
    the store holds: a three-day session still counts in its last day."""
    store_sessions(
        data_dir,
        ended("2026-11-20T09:00", "2026-11-23T10:00", project="marathon"),
        *(ended(f"2026-11-22T{h:02d}:00", f"2026-11-22T{h:02d}:30", project="short") for h in range(8, 12)),
    )
    report = _report(cli, "--since", "2026-11-23", "--until", "2026-11-24")
    assert _by_key(report["groups"]) == {"marathon": (10 * HOUR, 0.0, 1)}


def test_groupings_and_filters(data_dir: Path, cli: Cli) -> None:
    store_sessions(
        data_dir,
        ended(
            "2026-11-24T09:00",
            "2026-11-24T10:00",
            project="web",
            tags=("ai", "review"),
            tool="claude-code",
            scope="claude-1",
        ),
        ended(
            "2026-11-24T10:00",
            "2026-11-24T12:00",
            project="web",
            tags=("review",),
            tool="nvim",
            scope="nvim-7",
        ),
        ended("2026-11-24T13:00", "2026-11-24T14:00", tool="nvim", scope="nvim-7"),
        ended(
            "2026-11-25T09:00",
            "2026-11-25T09:30",
            project="blog",
            tags=("ai",),
            tool="claude-code",
            scope="claude-2",
        ),
    )
    week = ("--since", "2026-11-23", "--until", "2026-11-30")
    assert _by_key(_report(cli, *week, "--by", "project")["groups"]) == {
        "web": (3 * HOUR, 0.0, 2),
        "(no project)": (HOUR, 0.0, 1),
        "blog": (0.5 * HOUR, 0.0, 1),
    }
    # A session with two tags counts under each; none: "(untagged)".
    assert _by_key(_report(cli, *week, "--by", "tag")["groups"]) == {
        "review": (3 * HOUR, 0.0, 2),
        "ai": (1.5 * HOUR, 0.0, 2),
        "(untagged)": (HOUR, 0.0, 1),
    }
    assert _by_key(_report(cli, *week, "--by", "tool")["groups"]) == {
        "nvim": (3 * HOUR, 0.0, 2),
        "claude-code": (1.5 * HOUR, 0.0, 2),
    }
    assert set(_by_key(_report(cli, *week, "--by", "scope")["groups"])) == {"claude-1", "nvim-7", "claude-2"}
    assert _by_key(_report(cli, *week, "--by", "week")["groups"]) == {"2026-11-23": (4.5 * HOUR, 0.0, 4)}
    assert _by_key(_report(cli, *week, "--by", "month")["groups"]) == {"2026-11": (4.5 * HOUR, 0.0, 4)}
    two = _report(cli, *week, "--by", "tool,project")
    assert _by_key(two["groups"][0]["groups"]) == {"web": (2 * HOUR, 0.0, 1), "(no project)": (HOUR, 0.0, 1)}
    # Filters, combined.
    assert _by_key(_report(cli, *week, "--tag", "ai", "--tool", "claude-code")["groups"]) == {
        "web": (HOUR, 0.0, 1),
        "blog": (0.5 * HOUR, 0.0, 1),
    }
    assert _by_key(_report(cli, *week, "--project", "web", "--by", "scope")["groups"]) == {
        "nvim-7": (2 * HOUR, 0.0, 1),
        "claude-1": (HOUR, 0.0, 1),
    }
    assert _report(cli, *week, "--scope", "claude-2")["total"]["sessions"] == 1


def test_parallel_sessions_each_count_and_the_total_says_what_they_covered(data_dir: Path, cli: Cli) -> None:
    store_sessions(
        data_dir,
        ended(
            "2026-11-24T09:00",
            "2026-11-24T11:00",
            scope="nvim-1",
            active=[("2026-11-24T09:00", "2026-11-24T10:00")],
        ),
        ended(
            "2026-11-24T10:00",
            "2026-11-24T12:00",
            scope="claude-1",
            active=[("2026-11-24T09:30", "2026-11-24T11:00")],
        ),
    )
    total = _report(cli, "--since", "2026-11-24", "--until", "2026-11-25")["total"]
    assert (total["wall_seconds"], total["covered_wall_seconds"]) == (4 * HOUR, 3 * HOUR)
    assert (total["active_seconds"], total["covered_active_seconds"]) == (2.5 * HOUR, 2 * HOUR)


def test_a_running_session_counts_up_to_now(data_dir: Path, cli: Cli) -> None:
    assert cli("start", "--project", "live").returncode == 0
    manager = open_manager(data_dir)
    try:
        backdate_active(manager, 2 * HOUR)
    finally:
        manager.close()
    report = _report(cli, "--since", "3h", tz="UTC")
    [group] = report["groups"]
    assert (group["key"], group["running"], report["total"]["running"]) == ("live", True, True)
    assert 2 * HOUR <= group["wall_seconds"] < 2 * HOUR + 60  # up to now (a wide margin: no timing judged)
    table = cli("report", "--since", "3h", env={"TZ": "UTC"}).stdout
    assert "live ●" in table
    assert "still running" in table


def test_named_ranges(data_dir: Path, cli: Cli) -> None:
    """``--since yesterday`` is all of yesterday, local; ``--until today``
    is last midnight."""
    now = datetime.now(BERLIN)
    yesterday = (now - timedelta(days=1)).date()
    store_sessions(data_dir, ended(f"{yesterday}T10:00", f"{yesterday}T11:00", project="y"))
    report = _report(cli, "--since", "yesterday")
    assert _by_key(report["groups"]) == {"y": (HOUR, 0.0, 1)}
    assert datetime.fromisoformat(report["since"]) == at(f"{yesterday}T00:00")
    assert datetime.fromisoformat(report["until"]) == at(f"{now.date()}T00:00")
    assert _report(cli, "--since", "7d", "--until", "today")["total"]["sessions"] == 1
    assert _report(cli, "--since", "today")["total"]["sessions"] == 0


@pytest.mark.parametrize(
    ("env", "config", "first"),
    [
        ({"LANG": "en_US.UTF-8"}, "", "2026-11-29"),  # Sunday-first territory
        ({"LANG": "de_DE.UTF-8"}, "", "2026-11-30"),  # Monday
        ({"LANG": "en_US.UTF-8"}, '[report]\nweek_start = "monday"\n', "2026-11-30"),  # config wins
    ],
)
def test_weeks_start_on_the_locales_first_day_or_the_configs(
    data_dir: Path, cli: Cli, env: dict[str, str], config: str, first: str
) -> None:
    store_sessions(data_dir, ended("2026-12-01T10:00", "2026-12-01T11:00", project="w"))
    (data_dir / "config.toml").write_text(config)
    done = cli(
        "report",
        "--since",
        "2026-11-20",
        "--until",
        "2026-12-05",
        "--by",
        "week",
        "--json",
        env={"TZ": "Europe/Berlin", **env},
    )
    assert done.returncode == 0, done.stderr
    assert [g["key"] for g in json.loads(done.stdout)["groups"]] == [first]


def test_csv_has_a_header_and_a_row_per_group_and_never_a_formula(data_dir: Path, cli: Cli) -> None:
    store_sessions(
        data_dir,
        ended("2026-11-24T09:00", "2026-11-24T10:00", project="=HYPERLINK(1)"),
        ended("2026-11-24T10:00", "2026-11-24T10:30", project="plain"),
    )
    done = cli(
        "report",
        "--since",
        "2026-11-24",
        "--until",
        "2026-11-25",
        "--by",
        "day,project",
        "--csv",
        env={"TZ": "Europe/Berlin"},
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows[0] == ["day", "project", "wall_seconds", "active_seconds", "sessions", "running"]
    assert sorted(rows[1:]) == [
        ["2026-11-24", "'=HYPERLINK(1)", "3600.000", "0.000", "1", "no"],
        ["2026-11-24", "plain", "1800.000", "0.000", "1", "no"],
    ]


def test_the_table_shows_each_group_with_a_bar(data_dir: Path, cli: Cli) -> None:
    store_sessions(
        data_dir,
        ended(
            "2026-11-24T09:00",
            "2026-11-24T11:00",
            project="big",
            active=[("2026-11-24T09:00", "2026-11-24T11:00")],
        ),
        ended(
            "2026-11-24T12:00",
            "2026-11-24T13:00",
            project="small",
            active=[("2026-11-24T12:00", "2026-11-24T13:00")],
        ),
    )
    done = cli("report", "--since", "2026-11-24", "--until", "2026-11-25", env={"TZ": "Europe/Berlin"})
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "2h00m" in lines["big"]
    assert "█" * 24 in lines["big"]
    assert "1h00m" in lines["small"]
    assert "█" * 12 in lines["small"]
    assert "█" * 13 not in lines["small"]
    assert "\x1b[" not in done.stdout  # not a terminal: no colour


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--by", "colour"), "give one or two of project, tag, scope, tool, host, day, week, month"),
        (("--by", "day,project,tag"), "give one or two of"),
        (("--since", "someday"), "'someday' is neither a duration"),
        (("--since", "today", "--until", "yesterday"), "is not after --since"),
        (("--json", "--csv"), "give --csv or --json, not both"),
    ],
)
def test_bad_input_is_named_and_changes_nothing(cli: Cli, args: tuple[str, ...], message: str) -> None:
    done = cli("report", *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_through_the_daemon_the_same_report(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    store_sessions(
        data_dir,
        ended(
            "2026-11-23T23:00",
            "2026-11-24T01:30",
            project="webshop",
            active=[("2026-11-23T23:00", "2026-11-24T01:00")],
        ),
        ended("2026-11-24T09:00", "2026-11-24T10:00", project="blog"),
    )
    args = ("--since", "2026-11-23", "--until", "2026-11-25", "--by", "day,project")
    embedded = _report(cli, *args)
    with run_daemon(tmp_path, data_dir, runtime_dir):
        through = _report(cli, *args)
        assert cli("status").returncode == 0  # the daemon answered it
    for report in (embedded, through):
        report.pop("now")
    assert through == embedded
    assert embedded["total"]["sessions"] == 2


def test_colour_only_on_a_terminal_and_never_under_no_color(data_dir: Path, cli: Cli) -> None:
    """Through a real pseudo-terminal (util-linux ``script``)."""
    worked = [("2026-11-24T09:00", "2026-11-24T10:00")]
    store_sessions(data_dir, ended("2026-11-24T09:00", "2026-11-24T10:00", project="p", active=worked))
    script = shutil.which("script")
    assert script, "script is missing (util-linux)"
    command = f"'{SESSION_AGENT}' --data-dir '{data_dir}' report --since 2026-11-24 --until 2026-11-25"

    def on_a_terminal(**env: str) -> str:
        done = subprocess.run(
            [script, "-qec", command, "/dev/null"],
            capture_output=True,
            text=True,
            env={**clean_env(data_dir.parent, TZ="Europe/Berlin"), **env},
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "\x1b[" in on_a_terminal()
    shown = on_a_terminal(NO_COLOR="1")
    assert "\x1b[" not in shown
    assert "█" in shown

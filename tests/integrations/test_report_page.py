"""``report --html``: the page in a real headless Chromium (Debian
``chromium``) -- it loads with no console error and fetches nothing, and
the bars the browser holds in its DOM are the known history's."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from ..support.commands import Cli
from ..support.history import ended, store_sessions

CHART_HEIGHT = 220  # agent.report_html.CHART_HEIGHT: the tallest day's bar


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium as the probe of this machine runs it: no sandbox
    (root), no GPU, nothing of its own fetched from the network."""
    program = shutil.which("chromium")
    assert program, "chromium is missing: scripts/test installs it (Debian chromium)"
    return subprocess.run(
        [
            program,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def test_the_page_shows_the_known_history_in_a_real_browser(tmp_path: Path, data_dir: Path, cli: Cli) -> None:
    store_sessions(
        data_dir,
        ended("2026-11-23T09:00", "2026-11-23T12:00", project="webshop", scope="claude-1",
              active=[("2026-11-23T09:00", "2026-11-23T11:00")]),
        ended("2026-11-23T13:00", "2026-11-23T14:00", project="blog", scope="nvim-7",
              active=[("2026-11-23T13:00", "2026-11-23T14:00")]),
        ended("2026-11-24T23:00", "2026-11-25T01:00", project="webshop", scope="nvim-7",
              active=[("2026-11-24T23:00", "2026-11-25T00:30")]),
    )  # fmt: skip
    page = tmp_path / "report.html"
    done = cli(
        "report", "--since", "2026-11-23", "--until", "2026-11-26", "--by", "day,project",
        "--html", str(page), env={"TZ": "Europe/Berlin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert "<script" not in html
    assert not re.search(r"(?:src|href)=|url\(|@import", html)  # nothing to fetch: it is all inline

    loaded = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert loaded.returncode == 0, loaded.stderr
    console = [line for line in loaded.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    dom = _Elements()
    dom.feed(loaded.stdout)
    bars = [attrs for tag, attrs in dom.found if tag == "rect" and attrs.get("class") == "bar"]
    seconds = {(b["data-day"], b["data-project"]): float(b["data-seconds"] or 0) for b in bars}
    assert seconds == {
        ("2026-11-23", "webshop"): 7200.0,
        ("2026-11-23", "blog"): 3600.0,
        ("2026-11-24", "webshop"): 3600.0,  # until midnight
        ("2026-11-25", "webshop"): 1800.0,  # after it
    }
    heights: dict[str, float] = {}
    for bar in bars:
        day = str(bar["data-day"])
        heights[day] = heights.get(day, 0.0) + float(bar["height"] or 0)
    assert abs(heights["2026-11-23"] - CHART_HEIGHT) < 0.1  # the most active day fills the chart
    assert abs(heights["2026-11-24"] / heights["2026-11-23"] - 1 / 3) < 0.01
    pieces = [attrs for tag, attrs in dom.found if tag == "rect" and attrs.get("class") == "piece"]
    # The timeline: each session's pieces, split at midnight, in its scope's lane.
    assert sorted((p["data-scope"], float(p["data-seconds"] or 0)) for p in pieces) == [
        ("claude-1", 10800.0),
        ("nvim-7", 3600.0),
        ("nvim-7", 3600.0),
        ("nvim-7", 3600.0),
    ]

    shot = tmp_path / "report.png"
    taken = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1100,1000", page.as_uri())
    assert taken.returncode == 0, taken.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

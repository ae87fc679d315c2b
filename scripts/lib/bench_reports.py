"""A full-history report against the peers', over one history imported
into each: ``count`` ten-minute frames (a dozen projects, up to two of six
tags) written as Watson's frames file and as Timewarrior's data files,
and brought into ours with ``session-agent import --from watson`` (timed:
the import is a figure too). Then, round-robin, ``repeats`` times each:

* ``session-agent report --since 2000-01-01 --by project`` (embedded: no
  daemon, as the peers run);
* ``watson report --all`` (its totals by project, with tags);
* ``timew summary :all`` (its intervals by day, with a total).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from bench_env import SESSION_AGENT, private_home, summary, wall

PROJECTS = [f"project-{n}" for n in range(12)]
TAGS = ["review", "ai", "bugfix", "docs", "ops", "meeting"]
OURS = "session-agent report --since 2000-01-01 --by project"
WATSON = "watson report --all"
TIMEW = "timew summary :all"


def _history(root: Path, count: int) -> tuple[Path, Path]:
    """The frames file and the Timewarrior database of one history."""
    rng = random.Random(1)
    first = int(time.time()) - count * 900
    frames, months = [], defaultdict(list)

    def stamp(ts: int) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")

    for n in range(count):
        start = first + n * 900
        end = start + 600
        project, tags = rng.choice(PROJECTS), rng.sample(TAGS, rng.randint(0, 2))
        frames.append([start, end, project, uuid.UUID(int=rng.getrandbits(128)).hex, tags, end])
        month = datetime.fromtimestamp(start, UTC).strftime("%Y-%m")
        months[month].append(f"inc {stamp(start)} - {stamp(end)} # {' '.join([project, *tags])}")
    watson = root / "watson"
    watson.mkdir()
    (watson / "frames").write_text(json.dumps(frames))
    timew = root / "timew"
    (timew / "data").mkdir(parents=True)
    (timew / "timewarrior.cfg").write_text("")
    for month, lines in months.items():
        (timew / "data" / f"{month}.data").write_text("\n".join(lines) + "\n")
    return watson, timew


def peers(count: int, repeats: int, watson: Path | None, *, with_peers: bool = True) -> dict[str, object]:
    """The figures, and what could not be measured (a peer missing)."""
    skipped: dict[str, str] = {}
    with private_home("reports") as home:
        watson_dir, timew_db = _history(home.root, count)
        began = time.perf_counter()
        subprocess.run(
            [str(SESSION_AGENT), "import", str(watson_dir / "frames"), "--from", "watson"],
            env=home.env,
            check=True,
            capture_output=True,
        )
        imported = time.perf_counter() - began
        cases = {OURS: ([str(SESSION_AGENT), "report", "--since", "2000-01-01", "--by", "project"], home.env)}
        timew = shutil.which("timew")
        if not with_peers:
            skipped["watson"] = skipped["timew"] = "not run with --quick"
        else:
            if watson is None:
                skipped["watson"] = "could not install td-watson"
            else:
                watson_env = {**home.env, "WATSON_DIR": str(watson_dir)}
                cases[WATSON] = ([str(watson), "report", "--all", "-G"], watson_env)
            if timew is None:
                skipped["timew"] = "timew is not installed (Debian package timewarrior)"
            else:
                cases[TIMEW] = ([timew, "summary", ":all"], {**home.env, "TIMEWARRIORDB": str(timew_db)})
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeats):
            for name, (argv, env) in cases.items():
                samples[name].append(wall(argv, env))
    return {
        "sessions": count,
        "import_seconds": round(imported, 2),
        "ms": {name: summary(values) for name, values in samples.items()},
        "skipped": skipped,
    }

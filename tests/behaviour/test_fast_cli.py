"""The click-free fast path for the hot commands must be indistinguishable
from the full CLI: each form is run both ways against one real daemon, and
the output and exit codes compared."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.environment import START_ENV
from agent.fast_cli import _parse

from ..support.commands import CLI_TIMEOUT, SESSION_AGENT
from ..support.daemon_process import daemon_env, run_daemon

Outcome = tuple[int, str, str]
Both = Callable[..., tuple[Outcome, Outcome]]
FULL_CLI = [sys.executable, "-c", "from agent.cli import main; main()"]


@pytest.fixture(params=["daemon", "embedded"])
def mode(request: pytest.FixtureRequest, tmp_path: Path, data_dir: Path, runtime_dir: Path) -> Iterator[str]:
    """Each comparison runs once through a real daemon and once without one."""
    if request.param == "embedded":
        yield "embedded"
        return
    with run_daemon(tmp_path, data_dir, runtime_dir):
        yield "daemon"


@pytest.fixture
def both(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> Callable[..., tuple[tuple[int, str, str], ...]]:
    env = daemon_env(tmp_path, runtime_dir, SESSION_AGENT_DATA_DIR=str(data_dir))

    def run(prefix: list[str], *args: str) -> Outcome:
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT, check=False
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout, done.stderr

    def fast_then_full(*args: str) -> tuple[Outcome, Outcome]:
        return run([str(SESSION_AGENT)], *args), run(FULL_CLI, *args)

    return fast_then_full


@pytest.mark.usefixtures("mode")
def test_the_fast_path_answers_as_the_full_cli_does(both: Both, data_dir: Path) -> None:
    same_state = [
        ("current",),
        ("current", "--json"),
        ("touch",),
        ("touch", "--json"),
        ("--data-dir", str(data_dir), "current"),
        (f"--data-dir={data_dir}", "current", "--json"),
        ("end",),  # idempotent: nothing active
        ("abandon",),
    ]
    for args in same_state:
        fast, full = both(*args)
        assert fast == full, args
    fast, full = both("start")  # fast starts one; full is refused, naming it
    assert fast[0] == 0
    sid = fast[1].strip()
    assert full[0] == 3
    assert sid in full[2]
    for args in [("current",), ("current", "--json"), ("start",), ("start", "--json")]:
        fast, full = both(*args)
        assert fast == full, args
    # A touch a second after the other records a heartbeat (at most one a
    # second): the same session, its activity moved or not.
    fast, full = both("touch", "--json")
    assert (fast[0], fast[2]) == (full[0], full[2]) == (0, "")
    moved = {"last_activity_at": None, "activity": None, "active_seconds": None}
    assert json.loads(fast[1]) | moved == json.loads(full[1]) | moved
    fast, full = both("end")
    assert fast == (0, "", "")
    nothing = "session-agent: no active session; nothing to do\n"
    assert full == (0, "", nothing)  # the second end finds nothing active, and says so
    # What a hook says of its session: the same session fields either way.
    described = (
        "--tool",
        "claude-code",
        "--external-id=4c1f",
        "--tag",
        "ai",
        "--label",
        "model=opus",
        "--json",
    )
    fast, full = both("start", "--scope", "hook", *described)
    assert fast[0] == 0, fast[2]
    started = json.loads(fast[1])
    assert (started["tool"], started["external_id"], started["tags"]) == ("claude-code", "4c1f", ["ai"])
    assert started["labels"] == {"model": "opus"}
    assert full[0] == 3  # already active: the full CLI parsed the same options and was refused
    assert both("end", "--scope", "hook")[0] == (0, "", "")
    fast, full = both("start", "--scope", "hook2", "--project", "p" * 200)
    assert fast == full  # the same error, naming the field, either way
    assert fast[0] == 2
    assert "project is longer than 128 bytes" in fast[2]
    # In a scope: the same, by option (either spelling) or by environment.
    fast, full = both("start", "--scope", "s1")
    assert fast[0] == 0
    assert full[0] == 3
    assert f"{fast[1].strip()} is already active in scope s1" in full[2]
    assert "--scope s1" in full[2]
    scoped = [("current", "--scope", "s1"), ("current", "--json", "--scope=s1"), ("touch", "--scope", "s1")]
    for args in [*scoped, ("current",)]:
        fast, full = both(*args)
        assert fast == full, args
    assert both("end", "--scope", "s1") == ((0, "", ""), (0, "", nothing))  # the fast one ended it
    fast, full = both("current", "--scope", "s1")
    assert fast == full, "current --scope s1"
    assert both("stop") == ((0, "", nothing), (0, "", nothing))  # the alias, on both paths


@pytest.mark.parametrize(
    ("argv", "hot"),
    [
        (["start"], True),
        (["start", "--json"], True),
        (["--data-dir", "/d", "--runtime-dir=/r", "current", "--json"], True),
        (["end"], True),
        (["end", "--json"], False),  # end takes no --json: the full CLI says so
        (["end", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"], False),  # an id: the full CLI checks it
        (["--debug", "start"], False),
        (["start", "--help"], False),
        (["start", "--scope", "nvim-1"], True),
        (["current", "--scope=nvim-1", "--json"], True),
        (["end", "--scope", "a", "--scope", "b"], True),  # the last one counts, as in click
        (["current", "--scope", ".."], False),  # a bad name: the full CLI says what is wrong
        (["current", "--scope"], False),
        (["current", "--scope="], False),
        (["current", "--json", "--json"], False),
        (["list"], False),
        (["--data-dir"], False),
        (["--data-dir", "--json", "start"], False),
        (["--data-dir", "/a", "--data-dir", "/b", "start"], False),
        ([], False),
    ],
)
def test_only_the_hot_forms_take_the_fast_path(argv: list[str], hot: bool) -> None:
    assert (_parse(argv) is not None) == hot


def test_the_embedded_fast_path_imports_only_what_it_needs(tmp_path: Path, data_dir: Path) -> None:
    """No daemon: the store is opened here, and still no click, typing or
    dataclasses (each costs milliseconds), nor anything of the daemon's."""
    env = daemon_env(tmp_path, tmp_path / "no-daemon")
    made = subprocess.run(
        [sys.executable, "-m", "agent", "--data-dir", str(data_dir), "end"],
        env=env,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert made.returncode == 0  # a write: the store exists now, and `current` opens it
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "agent", "--data-dir", str(data_dir), "current"],
        capture_output=True,
        text=True,
        env=daemon_env(tmp_path, tmp_path / "no-daemon"),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "rocksdict" in imported  # it did open the store
    never = {"click", "typing", "dataclasses", "platformdirs", "asyncio", "watchfiles", "psutil", "agent.cli"}
    assert not imported & never
    assert "agent.simulated_clock" not in imported  # test machinery: only when asked for


def test_a_daemon_that_never_accepts_is_reported_within_five_seconds(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    """A listener whose backlog is full and that never accepts: the fast path
    reports it itself (exit 6) rather than hand over to the full CLI, which
    would wait as long again."""
    import socket
    import time

    from agent.paths import Paths

    sock_path = Paths(data_dir, runtime_dir).socket
    sock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(0)
    fillers = []
    for _ in range(4):  # fill the backlog (non-blocking: stop once it refuses)
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filler.setblocking(False)
        try:
            filler.connect(str(sock_path))
        except BlockingIOError:
            filler.close()
            break
        fillers.append(filler)
    try:
        began = time.monotonic()
        done = subprocess.run(
            [str(SESSION_AGENT), "--data-dir", str(data_dir), "current"],
            capture_output=True,
            text=True,
            env=daemon_env(tmp_path, runtime_dir),
            timeout=CLI_TIMEOUT,
            check=False,
        )
        took = time.monotonic() - began
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert done.returncode == 6, done.stderr
    assert "did not answer within" in done.stderr
    assert took < 5.0


@pytest.mark.parametrize("variable", START_ENV)
def test_the_start_environment_sends_start_to_the_full_cli(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With either variable set, `start` goes to the full CLI, which reads it
    (the names come from agent.environment, the one place they are spelled)."""
    assert _parse(["start"]) is not None
    monkeypatch.setenv(variable, "30m")
    assert _parse(["start"]) is None
    assert _parse(["current"]) is not None  # only start cares

"""What a session was: each field set through each way in (the CLI, a file
edit, the socket, the Python API), read back through each way out (show,
list, current, the socket), and the project and git state read from real
repositories -- worktrees, detached heads, and hostile ones."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import SessionManager, open_db
from agent.control.protocol import encode_request

from ..support.commands import Cli, start_session
from ..support.daemon_process import DaemonProcess, run_daemon, wait_for
from ..support.helpers import Raw

GIT = shutil.which("git") or "/usr/bin/git"  # only the tests run git: the agent reads the files
FULL = (
    "--cwd",
    "{cwd}",
    "--project",
    "engine",
    "--tool",
    "nvim",
    "--external-id",
    "ext-42",
    "--tag",
    "review",
    "--tag",
    "bugfix",
    "--title",
    "the parser's error messages",
    "--label",
    "ticket=ENG-42",
    "--label",
    "note=two words",
)


@pytest.fixture(params=["embedded", "daemon"])
def way(
    request: pytest.FixtureRequest, tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> Iterator[DaemonProcess | None]:
    if request.param == "embedded":
        yield None
        return
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        yield daemon


def _json(cli: Cli, *args: str) -> object:
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(
        [GIT, "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def _repo(root: Path) -> Path:
    root.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=root)
    _git("commit", "-q", "--allow-empty", "-m", "first", cwd=root)
    return root


def test_every_field_set_by_the_cli_is_read_back_everywhere(
    way: DaemonProcess | None, cli: Cli, tmp_path: Path
) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    started = _json(cli, "start", "--json", *(a.format(cwd=cwd) for a in FULL))
    assert isinstance(started, dict)
    expected = {
        "cwd": str(cwd),
        "project": "engine",  # given: kept, not derived
        "git": None,
        "tool": "nvim",
        "external_id": "ext-42",
        "tags": ["bugfix", "review"],
        "title": "the parser's error messages",
        "labels": {"note": "two words", "ticket": "ENG-42"},
    }
    assert {k: started[k] for k in expected} == expected
    assert started["host"]["hostname"] == os.uname().nodename
    for shown in (
        _json(cli, "show", started["id"], "--json"),
        _json(cli, "current", "--json"),
        _json(cli, "list", "--json")[0],  # type: ignore[index]
    ):
        assert isinstance(shown, dict)
        assert {k: shown[k] for k in expected} == expected
    ended = _json(cli, "show", started["id"], "--json")
    assert isinstance(ended, dict)
    assert ended["active_seconds"] == 0.0


def test_a_start_from_the_cli_records_its_directory_and_the_tool_cli(cli: Cli, tmp_path: Path) -> None:
    repo = _repo(tmp_path / "engine")
    (repo / "src").mkdir()
    done = subprocess.run(
        [*cli_args(cli), "start", "--json"],
        cwd=repo / "src",
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    started = json.loads(done.stdout)
    assert (started["cwd"], started["tool"], started["project"]) == (str(repo / "src"), "cli", "engine")
    assert started["git"] == {"root": str(repo), "branch": "main", "commit": None, "worktree": False}


def cli_args(cli: Cli) -> list[str]:
    """The program and its --data-dir, as the ``cli`` fixture runs it."""
    probe = cli("path")
    assert probe.returncode == 0
    data_dir = Path(probe.stdout.strip()).parent
    from ..support.commands import SESSION_AGENT

    return [str(SESSION_AGENT), "--data-dir", str(data_dir)]


def test_a_linked_worktree_is_the_same_project_as_its_main_checkout(cli: Cli, tmp_path: Path) -> None:
    main = _repo(tmp_path / "engine")
    _git("worktree", "add", "-q", "-b", "topic", str(tmp_path / "engine-topic"), cwd=main)
    first = _json(cli, "start", "--scope", "a", "--cwd", str(main), "--json")
    second = _json(cli, "start", "--scope", "b", "--cwd", str(tmp_path / "engine-topic"), "--json")
    assert isinstance(first, dict)
    assert isinstance(second, dict)
    assert first["project"] == second["project"] == "engine"
    assert first["git"]["worktree"] is False
    assert second["git"] == {
        "root": str(tmp_path / "engine-topic"),
        "branch": "topic",
        "commit": None,
        "worktree": True,
    }


def test_a_detached_head_records_its_commit(cli: Cli, tmp_path: Path) -> None:
    repo = _repo(tmp_path / "engine")
    _git("checkout", "-q", "--detach", cwd=repo)
    commit = (repo / ".git" / "HEAD").read_text().strip()
    started = _json(cli, "start", "--cwd", str(repo), "--json")
    assert isinstance(started, dict)
    assert started["git"] == {"root": str(repo), "branch": None, "commit": commit, "worktree": False}


def test_outside_a_repository_the_project_is_the_directorys_name(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    started = _json(cli, "start", "--cwd", str(tmp_path / "notes"), "--json")
    assert isinstance(started, dict)
    assert (started["project"], started["git"]) == ("notes", None)


@pytest.mark.parametrize(
    "hostility", ["fifo-head", "huge-head", "gitdir-anywhere", "symlinked-dot-git", "head-link"]
)
def test_a_hostile_repository_never_blocks_or_breaks_a_start(
    way: DaemonProcess | None, cli: Cli, tmp_path: Path, hostility: str
) -> None:
    repo = tmp_path / "evil"
    repo.mkdir()
    if hostility == "fifo-head":
        (repo / ".git").mkdir()
        os.mkfifo(repo / ".git" / "HEAD")
    elif hostility == "huge-head":
        (repo / ".git").mkdir()
        with open(repo / ".git" / "HEAD", "wb") as f:
            f.truncate(1 << 30)  # sparse: a gigabyte nobody should read
    elif hostility == "gitdir-anywhere":
        (repo / ".git").write_text("gitdir: /dev\n")  # /dev/HEAD does not exist; /dev/commondir neither
    elif hostility == "symlinked-dot-git":
        (repo / ".git").symlink_to("/etc")
    else:
        (repo / ".git").mkdir()
        (repo / ".git" / "HEAD").symlink_to("/etc/passwd")
    started = _json(cli, "start", "--cwd", str(repo), "--json")  # the runner's timeout fails a block
    assert isinstance(started, dict)
    assert started["project"] == "evil"
    assert started["git"] is None or started["git"]["branch"] is None


def test_a_file_edit_starts_a_session_with_its_details(
    way: DaemonProcess | None, cli: Cli, data_dir: Path
) -> None:
    current = data_dir / "current_session"
    current.write_text(
        "start idle=30m\n"
        "cwd=/home/ada/my project\n"
        "tool=claude-code\n"
        "external_id=4c1f-aa\n"
        "title=a title, with spaces\n"
        "tag=ai\n"
        "tag=review\n"
        "label.Model=opus\n"
    )
    if way is None:
        assert cli("current").returncode == 0
    else:
        wait_for(lambda: current.read_text().strip() not in ("", "start"))
    started = _json(cli, "current", "--json")
    assert isinstance(started, dict)
    assert started["idle_timeout"] == 1800
    assert (started["cwd"], started["project"], started["tool"]) == (
        "/home/ada/my project",
        "my project",
        "claude-code",
    )
    assert (started["external_id"], started["title"]) == ("4c1f-aa", "a title, with spaces")
    assert (started["tags"], started["labels"]) == (["ai", "review"], {"Model": "opus"})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("start\ncwd=relative/path\n", "cwd 'relative/path' must be an absolute path"),
        ("start\ncolour=blue\n", "does not take 'colour'"),
        ("start\ntag=+x\n", "must be one word, not starting with + or -"),
        ("start\nproject=a\nproject=b\n", "got project twice"),
    ],
)
def test_a_bad_detail_in_a_file_edit_is_rejected_and_names_the_field(
    cli: Cli, data_dir: Path, content: str, problem: str
) -> None:
    (data_dir / "current_session").write_text(content)
    done = cli("current")
    assert done.returncode == 1  # nothing started
    assert problem in done.stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--cwd", "/x", "--title", "two\nlines"), "title must be one line"),
        (("--tag", "-x"), "must be one word"),
        (("--label", "novalue"), "is not KEY=VALUE"),
        (("--project", "p" * 200), "project is longer than 128 bytes"),
        (tuple(a for n in range(33) for a in ("--label", f"k{n}=v")), "at most 32 labels"),
        (("--label", "k=" + "v" * 5000), "longer than 4096 bytes"),
    ],
)
def test_a_bad_value_on_the_command_line_is_a_clear_error_and_starts_nothing(
    cli: Cli, args: tuple[str, ...], problem: str
) -> None:
    done = cli("start", *args)
    assert done.returncode == 2
    assert problem in done.stderr
    assert cli("current").returncode == 1


def test_the_socket_takes_details_and_refuses_bad_ones(daemon_sock: tuple[DaemonProcess, Path]) -> None:
    _, sock = daemon_sock
    raw = Raw(sock)

    def ask(op: str, **args: object) -> dict[str, Any]:
        raw.send(encode_request(op, **args))
        return raw.reply()

    try:
        good = ask("start", cwd="/srv/app", tags=["x"], labels={"k": "v"}, tool="vscode")
        assert good["ok"], good
        assert (good["result"]["project"], good["result"]["tool"]) == ("app", "vscode")
        assert ask("end")["ok"]
        bad_ones: list[tuple[dict[str, object], str]] = [
            ({"tags": "x"}, "tags must be a list of strings"),
            ({"labels": {"k": 1}}, "labels must be an object of strings"),
            ({"cwd": 5}, "cwd must be a string"),
            ({"parent": "nope"}, "parent"),
        ]
        for bad, problem in bad_ones:
            reply = ask("start", **bad)
            assert not reply["ok"]
            assert problem in reply["error"]["message"]
            assert reply["error"]["exit_code"] == 2
        assert ask("current")["result"] is None  # nothing half-applied
    finally:
        raw.close()


@pytest.fixture
def daemon_sock(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> Iterator[tuple[DaemonProcess, Path]]:
    from agent.paths import Paths

    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        yield daemon, Paths(data_dir, runtime_dir).socket


def test_the_python_api_takes_details(data_dir: Path, tmp_path: Path) -> None:
    repo = _repo(tmp_path / "engine")

    async def run() -> None:
        with SessionManager(open_db(data_dir / "db"), data_dir) as manager:
            sid = await manager.start_session(cwd=str(repo), tool="script", tags=["a"], labels={"k": "v"})
            session = await manager.get_session(sid)
            assert session is not None
            assert (session.details.project, session.details.tool) == ("engine", "script")
            assert session.details.git is not None
            assert session.details.git.branch == "main"
            assert (session.details.tags, dict(session.details.labels)) == (("a",), {"k": "v"})

    asyncio.run(run())


def test_an_id_started_elsewhere_keeps_its_details_through_show(cli: Cli) -> None:
    sid = start_session(cli)
    shown = _json(cli, "show", sid, "--json")
    assert isinstance(shown, dict)
    assert shown["tool"] == "cli"
    assert shown["cwd"] is not None


def test_tag_set_and_count_change_what_a_session_was_never_when(way: DaemonProcess | None, cli: Cli) -> None:
    sid = start_session(cli)
    before = _json(cli, "show", sid, "--json")
    assert isinstance(before, dict)
    assert cli("tag", "+review", "+wip", "--scope", "default").returncode == 0
    assert cli("tag", sid, "-wip", "bugfix").returncode == 0
    assert cli("set", "project=engine", "title=two words", "label.ticket=ENG-42").returncode == 0
    assert cli("set", sid, "label.ticket=", "tool=").returncode == 0  # cleared
    assert cli("count").returncode == 0
    assert cli("count", sid, "3").returncode == 0
    after = _json(cli, "show", sid, "--json")
    assert isinstance(after, dict)
    assert (after["tags"], after["project"], after["title"]) == (["bugfix", "review"], "engine", "two words")
    assert (after["labels"], after["tool"], after["memory_count"]) == ({}, None, 4)
    unchanged = ("started_at", "ended_at", "status", "end_reason", "last_activity_at", "cwd", "host")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}


def test_a_count_after_the_end_lands_on_the_session_just_ended(way: DaemonProcess | None, cli: Cli) -> None:
    sid = start_session(cli)
    assert cli("end").returncode == 0
    counted = _json(cli, "count", "2", "--json")
    assert isinstance(counted, dict)
    assert (counted["id"], counted["memory_count"], counted["status"]) == (sid, 2, "completed")


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (("tag", "+x"), 1, "no active session"),
        (("set", "project=x"), 1, "no active session"),
        (("tag", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "+x"), 4, "no session"),
        (("set", "colour=red"), 2, "cannot set colour"),
        (("count", "0"), 2, "from 1 to 1000000"),
        (("count", "many"), 2, "N a whole number"),
        (("tag",), 2, "at least one +TAG"),
    ],
)
def test_changing_what_is_not_there_or_not_valid_says_so(
    cli: Cli, args: tuple[str, ...], code: int, said: str
) -> None:
    if code == 2:
        start_session(cli)
    done = cli(*args)
    assert done.returncode == code, done.stderr
    assert said in done.stderr


def test_a_change_through_the_daemon_is_announced_to_its_status(
    cli: Cli, tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir):
        sid = start_session(cli)
        assert cli("set", "title=now known").returncode == 0
        status = _json(cli, "status", "--json")
        assert isinstance(status, dict)
        assert status["current"]["id"] == sid
        assert status["current"]["title"] == "now known"


def test_list_filters_by_project_tag_and_tool(way: DaemonProcess | None, cli: Cli, tmp_path: Path) -> None:
    made = {}
    for name, project, tool, tags in [
        ("a", "engine", "nvim", ("review",)),
        ("b", "engine", "claude-code", ("review", "ai")),
        ("c", "website", "nvim", ()),
    ]:
        args = ["start", "--scope", name, "--project", project, "--tool", tool, "--json"]
        args += [a for t in tags for a in ("--tag", t)]
        started = _json(cli, *args)
        assert isinstance(started, dict)
        made[name] = started["id"]

    def ids(*args: str) -> list[str]:
        listed = _json(cli, "list", "--json", *args)
        assert isinstance(listed, list)
        return [s["id"] for s in listed]

    assert ids("--project", "engine") == [made["b"], made["a"]]
    assert ids("--tool", "nvim") == [made["c"], made["a"]]
    assert ids("--tag", "review", "--tag", "ai") == [made["b"]]
    assert ids("--project", "engine", "--tool", "nvim") == [made["a"]]
    assert ids("--project", "engine", "--scope", "b") == [made["b"]]
    assert ids("--project", "nothing") == []
    # A project changed afterwards moves the session between the listings.
    assert cli("set", made["c"], "project=engine").returncode == 0
    assert ids("--project", "engine") == [made["c"], made["b"], made["a"]]
    assert ids("--project", "website") == []


def test_listing_a_project_reads_no_record_of_another(tmp_path: Path) -> None:
    """Every record of the other projects is made unreadable: a listing of one
    project that looked at any of them would report it."""
    from agent.details import Details
    from agent.errors import StorageError
    from agent.session import Session
    from agent.store import SessionStore

    from ..support.helpers import damage_record

    db = open_db(tmp_path / "db")
    store = SessionStore(db)
    sessions = [Session.begin(details=Details(project=("p", "q", "r")[n % 3])) for n in range(30)]
    store.commit(tuple(sessions))
    for s in sessions:
        if s.details.project != "p":
            damage_record(db, s.id, b"\x04broken")
    errors: list[StorageError] = []
    listed = list(store.newest_first(project="p", errors=errors))
    assert [s.id for s in listed] == [s.id for s in reversed(sessions) if s.details.project == "p"]
    assert errors == []
    store.close()


def test_a_host_session_started_again_continues_as_the_child_of_its_last(cli: Cli) -> None:
    """The same host session (external id and tool) started again in its
    scope -- a resumed conversation -- is the previous one's child; another
    host session, another tool, or a parent given are left as they are."""

    def start(*args: str) -> dict[str, Any]:
        done = cli("start", "--scope", "claude-x", "--json", *args)
        assert done.returncode == 0, done.stderr
        cli("end", "--scope", "claude-x")
        session: dict[str, Any] = json.loads(done.stdout)
        return session

    first = start("--tool", "claude-code", "--external-id", "abc")
    resumed = start("--tool", "claude-code", "--external-id", "abc")
    assert (first["parent"], resumed["parent"]) == (None, first["id"])
    assert start("--tool", "claude-code", "--external-id", "other")["parent"] is None
    assert start("--tool", "gemini", "--external-id", "other")["parent"] is None
    given = start("--tool", "gemini", "--external-id", "other", "--parent", first["id"])
    assert given["parent"] == first["id"]

"""The event log, ``subscribe`` on the socket, ``session-agent events`` and the follow API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import SessionManager
from agent.config import StartRequest
from agent.details import DetailsChange
from agent.events import Event, EventKind, Gap
from agent.follow import afollow_events, follow_events, read_events
from tests.support.commands import SESSION_AGENT, Cli, clean_env, open_manager
from tests.support.daemon_process import run_daemon, wait_for
from tests.support.events import Subscription


def _kinds(events: list[dict[str, object]]) -> list[object]:
    return [e["kind"] for e in events]


def _events_json(cli: Cli, *args: str) -> list[dict[str, object]]:
    done = cli("events", "--json", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_every_change_is_an_event_written_with_it(manager: SessionManager) -> None:
    """Each kind, numbered in order; the session each event carries is the
    record the same batch wrote."""
    log = manager.store.events
    started = manager.start(StartRequest(), scope="work")
    assert manager.store.get(started.id) == log.get(log.last_seq).session  # type: ignore[union-attr]
    manager.update(started.id, DetailsChange({"project": "shop"}))
    manager.count(started.id, 3)
    ended = manager.end(started.id)
    assert ended is not None
    kinds = [(e.seq, e.kind, e.session.scope) for e in log.after(0)]
    assert kinds == [
        (1, EventKind.STARTED, "work"),
        (2, EventKind.UPDATED, "work"),
        (3, EventKind.COUNTED, "work"),
        (4, EventKind.ENDED, "work"),
    ]
    last = log.get(4)
    assert last is not None
    assert last.session == manager.store.get(started.id) == ended
    assert last.session.details.project == "shop"
    assert last.session.memory_count == 3


def test_a_replaced_session_ends_in_the_batch_that_starts_the_next(manager: SessionManager) -> None:
    first = manager.start()
    second = manager.start(StartRequest(replace=True))
    events = list(manager.store.events.after(1))
    assert [(e.kind, e.session.id) for e in events] == [
        (EventKind.ENDED, first.id),
        (EventKind.STARTED, second.id),
    ]
    assert events[0].session.end_reason is not None
    assert events[0].session.end_reason.value == "replaced"


def test_events_cli_replays_from_any_seq_and_filters(cli: Cli) -> None:
    for scope in ("alpha", "beta"):
        assert cli("start", "--project", scope, "--scope", scope).returncode == 0
        assert cli("end", "--scope", scope).returncode == 0
    every = _events_json(cli)
    assert [e["seq"] for e in every] == [1, 2, 3, 4]
    for since in range(5):
        assert [e["seq"] for e in _events_json(cli, "--since", str(since))] == list(range(since + 1, 5))
    assert _kinds(_events_json(cli, "--kind", "ended")) == ["ended", "ended"]
    assert [e["session"]["scope"] for e in _events_json(cli, "--scope", "b*")] == ["beta", "beta"]  # type: ignore[index]
    assert len(_events_json(cli, "--project", "alpha")) == 2
    assert _events_json(cli, "--since", "1h") == every
    text = cli("events").stdout.splitlines()
    assert len(text) == 4
    assert "started" in text[0]
    assert "completed, cli" in text[1]


def test_events_cli_bad_input(cli: Cli) -> None:
    done = cli("events", "--kind", "exploded")
    assert done.returncode == 2
    assert "exploded" in done.stderr
    done = cli("events", "--since", "yesterday-ish")
    assert done.returncode == 2
    assert "seq" in done.stderr


def test_follow_without_a_daemon_prints_what_is_stored_and_says_why_no_more(cli: Cli) -> None:
    cli("start")
    done = cli("events", "--follow", "--since", "0", "--json")
    assert done.returncode == 7
    assert _kinds([json.loads(x) for x in done.stdout.splitlines()]) == ["started"]
    assert "--follow needs the daemon" in done.stderr


def test_trimmed_events_are_a_gap(tmp_path: Path, data_dir: Path, cli: Cli) -> None:
    data_dir.mkdir(mode=0o700, exist_ok=True)
    (data_dir / "config.toml").write_text("[events]\nkeep = 8\n")
    for _ in range(10):
        assert cli("start").returncode == 0
        assert cli("end").returncode == 0
    kept = _events_json(cli, "--since", "0")
    assert kept[0]["kind"] == "gap"
    assert kept[0]["from"] == 1
    assert [e["seq"] for e in kept[1:]] == list(range(int(kept[0]["to"]) + 1, 21))  # type: ignore[call-overload]
    assert 8 <= len(kept) - 1 <= 8 + 1  # trimmed as it went: never much more than kept
    items = list(read_events(0, data_dir=data_dir))
    assert isinstance(items[0], Gap)
    assert items[0].first == 1


def test_subscribers_replay_filter_and_follow_across_restarts(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    """Events recorded without a daemon, then through one, then after its
    restart: a subscriber resuming from its last seq sees every one, once."""
    cli("start", "--scope", "edit")
    cli("end", "--scope", "edit")
    seen: list[int] = []
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        with (
            Subscription(data_dir, runtime_dir, since=0) as every,
            Subscription(data_dir, runtime_dir, since=0, kinds=["ended"], scope="ed*") as ends,
        ):
            assert every.reply["result"] == {"last": 2, "first": 1, "after": 0}
            seen += [e["seq"] for e in every.take(2)]
            assert cli("start", "--scope", "edit").returncode == 0
            assert cli("start", "--scope", "other").returncode == 0
            assert cli("end", "--scope", "edit").returncode == 0
            live = every.take(3)
            seen += [e["seq"] for e in live]
            assert [(e["kind"], e["session"]["scope"]) for e in live] == [
                ("started", "edit"),
                ("started", "other"),
                ("ended", "edit"),
            ]
            assert [e["seq"] for e in ends.take(2)] == [2, 5]
        daemon.stop()
    cli("end", "--scope", "other")  # embedded, while none runs
    with (
        run_daemon(tmp_path, data_dir, runtime_dir),
        Subscription(data_dir, runtime_dir, since=seen[-1]) as resumed,
    ):
        seen += [e["seq"] for e in resumed.take(1)]
        cli("start")
        seen += [e["seq"] for e in resumed.take(1)]
    assert seen == list(range(1, 8))


def test_subscribe_bad_requests_get_clear_errors(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir):
        for args, words in (
            ({"since": -1}, "since must be"),
            ({"since": 99}, "past the log's newest event"),
            ({"kinds": ["nope"]}, "unknown event kind nope"),
            ({"scope": 5}, "scope must be"),
            ({"since_time": "yesterday"}, "not an ISO 8601 time"),
        ):
            with Subscription(data_dir, runtime_dir, **args) as bad:
                assert bad.reply["ok"] is False
                assert words in bad.reply["error"]["message"], bad.reply


def test_follow_api_blocking_and_async_resume_across_a_daemon_restart(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    run = _runner(data_dir, runtime_dir)
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        run("start")
        stream = follow_events(since=0, data_dir=data_dir, runtime_dir=runtime_dir)
        first = next(stream)
        assert first.seq == 1
        assert isinstance(first, Event)
        assert first.kind is EventKind.STARTED
        daemon.stop()
    with run_daemon(tmp_path, data_dir, runtime_dir):
        run("end")
        second = next(stream)  # connected again by itself, after seq 1
        assert second.seq == 2
        assert isinstance(second, Event)
        assert second.kind is EventKind.ENDED
        stream.close()

        async def two() -> list[int]:
            seqs = []
            found = afollow_events(since=0, kinds=["ended"], data_dir=data_dir, runtime_dir=runtime_dir)
            async for event in found:
                seqs.append(event.seq)
                if len(seqs) == 2:
                    break
            return seqs

        run("start")
        run("end")
        assert asyncio.run(asyncio.wait_for(two(), 30)) == [2, 4]


def _runner(data_dir: Path, runtime_dir: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed CLI on a data dir with a daemon's runtime dir."""
    env = clean_env(data_dir.parent, SESSION_AGENT_RUNTIME_DIR=str(runtime_dir))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(SESSION_AGENT), "--data-dir", str(data_dir), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done

    return run


def test_events_follow_prints_live_and_ends_quietly_on_sigpipe_and_ctrl_c(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    env = clean_env(tmp_path, SESSION_AGENT_RUNTIME_DIR=str(runtime_dir))
    argv = [str(SESSION_AGENT), "--data-dir", str(data_dir), "events", "--follow", "--since", "0"]
    with run_daemon(tmp_path, data_dir, runtime_dir):
        piped = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        head = subprocess.Popen(["/usr/bin/head", "-n", "2"], stdin=piped.stdout, stdout=subprocess.PIPE)
        assert piped.stdout is not None
        piped.stdout.close()  # head's alone: once it exits, the follower's next line meets a closed pipe
        follower = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert cli("start").returncode == 0
        assert cli("end").returncode == 0
        out, _ = head.communicate(timeout=30)
        assert len(out.splitlines()) == 2
        assert cli("start").returncode == 0  # written into the pipe head has left
        _, err = piped.communicate(timeout=30)
        assert piped.returncode == 0, err
        assert err == b""
        assert follower.stdout is not None
        lines = [follower.stdout.readline() for _ in range(3)]
        assert [b"started" in lines[0], b"ended" in lines[1], b"started" in lines[2]] == [True] * 3
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
        assert follower.returncode == 130
        assert err == b""


def test_status_shows_the_log_and_its_subscribers(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir):
        cli("start")
        with Subscription(data_dir, runtime_dir):
            wait_for(lambda: json.loads(cli("status", "--json").stdout)["events"]["subscribers"] == 1)
            events = json.loads(cli("status", "--json").stdout)["events"]
            assert events == {"last": 1, "first": 1, "subscribers": 1}
            assert "last seq 1 (1 to 1 kept); 1 subscriber(s)" in cli("status").stdout


def test_a_store_from_before_the_log_reads_as_an_empty_log(data_dir: Path, cli: Cli) -> None:
    """A store written before the events family existed: read-only readers
    see an empty log; the first open for writing adds the family."""
    from rocksdict import Options, Rdict

    from agent.database import column_families, options

    data_dir.mkdir(mode=0o700, exist_ok=True)
    families = {k: v for k, v in column_families().items() if k != "events"}
    old = Rdict(str(data_dir / "db"), options(create=True), column_families=families)
    old.close()
    del Options
    done = cli("events", "--json")
    assert done.returncode == 0
    assert done.stdout == ""
    assert cli("start").returncode == 0
    assert _kinds(_events_json(cli)) == ["started"]


def test_the_log_survives_a_reopen(data_dir: Path) -> None:
    with open_manager(data_dir) as manager:
        manager.start()
        manager.end()
    with open_manager(data_dir) as manager:
        manager.start()
        assert [e.seq for e in manager.store.events.after(0)] == [1, 2, 3]


@pytest.mark.parametrize("env_scope", ["claude-1"])
def test_cli_events_scope_pattern_is_not_the_commands_scope(cli: Cli, env_scope: str) -> None:
    """``--scope`` of ``events`` is a pattern; ``SESSION_AGENT_SCOPE`` does not narrow it."""
    cli("start", "--scope", "claude-1")
    cli("start", "--scope", "vim")
    done = cli("events", "--json", env={"SESSION_AGENT_SCOPE": env_scope})
    assert len(done.stdout.splitlines()) == 2
    assert os.environ.get("SESSION_AGENT_SCOPE") is None


def _block(page: str, heading: str, language: str) -> str:
    """The first ``language`` code block after ``heading`` in ``page``."""
    after = page[page.index(heading) :]
    start = after.index(f"```{language}\n") + len(f"```{language}\n")
    return after[start : after.index("```", start)]


def test_the_documented_consumers_follow_sessions(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    """The five lines of shell and of Python in docs/events.md, run as written."""
    page = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    shell = _block(page, "five lines of shell", "sh")
    python = _block(page, "five of Python", "python")
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert shell in readme
    assert python in readme  # the README shows the same five lines
    env = clean_env(
        tmp_path,
        SESSION_AGENT_DATA_DIR=str(data_dir),
        SESSION_AGENT_RUNTIME_DIR=str(runtime_dir),
        PATH=f"{SESSION_AGENT.parent}:{os.environ['PATH']}",
    )
    home = Path(env["HOME"])
    home.mkdir(parents=True, exist_ok=True)
    with run_daemon(tmp_path, data_dir, runtime_dir):
        consumers: list[subprocess.Popen[str]] = [
            subprocess.Popen(["/bin/bash", "-c", shell], env=env, text=True, start_new_session=True),
            subprocess.Popen(
                [str(SESSION_AGENT.with_name("python")), "-c", python],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            ),
        ]
        try:
            wait_for(lambda: json.loads(cli("status", "--json").stdout)["events"]["subscribers"] == 2)
            sid = cli("start", "--project", "webshop").stdout.strip()
            cli("end")
            log = home / "sessions.log"
            wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 2)
            assert log.read_text().splitlines()[1].startswith(f"ended {sid} in default (completed, cli")
            printed = consumers[1].stdout
            assert printed is not None
            assert printed.readline().split() == ["1", "started", sid, "webshop"]
            assert printed.readline().split() == ["2", "ended", sid, "webshop"]
        finally:
            for consumer in consumers:
                os.killpg(consumer.pid, signal.SIGTERM)
                consumer.communicate(timeout=30)


def test_a_full_house_of_subscribers_refuses_the_next(manager: SessionManager) -> None:
    from agent.event_stream import EventStream

    async def scenario() -> tuple[dict[str, object], dict[str, object]]:
        loop = asyncio.get_running_loop()
        stream = EventStream(manager.store.events, max_subscribers=1)
        ours, theirs = zip(*(socket.socketpair() for _ in range(2)), strict=True)
        for sock in theirs:
            sock.setblocking(False)
        first_reader, first_writer = await asyncio.open_connection(sock=ours[0])
        served = asyncio.create_task(stream.serve({}, first_reader, first_writer))
        accepted = json.loads(await loop.sock_recv(theirs[0], 4096))
        second_reader, second_writer = await asyncio.open_connection(sock=ours[1])
        await stream.serve({}, second_reader, second_writer)  # answered at once, and done
        refused = json.loads(await loop.sock_recv(theirs[1], 4096))
        stream.stop()
        await served
        for sock in theirs:
            sock.close()
        second_writer.close()
        return accepted, refused

    accepted, refused = asyncio.run(scenario())
    assert accepted == {"v": 1, "ok": True, "result": {"last": 0, "first": 1, "after": 0}}
    assert refused["ok"] is False
    assert refused["error"] == {
        "type": "DaemonError",
        "message": "the daemon serves at most 1 subscribers (its limit); try again once some have left",
        "exit_code": 6,
    }


def test_following_from_now_misses_nothing_across_a_restart_before_any_event(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    """ "now" is resolved once, by the first daemon: reconnecting goes on from there."""
    import threading

    got: list[Event | Gap] = []
    stream = follow_events("now", data_dir=data_dir, runtime_dir=runtime_dir)
    reader = threading.Thread(target=lambda: got.append(next(stream)), daemon=True)
    cli("start")
    cli("end")
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        reader.start()
        wait_for(lambda: json.loads(cli("status", "--json").stdout)["events"]["subscribers"] == 1)
        daemon.stop()
    sid = cli("start").stdout.strip()  # while no daemon runs: the follower is reconnecting
    with run_daemon(tmp_path, data_dir, runtime_dir):
        reader.join(timeout=30)
        assert len(got) == 1
        assert isinstance(got[0], Event)
        assert (got[0].seq, got[0].session.id) == (3, sid)
        stream.close()


def test_a_subscription_the_daemon_refuses_is_raised_not_retried(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    from agent.errors import DaemonError

    with run_daemon(tmp_path, data_dir, runtime_dir):
        with pytest.raises(DaemonError, match="past the log's newest event"):
            next(follow_events(since=99, data_dir=data_dir, runtime_dir=runtime_dir))

        async def first() -> object:
            async for item in afollow_events(since=99, data_dir=data_dir, runtime_dir=runtime_dir):
                return item
            return None

        with pytest.raises(DaemonError, match="past the log's newest event"):
            asyncio.run(asyncio.wait_for(first(), 30))

"""Concurrency suite: many clients at once, through the daemon and embedded.

Racing starts: exactly one wins, the others are told which session is active
(exit 3) or, embedded, that the store is busy (exit 6); never two active
sessions. Mixed random operations from many clients keep the invariants
(checked with the crash suite's ``History``).
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agent.control.client import DaemonClient
from agent.errors import DaemonError
from agent.paths import Paths

from ..support.commands import CLI_TIMEOUT, SESSION_AGENT, clean_env
from ..support.crash_harness import SCOPES, History, all_sessions, read_file
from ..support.daemon_process import run_daemon

pytestmark = pytest.mark.reliability

RACERS = 32


def _race_cli(tmp_path: Path, data_dir: Path, runtime_dir: Path, *command: str) -> list[tuple[int, str, str]]:
    env = clean_env(tmp_path, SESSION_AGENT_RUNTIME_DIR=str(runtime_dir))
    procs = [
        subprocess.Popen(
            [str(SESSION_AGENT), "--data-dir", str(data_dir), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(RACERS)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=CLI_TIMEOUT * 2)
        results.append((proc.returncode, out.strip(), err))
    return results


def _listed(env: dict[str, str], data_dir: Path) -> dict[str, dict[str, Any]]:
    """Every session, by id, as `session-agent list --limit 0 --json` has them."""
    listed = subprocess.run(
        [str(SESSION_AGENT), "--data-dir", str(data_dir), "list", "--limit", "0", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT,
        check=True,
    )
    return {s["id"]: s for s in json.loads(listed.stdout)}


def _one_winner(results: list[tuple[int, str, str]], data_dir: Path, *, busy_allowed: bool) -> str:
    winners = [out for code, out, _ in results if code == 0]
    assert len(winners) == 1, results
    for code, _, err in results:
        assert "Traceback" not in err
        if code == 3:
            assert winners[0] in err  # names the session that won
        elif code != 0:
            assert busy_allowed, results
            assert code == 6, results
            assert "locked" in err, err
    assert (data_dir / "current_session").read_text() == f"{winners[0]}\n"
    return winners[0]


def test_racing_cli_starts_through_the_daemon_exactly_one_wins(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir):
        results = _race_cli(tmp_path, data_dir, runtime_dir, "start")
        _one_winner(results, data_dir, busy_allowed=False)
        assert sorted(code for code, _, _ in results) == [0] + [3] * (RACERS - 1), results


def test_racing_socket_starts_exactly_one_wins(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> None:
    """48 clients connected first (under the cap of 64), then released at once by a barrier."""
    clients = 48
    socket_path = Paths(data_dir, runtime_dir).socket
    with run_daemon(tmp_path, data_dir, runtime_dir):
        for _ in range(3):
            barrier = threading.Barrier(clients)

            def start(barrier: threading.Barrier = barrier) -> str | int:
                client = DaemonClient.connect(socket_path, data_dir)
                assert client is not None
                try:
                    barrier.wait()
                    return str(client.request("start")["id"])
                except DaemonError as exc:
                    return exc.exit_code
                finally:
                    client.close()

            with ThreadPoolExecutor(clients) as pool:
                outcomes = list(pool.map(lambda _: start(), range(clients)))
            won = [o for o in outcomes if isinstance(o, str)]
            assert len(won) == 1, outcomes
            assert outcomes.count(3) == clients - 1, outcomes
            client = DaemonClient.connect(socket_path, data_dir)
            assert client is not None
            ended = client.request("end")
            client.close()
            assert ended["id"] == won[0]


@pytest.mark.parametrize("through_daemon", [True, False])
def test_racing_replacing_starts_form_one_chain(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, through_daemon: bool
) -> None:
    """32 `start --replace` at once: each one that succeeded started a
    session; all but the last were replaced, each by a session that started
    as it ended; one is active and the file names it."""
    env = clean_env(tmp_path, SESSION_AGENT_RUNTIME_DIR=str(runtime_dir))
    with run_daemon(tmp_path, data_dir, runtime_dir) if through_daemon else contextlib.nullcontext():
        started = []
        for code, out, err in _race_cli(tmp_path, data_dir, runtime_dir, "start", "--replace", "--json"):
            assert "Traceback" not in err
            if through_daemon or code == 0:
                assert code == 0, err
                started.append(json.loads(out))
            else:
                assert code == 6, err  # embedded: the store was busy
        sessions = _listed(env, data_dir)
    assert set(sessions) == {s["id"] for s in started}
    active = [s for s in sessions.values() if s["status"] == "active"]
    assert len(active) == 1
    replaced = sorted((s for s in sessions.values() if s["end_reason"] == "replaced"), key=lambda s: s["id"])
    assert len(replaced) == len(sessions) - 1
    starts = sorted(s["started_at"] for s in sessions.values())
    assert sorted(s["ended_at"] for s in replaced) == starts[1:]  # each ended as the next began
    assert (data_dir / "current_session").read_text() == f"{active[0]['id']}\n"


def test_racing_embedded_starts_exactly_one_wins(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> None:
    results = _race_cli(tmp_path, data_dir, runtime_dir, "start")
    _one_winner(results, data_dir, busy_allowed=True)
    listed = subprocess.run(
        [str(SESSION_AGENT), "--data-dir", str(data_dir), "list", "--json"],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        timeout=CLI_TIMEOUT,
        check=True,
    )
    assert listed.stdout.count('"id"') == 1


def _mixed_worker(
    socket_path: Path,
    data_dir: Path,
    seed: int,
    history: History,
    lock: threading.Lock,
    requests: list[int],
) -> None:
    rng = random.Random(seed)
    paths = Paths(data_dir, socket_path.parent)
    client = DaemonClient.connect(socket_path, data_dir)
    assert client is not None
    try:
        for _ in range(60):
            roll = rng.random()
            scope = rng.choice(SCOPES)
            if roll < 0.6:
                op = rng.choice(("start", "end", "abandon", "current"))
                with lock:
                    requests[0] += 1
                try:
                    result = client.request(op, **({} if scope == "default" else {"scope": scope}))
                except DaemonError as exc:
                    refused = exc.exit_code
                    assert refused == 3, exc  # noqa: PT017 -- a start while one is active
                    with lock:
                        history.acknowledged += 1
                    continue
                with lock:
                    if op == "start":
                        history.started(result)
                    elif op in ("end", "abandon"):
                        history.ended(result)
                    else:
                        history.acknowledged += 1
                        history.saw(result)
            else:
                content = rng.choice((b"start\n", b"end\n", b"abandon\n", b"", b"junk\n"))
                current_file = paths.current_file_of(scope)
                current_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                temp = current_file.with_name(f"edit-{seed}-{rng.getrandbits(32):08x}")
                temp.write_bytes(content)
                temp.rename(current_file)
    finally:
        client.close()


def test_mixed_operations_from_many_clients_keep_the_invariants(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, seed: int
) -> None:
    socket_path = Paths(data_dir, runtime_dir).socket
    history = History()
    lock = threading.Lock()
    requests = [0]
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        workers = [
            threading.Thread(
                target=_mixed_worker, args=(socket_path, data_dir, seed + i, history, lock, requests)
            )
            for i in range(16)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert not any(worker.is_alive() for worker in workers)
        daemon.send(signal.SIGHUP)  # apply the last edit now rather than after the debounce
        client = DaemonClient.connect(socket_path, data_dir)
        assert client is not None
        views: dict[str, tuple[str | None, bytes | None]] = {}
        try:
            for scope in SCOPES:  # settles first, like every request
                current = client.request("current", **({} if scope == "default" else {"scope": scope}))
                views[scope] = (current and current["id"], read_file(_file_of(data_dir, scope)))
            sessions = all_sessions(client)
        finally:
            client.close()
        history.verify(sessions, *views.pop("default"), others=views)
        assert {s["scope"] for s in sessions.values()} == set(SCOPES)
    assert history.acknowledged == requests[0] > 0  # every request answered


def _file_of(data_dir: Path, scope: str) -> Path:
    """The current file of ``scope`` in ``data_dir``."""
    return Paths(data_dir, data_dir).current_file_of(scope)


def test_racing_starts_in_several_scopes_one_wins_in_each(
    tmp_path: Path, data_dir: Path, runtime_dir: Path
) -> None:
    """48 clients released at once, 16 in each of 3 scopes: one winner per scope, and
    each scope's file names its own."""
    clients = 48
    socket_path = Paths(data_dir, runtime_dir).socket
    barrier = threading.Barrier(clients)

    def start(index: int) -> tuple[str, str | int]:
        scope = SCOPES[index % len(SCOPES)]
        client = DaemonClient.connect(socket_path, data_dir)
        assert client is not None
        try:
            barrier.wait()
            return scope, str(
                client.request("start", **({} if scope == "default" else {"scope": scope}))["id"]
            )
        except DaemonError as exc:
            return scope, exc.exit_code
        finally:
            client.close()

    with run_daemon(tmp_path, data_dir, runtime_dir), ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(start, range(clients)))
    for scope in SCOPES:
        won = [o for s, o in outcomes if s == scope and isinstance(o, str)]
        lost = [o for s, o in outcomes if s == scope and not isinstance(o, str)]
        assert len(won) == 1, outcomes
        assert lost == [3] * (clients // len(SCOPES) - 1), outcomes
        assert read_file(_file_of(data_dir, scope)) == f"{won[0]}\n".encode()


def test_mixed_embedded_commands_keep_the_invariants(tmp_path: Path, data_dir: Path, seed: int) -> None:
    """Eight processes, each running ten random commands on the store in turn."""
    rng = random.Random(seed)
    env = clean_env(tmp_path)
    history = History()
    batches = [[rng.choice(("start", "end", "abandon", "current")) for _ in range(10)] for _ in range(8)]

    def run_batch(commands: list[str]) -> list[tuple[str, int, str]]:
        done = []
        for command in commands:
            proc = subprocess.run(
                [str(SESSION_AGENT), "--data-dir", str(data_dir), command],
                capture_output=True,
                text=True,
                env=env,
                timeout=CLI_TIMEOUT,
                check=False,
            )
            assert "Traceback" not in proc.stderr, proc.stderr
            done.append((command, proc.returncode, proc.stdout.strip()))
        return done

    with ThreadPoolExecutor(len(batches)) as pool:
        outcomes = [item for batch in pool.map(run_batch, batches) for item in batch]
    for command, code, out in outcomes:
        assert code in (0, 1, 3, 6), (command, code)
        if command == "start" and code == 0:
            history.acked_starts.add(out)
    sessions = _listed(env, data_dir)
    active = [sid for sid, s in sessions.items() if s["status"] == "active"]
    history.verify(sessions, active[0] if active else None, read_file(data_dir / "current_session"))

"""Hostile input suite: the control protocol, the current file and the
command line fuzzed against the real thing.

The daemon must stay up, keep its memory bounded, answer every frame with a
well-formed reply (or close an oversize one), serve an honest client within
a second however many idle, half-open or non-reading peers are connected,
and lose no session.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import cli as cli_group
from agent.control.client import ANSWER_TIMEOUT, DaemonClient
from agent.control.protocol import MAX_CONNECTIONS, MAX_REQUEST
from agent.errors import DaemonError, SessionAlreadyActiveError, SessionError
from agent.paths import Paths
from agent.testing import fill_store

from ..support.crash_harness import History, all_sessions, read_file
from ..support.daemon_process import DaemonProcess, run_daemon, wait_for
from ..support.helpers import Raw

pytestmark = pytest.mark.reliability

Report = Callable[[str], None]


def fuzz(examples: int, scale: int) -> settings:
    """Hypothesis settings: ``examples`` by default, ``scale`` times more with --run-slow."""
    return settings(max_examples=examples * scale, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def scale(pytestconfig: pytest.Config) -> int:
    return 10 if pytestconfig.getoption("--run-slow") else 1


OPS = ["ping", "start", "end", "abandon", "current", "get", "list", "status"]


@pytest.fixture
def daemon(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> Iterator[DaemonProcess]:
    with run_daemon(tmp_path, data_dir, runtime_dir) as running:
        yield running


@pytest.fixture
def sock_path(data_dir: Path, runtime_dir: Path) -> Path:
    return Paths(data_dir, runtime_dir).socket


def _well_formed(reply: dict[str, Any]) -> None:
    assert reply["v"] == 1
    assert reply["ok"] in (True, False)
    if not reply["ok"]:
        error = reply["error"]
        assert isinstance(error["message"], str)
        assert error["message"]
        assert error["exit_code"] in range(1, 8)
        assert "internal error" not in error["message"]


def _honest(sock_path: Path, data_dir: Path) -> float:
    """Seconds an honest client takes to connect and be answered."""
    began = time.monotonic()
    client = DaemonClient.connect(sock_path, data_dir)
    assert client is not None
    try:
        client.request("ping")
    finally:
        client.close()
    return time.monotonic() - began


# --- the protocol -----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=60),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
frames = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 1, 1, 0, 2, "1", None, 1.5, True]),
        "op": st.sampled_from(OPS) | st.text(max_size=20),
        "args": st.fixed_dictionaries(
            {},
            optional={
                "id": st.sampled_from(["../x", "", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"]) | json_values,
                "limit": st.integers(-5, 1000) | json_values,
                "statuses": st.lists(st.sampled_from(["active", "completed", "abandoned", "x"]))
                | json_values,
                "since": st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "now"]) | json_values,
                "before": json_values,
                "replace": st.booleans() | json_values,
                "owner_pid": st.sampled_from([1, 0, -1, 1 << 22, 1 << 40]) | json_values,
                "idle_timeout": st.sampled_from([1, 0, -5, "30m", "off", "soon", 10**12]) | json_values,
                "idle_grace": st.sampled_from([0, 2, "1s", "2h"]) | json_values,
                "scope": st.sampled_from(["nvim-1", "default", "..", "a/b", "x" * 10_000, "a\0", "é", ""])
                | json_values,
                "all_scopes": st.booleans() | json_values,
            },
        )
        | json_values,
    },
).map(lambda frame: json.dumps(frame).encode() + b"\n") | json_values.map(
    lambda v: json.dumps(v).encode() + b"\n"
)


def test_structured_frames_get_well_formed_replies(
    daemon: DaemonProcess, sock_path: Path, data_dir: Path, report: Report, scale: int
) -> None:
    raw = Raw(sock_path)
    count = [0]

    @fuzz(300, scale)
    @given(frames)
    def check(frame: bytes) -> None:
        count[0] += 1
        raw.send(frame)
        _well_formed(raw.reply())

    try:
        check()
    finally:
        raw.close()
    assert daemon.proc.poll() is None
    _honest(sock_path, data_dir)
    report(f"protocol fuzz: {count[0]} structured frames, all answered with a well-formed reply")


def test_random_bytes_get_well_formed_replies_or_a_closed_connection(
    daemon: DaemonProcess, sock_path: Path, data_dir: Path, report: Report, scale: int
) -> None:
    count = [0]

    @fuzz(300, scale)
    @given(st.binary(max_size=512))
    def check(data: bytes) -> None:
        count[0] += 1
        raw = Raw(sock_path)
        try:
            raw.send(data + b"\n")
            raw.sock.shutdown(socket.SHUT_WR)
            replies = 0
            while True:
                try:
                    line = raw.line()
                except EOFError:
                    break
                _well_formed(json.loads(line))
                replies += 1
            assert replies <= data.count(b"\n") + 1
        finally:
            raw.close()

    check()
    assert daemon.proc.poll() is None
    _honest(sock_path, data_dir)
    report(f"protocol fuzz: {count[0]} random byte strings")


def test_oversize_frames_are_refused_without_buffering_them(
    daemon: DaemonProcess, sock_path: Path, data_dir: Path
) -> None:
    before = psutil.Process(daemon.pid).memory_info().rss
    for size in (MAX_REQUEST + 1, 4 * MAX_REQUEST, 16 << 20):
        raw = Raw(sock_path)
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                raw.send(b"{" * size)  # may be closed on us once past the cap: as it should
            try:
                reply = raw.reply()
                assert f"longer than {MAX_REQUEST} bytes" in reply["error"]["message"]
            except (EOFError, ConnectionResetError):
                pass
        finally:
            raw.close()
    assert daemon.proc.poll() is None
    assert psutil.Process(daemon.pid).memory_info().rss - before < 16 << 20  # never held 16 MiB
    _honest(sock_path, data_dir)


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def test_thousands_of_idle_half_open_and_non_reading_peers_do_not_starve_honest_clients(
    tmp_path: Path,
    data_dir: Path,
    runtime_dir: Path,
    sock_path: Path,
    report: Report,
    request: pytest.FixtureRequest,
) -> None:
    """2,000 peers with --run-slow (600, ten times the daemon's connection
    cap, by default): idle, half a request, half a request then EOF, and
    clients that send requests for large replies and never read them."""
    peers_wanted = 2000 if request.config.getoption("--run-slow") else 600
    _raise_fd_limit(peers_wanted + 256)
    fill_store(data_dir, 1000)  # so that a listing is ~200 KB: more than a socket buffers
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        process = psutil.Process(daemon.pid)
        _honest(sock_path, data_dir)
        rss_before = process.memory_info().rss
        peers: list[socket.socket] = []
        waits = []
        try:
            for i in range(peers_wanted):
                peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                peer.settimeout(10)
                peer.connect(str(sock_path))
                kind = i % 4
                try:
                    if kind == 1:
                        peer.sendall(b'{"v": 1, "op": "cur')
                    elif kind == 2:
                        peer.sendall(b'{"v": 1, "op": "sta')
                        peer.shutdown(socket.SHUT_WR)
                    elif kind == 3:
                        peer.setblocking(False)
                        try:
                            for _ in range(20):
                                peer.send(b'{"v": 1, "op": "list", "args": {"limit": 500}}\n')
                        except BlockingIOError:
                            pass
                except (BrokenPipeError, ConnectionResetError):
                    pass  # already pushed out by newer peers
                peers.append(peer)
                if i % 100 == 99:
                    waits.append(_honest(sock_path, data_dir))
            rss_after = process.memory_info().rss
            connections = json.loads(json.dumps(_status(sock_path, data_dir)))["daemon"]["connections"]
        finally:
            for peer in peers:
                peer.close()
        assert daemon.proc.poll() is None
        assert connections <= MAX_CONNECTIONS
    growth = (rss_after - rss_before) / 2**20
    report(
        f"connections: {peers_wanted} hostile peers (idle, half-sent, half-closed, never reading); "
        f"honest client served in median {statistics.median(waits) * 1000:.1f} ms, "
        f"max {max(waits) * 1000:.1f} ms; "
        f"daemon RSS grew {growth:.1f} MiB"
    )
    # Served at all, within the CLI's own deadline: a starved client would
    # have timed out (exit 6). How fast is a figure, reported above.
    assert max(waits) < ANSWER_TIMEOUT, waits
    assert growth < 32, growth


def _status(sock_path: Path, data_dir: Path) -> dict[str, Any]:
    client = DaemonClient.connect(sock_path, data_dir)
    assert client is not None
    try:
        result: dict[str, Any] = client.request("status")
        return result
    finally:
        client.close()


# --- the current file ---------------------------------------------------------------

FILE_CONTENTS = [
    b"start", b"end", b"abandon", b" START \n", b"End", b"", b"  \n\t", b"\xff\xfe", b"x" * 5000,
    b"start replace", b"start owner=1", b"start owner=999999", b"start idle=1s grace=1s",
    b"start idle=", b"start owner=1 owner=1", b"start replace=1", b"start idle=5m grace=1h",
]  # fmt: skip

file_actions = st.one_of(
    st.tuples(
        st.just("write"),
        st.sampled_from(FILE_CONTENTS) | st.binary(max_size=64),
        st.booleans(),  # atomically (rename) or in place
    ),
    st.tuples(st.just("active-id"), st.booleans(), st.booleans()),  # rewrite or touch the active id
    st.tuples(st.sampled_from(["delete", "symlink", "fifo", "socket", "directory", "hardlink"]), st.none()),
    st.tuples(st.sampled_from(["socket-start", "socket-end", "sighup"]), st.none()),
)


def _replace(path: Path, make: Callable[[], object]) -> None:
    """Remove ``path`` and ``make`` something else there; the daemon may write
    the file in between (the truth, after an earlier edit): then again."""
    for _ in range(50):
        path.unlink(missing_ok=True)
        try:
            make()
            return
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise AssertionError(f"could not replace {path}: something keeps writing it")


def _bound_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


class _FileFuzzer:
    """Edits one scope's current file (the default scope's unless told);
    SIGHUP and the socket's start and end act on the same scope."""

    def __init__(
        self, daemon: DaemonProcess, data_dir: Path, sock_path: Path, tmp_path: Path, scope: str = "default"
    ) -> None:
        self.daemon = daemon
        self.data_dir = data_dir
        self.scope = scope
        self.scoped = {} if scope == "default" else {"scope": scope}
        self.current = Paths(data_dir, tmp_path).current_file_of(scope)
        self.current.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.sock_path = sock_path
        self.tmp_path = tmp_path
        self.history = History()
        self.actions = 0

    def client(self) -> DaemonClient:
        client = DaemonClient.connect(self.sock_path, self.data_dir)
        assert client is not None
        return client

    def act(self, action: tuple[Any, ...]) -> None:
        self.actions += 1
        kind = action[0]
        path = self.current
        if kind in ("socket-start", "socket-end", "sighup"):
            if kind == "sighup":
                self.daemon.send(signal.SIGHUP)
                return
            client = self.client()
            try:
                if kind == "socket-start":
                    try:
                        self.history.started(client.request("start", **self.scoped))
                    except DaemonError as exc:
                        if exc.exit_code != SessionAlreadyActiveError.exit_code:
                            raise
                else:
                    self.history.ended(client.request("end", **self.scoped))
            finally:
                client.close()
            return
        self._clear_special()
        if kind == "write":
            _, content, atomic = action
            if atomic:
                temp = path.with_name(".fuzz-edit")
                temp.write_bytes(content)
                temp.rename(path)
            else:
                with open(path, "wb") as f:
                    f.write(content)
        elif kind == "active-id":
            text = read_file(path)
            if text and len(text.strip()) == 36:
                if action[1]:
                    os.utime(path)
                else:
                    path.write_bytes(text.strip() + (b"\n" if action[2] else b""))
        elif kind == "delete":
            path.unlink(missing_ok=True)
        elif kind == "symlink":
            victim = self.tmp_path / "victim"
            victim.write_text("start\n")
            _replace(path, lambda: path.symlink_to(victim))
        elif kind == "fifo":
            _replace(path, lambda: os.mkfifo(path, 0o600))
        elif kind == "socket":
            _replace(path, lambda: _bound_socket(path))
        elif kind == "directory":
            _replace(path, path.mkdir)
        elif kind == "hardlink":
            other = self.tmp_path / "other-link-target"
            other.write_text("start\n")
            _replace(path, lambda: os.link(other, path))
        if kind in ("symlink", "fifo", "socket", "directory", "hardlink"):
            self._apply_now()  # the daemon meets it before anything else changes
            if kind == "directory":
                assert path.is_dir(), "a directory is reported and left alone"
            else:
                assert not path.is_symlink()
                assert not path.exists() or path.is_file(), f"a {kind} was not replaced"

    def _apply_now(self) -> None:
        client = self.client()
        try:
            self.history.saw(client.request("current", **self.scoped))  # every request settles first
        finally:
            client.close()

    def _clear_special(self) -> None:
        """Take away what the fuzzer itself must not write through or block
        on (the daemon meets each of these in the actions before this one)."""
        path = self.current
        if path.is_symlink() or path.is_fifo() or path.is_socket():
            path.unlink(missing_ok=True)
        elif path.is_dir():
            path.rmdir()

    def settle_and_verify(self) -> None:
        self._clear_special()
        victim = self.tmp_path / "victim"
        assert not victim.exists() or victim.read_text() == "start\n"  # never written through
        self.daemon.send(signal.SIGHUP)
        client = self.client()
        try:
            current = client.request("current", **self.scoped)  # settles first
            sessions = all_sessions(client)
        finally:
            client.close()
        view = (current and current["id"], read_file(self.current))
        if self.scope == "default":
            self.history.verify(sessions, *view)
        else:
            self.history.verify(
                sessions, None, read_file(self.data_dir / "current_session"), others={self.scope: view}
            )
        assert self.daemon.proc.poll() is None


@pytest.mark.parametrize("scope", ["default", "nvim-1"])
def test_the_current_file_fuzzed_against_the_daemon_keeps_the_invariants(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, sock_path: Path, report: Report, scale: int, scope: str
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        fuzzer = _FileFuzzer(daemon, data_dir, sock_path, tmp_path, scope)
        examples = [0]

        @fuzz(30, scale)
        @given(st.lists(file_actions, min_size=1, max_size=25))
        def check(actions: list[tuple[Any, ...]]) -> None:
            examples[0] += 1
            for action in actions:
                fuzzer.act(action)
            fuzzer.settle_and_verify()

        check()
    report(
        f"file fuzz ({scope} scope): {examples[0]} sequences, {fuzzer.actions} edits, "
        "sessions consistent after each"
    )


def test_edits_racing_the_daemons_own_writes_keep_the_invariants(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, sock_path: Path, seed: int
) -> None:
    """A thread starts and ends sessions through the socket as fast as it
    can while another rewrites the file with every kind of content."""
    import random

    rng = random.Random(seed)
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        fuzzer = _FileFuzzer(daemon, data_dir, sock_path, tmp_path)
        stop = threading.Event()
        errors: list[BaseException] = []

        def drive() -> None:
            try:
                while not stop.is_set():
                    fuzzer.act(("socket-start", None))
                    fuzzer.act(("socket-end", None))
            except BaseException as exc:
                errors.append(exc)

        driver = threading.Thread(target=drive)
        driver.start()
        contents = [b"start\n", b"end\n", b"abandon\n", b"", b"junk\n", b"\xff"]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            fuzzer.act(("write", rng.choice(contents), rng.random() < 0.5))
        stop.set()
        driver.join(timeout=30)
        assert not errors, errors
        wait_for(lambda: daemon.proc.poll() is None)
        fuzzer.settle_and_verify()


# --- the command line ---------------------------------------------------------------

words = st.sampled_from(
    [
        "start", "end", "abandon", "current", "show", "list", "status", "--json", "--status",
        "--since", "--limit", "active", "completed", "abandoned", "90m", "2h", "7d", "0", "-1",
        "99999999999999999999", "2026-01-01", "2026-13-45T99:00", "../x", "", "\x00", "🙂",
        "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "--debug", "--version", "--help", "-x", "x" * 5000,
        "--replace", "--owner-pid", "--idle-timeout", "--idle-grace", "1", "30m", "off", "4194305",
        "--scope", "--all-scopes", "nvim-1", "default", "..", "a/b", "touch", "path",
    ]
) | st.text(max_size=20)  # fmt: skip


def test_fuzzed_command_lines_get_a_clear_answer_and_lose_nothing(
    tmp_path: Path, data_dir: Path, report: Report, scale: int
) -> None:
    """In-process through click (fast), embedded on a real store; ``daemon``
    and ``service`` are left out: they start a daemon or write unit files."""
    runner = CliRunner()
    env = {"SESSION_AGENT_DATA_DIR": str(data_dir), "SESSION_AGENT_RUNTIME_DIR": str(tmp_path / "rt")}
    history = History()
    count = [0]

    @fuzz(300, scale)
    @given(st.lists(words, max_size=6))
    def check(argv: list[str]) -> None:
        if argv and argv[0] in ("daemon", "service"):
            return
        count[0] += 1
        result = runner.invoke(cli_group, argv, env=env, catch_exceptions=True)
        if isinstance(result.exception, SessionError) and "--debug" in argv:
            return  # --debug shows the error with its traceback, as documented
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{argv!r} raised {result.exception!r}:\n{result.output}")
        assert result.exit_code in range(8), (argv, result.exit_code, result.output)
        assert "Traceback" not in result.output
        if result.exit_code == 0 and argv[:1] == ["start"] and len(argv) == 1:
            history.acked_starts.add(result.stdout.strip())

    check()
    done = runner.invoke(cli_group, ["list", "--json", "--limit", "0", "--all-scopes"], env=env)
    sessions = {s["id"]: s for s in json.loads(done.stdout)}
    views = {}
    for scope in {s["scope"] for s in sessions.values()} | {"default"}:
        current = runner.invoke(cli_group, ["current", "--scope", scope], env=env).stdout.strip() or None
        views[scope] = (current, read_file(Paths(data_dir, data_dir).current_file_of(scope)))
    history.verify(sessions, *views.pop("default"), others=views)
    report(f"CLI fuzz: {count[0]} command lines, each a clear answer (exit 0-7), no traceback")

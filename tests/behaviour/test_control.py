"""The control protocol against the real daemon: framing, errors, limits,
paging, and peers that are not welcome."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.control.protocol import MAX_CONNECTIONS, MAX_PAGE, MAX_REQUEST
from agent.errors import DaemonError
from agent.paths import Paths

from ..support.commands import Cli
from ..support.daemon_process import DaemonProcess, run_daemon, wait_for
from ..support.helpers import Raw


@pytest.fixture
def daemon(tmp_path: Path, data_dir: Path, runtime_dir: Path) -> Iterator[DaemonProcess]:
    with run_daemon(tmp_path, data_dir, runtime_dir) as running:
        yield running


@pytest.fixture
def sock_path(data_dir: Path, runtime_dir: Path) -> Path:
    return Paths.resolve(data_dir, runtime_dir).socket


@pytest.fixture
def raw(daemon: DaemonProcess, sock_path: Path) -> Iterator[Raw]:
    client = Raw(sock_path)
    yield client
    client.close()


def test_ping_and_several_requests_on_one_connection(daemon: DaemonProcess, raw: Raw) -> None:
    assert raw.call("ping")["pid"] == daemon.pid
    assert raw.call("touch") is None  # none active
    started = raw.call("start")
    assert raw.call("current") == started
    assert raw.call("touch") == started  # within its first second: nothing to record yet
    assert raw.call("get", id=started["id"]) == started
    ended = raw.call("end", id=started["id"])
    assert ended["status"] == "completed"
    assert raw.call("end") is None  # idempotent
    assert raw.call("current") is None


def test_errors_carry_the_cli_exit_code(raw: Raw) -> None:
    raw.call("start")
    with pytest.raises(DaemonError) as caught:
        raw.call("start")
    assert caught.value.exit_code == 3
    assert "is already active" in str(caught.value)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"this is not json\n", "not valid JSON"),
        (b"[1, 2]\n", "must be a JSON object"),
        (b'{"v": 2, "op": "ping"}\n', "unsupported protocol version 2"),
        (b'{"v": 1, "op": "format_disk"}\n', "unknown op 'format_disk'"),
        (b'{"v": 1, "op": "end", "args": []}\n', "args must be a JSON object"),
        (b'{"v": 1, "op": "get", "args": {"id": "../../etc/passwd"}}\n', "invalid session id"),
        (b'{"v": 1, "op": "get", "args": {"id": 42}}\n', "id must be a string"),
        (b'{"v": 1, "op": "get", "args": {}}\n', "needs an id"),
        (b'{"v": 1, "op": "list", "args": {"limit": 100000}}\n', "limit must be a whole number from 1"),
        (b'{"v": 1, "op": "list", "args": {"limit": 5, "statuses": ["lost"]}}\n', "statuses must be among"),
        (b'{"v": 1, "op": "list", "args": {"limit": 5, "since": "yesterday"}}\n', "is not an ISO 8601 time"),
        (b"\xff\xfe\n", "not valid UTF-8"),
        (b'{"v": true, "op": "ping"}\n', "unsupported protocol version True"),  # true is not 1
        (
            b'{"v": 1, "op": "ping", "args": {"x": ' + b"[" * 30000 + b"]" * 30000 + b"}}\n",
            "nested too deeply",
        ),
    ],
)
def test_bad_requests_get_a_specific_error_and_the_connection_goes_on(
    raw: Raw, line: bytes, problem: str
) -> None:
    raw.send(line)
    reply = raw.reply()
    assert reply["ok"] is False
    assert problem in reply["error"]["message"]
    assert reply["error"]["exit_code"] == 2
    assert raw.call("current") is None  # still served


def test_an_oversize_request_is_refused_and_the_connection_closed(daemon: DaemonProcess, raw: Raw) -> None:
    raw.send(b"x" * (MAX_REQUEST + 10))
    reply = raw.reply()
    assert f"longer than {MAX_REQUEST} bytes" in reply["error"]["message"]
    assert raw.closed_by_peer()
    assert daemon.proc.poll() is None


def test_at_the_connection_cap_idle_peers_make_room_for_an_honest_client(
    daemon: DaemonProcess, sock_path: Path, cli: Cli
) -> None:
    idle = [Raw(sock_path) for _ in range(MAX_CONNECTIONS * 3)]
    try:
        began = time.monotonic()
        done = cli("current")
        took = time.monotonic() - began
        assert done.returncode == 1, done.stderr
        assert took < 3.0  # a CLI start-up plus one request: not a wait for a free slot
        report = json.loads(cli("status", "--json").stdout)
        assert report["daemon"]["connections"] <= MAX_CONNECTIONS
        assert sum(client.closed_by_peer() for client in idle[: MAX_CONNECTIONS * 2]) >= MAX_CONNECTIONS
    finally:
        for client in idle:
            client.close()


def test_list_pages_through_more_than_one_reply(daemon: DaemonProcess, raw: Raw, cli: Cli) -> None:
    count = MAX_PAGE + 37
    for _ in range(count):
        raw.call("start")
        raw.call("end")
    everything = json.loads(cli("list", "--limit", "0", "--json").stdout)
    assert len(everything) == count
    ids = [s["id"] for s in everything]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == count
    some = json.loads(cli("list", "--limit", str(MAX_PAGE + 5), "--json").stdout)
    assert [s["id"] for s in some] == ids[: MAX_PAGE + 5]


@pytest.mark.skipif(os.geteuid() != 0, reason="running a client as another uid needs root")
def test_a_client_of_another_uid_is_refused(
    daemon: DaemonProcess, sock_path: Path, runtime_dir: Path, data_dir: Path
) -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv is missing: scripts/test installs util-linux"
    # Open the way to the socket for everyone: the uid check must hold by itself.
    for directory in (runtime_dir, sock_path.parent):
        directory.chmod(0o711)
    sock_path.chmod(0o666)
    # The refusal comes at once, before any request; a start sent after it
    # finds the connection closed.
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(10)\n"
        "s.connect(sys.argv[1])\n"
        "print(s.recv(4096).decode())\n"
        "try:\n"
        '    s.sendall(b\'{"v": 1, "op": "start", "args": {}}\\n\')\n'
        "    assert s.recv(4096) == b''\n"
        "except OSError:\n"
        "    pass\n"
    )
    python = next(p for p in ("/usr/bin/python3", shutil.which("python3") or "") if p and os.path.exists(p))
    done = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", probe, str(sock_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["ok"] is False
    assert "serves only its own user" in reply["error"]["message"]
    wait_for(lambda: "refused a control connection from uid 65534" in daemon.log())
    assert not (data_dir / "current_session").exists()  # the start was not carried out


def test_shutdown_does_not_wait_for_a_half_sent_request(daemon: DaemonProcess, raw: Raw) -> None:
    raw.call("ping")
    raw.send(b'{"v": 1, "op": "cur')  # and then nothing
    began = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - began < 5  # the 10 s idle timeout did not hold it up
    assert raw.closed_by_peer()

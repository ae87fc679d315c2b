"""Security checks: private files and sockets whatever the umask, no symlink
followed where one could be planted, hostile ids stopped before they become
keys or paths. (A client of another uid is refused: test_control.py.)"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent import SessionIOError
from agent.control.client import DaemonClient
from agent.current_file import CurrentFile
from agent.errors import DaemonError
from agent.layout import PIDFILE_NAME
from agent.paths import Paths

from ..support.commands import Cli, start_session
from ..support.daemon_process import refused_daemon, run_daemon

pytestmark = pytest.mark.reliability


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    found = {str(root): stat.S_IMODE(os.lstat(root).st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            found[path] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def test_every_file_and_socket_is_private_whatever_the_umask(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    data_dir.rmdir()  # let the agent create it
    with umask(0):
        with run_daemon(tmp_path, data_dir, runtime_dir):
            start_session(cli)
            assert cli("end").returncode == 0
            start_session(cli)
            socket_modes = _modes(runtime_dir)
        assert cli("end").returncode == 0  # embedded, still under umask 0
    for path, mode in {**_modes(data_dir), **socket_modes}.items():
        assert mode & 0o077 == 0, f"{path} has mode {mode:o}"
    sock = Paths(data_dir, runtime_dir).socket
    assert socket_modes[str(sock)] == 0o600


def test_a_planted_pidfile_symlink_is_not_followed(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (data_dir / PIDFILE_NAME).symlink_to(victim)
    assert "it is a symlink" in refused_daemon(tmp_path, data_dir, runtime_dir, 5)
    assert cli("status").returncode == 7  # reads the pid without following it either
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("where", ["runtime dir", "socket dir"])
def test_a_planted_runtime_or_socket_dir_symlink_is_refused(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, where: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if where == "runtime dir":
        runtime = tmp_path / "rt"
        runtime.symlink_to(elsewhere)
    else:
        runtime = runtime_dir
        Paths(data_dir, runtime).socket_dir.symlink_to(elsewhere)
    assert "is a symlink, which is not followed here" in refused_daemon(tmp_path, data_dir, runtime, 5)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("suffix", ["tmp", "old"])
def test_a_planted_temp_file_symlink_is_not_followed(tmp_path: Path, data_dir: Path, suffix: str) -> None:
    """The temporary names are random; this plants one at the name the next
    write will use, as an attacker who could guess it would."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    current = CurrentFile(data_dir, temp_token=lambda: "000000000000")
    planted = data_dir / f".current_session.000000000000.{suffix}"
    planted.symlink_to(victim)
    sid = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    if suffix == "tmp":  # a new file is created there: O_EXCL | O_NOFOLLOW refuses
        with pytest.raises(SessionIOError, match="cannot write"):
            current.replace(current.observe(), sid)
    else:  # the old file is renamed there: rename replaces the link itself
        current.replace(current.observe(), sid)
        assert current.replace(current.observe(), None) is None
        assert not current.path.exists()
    assert victim.read_text() == "precious\n"


HOSTILE_IDS = [
    "../../etc/passwd",
    "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/../x",
    "x" * 10_000,
    "\x00",
    "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\x00",
    "🙂" * 36,
    "",
]


def test_hostile_ids_are_rejected_before_they_become_keys_or_paths(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli
) -> None:
    with run_daemon(tmp_path, data_dir, runtime_dir):
        sid = start_session(cli)
        before = sorted(os.listdir(data_dir))
        client = DaemonClient.connect(Paths(data_dir, runtime_dir).socket, data_dir)
        assert client is not None
        try:
            for hostile in HOSTILE_IDS:
                for op in ("get", "end", "abandon"):
                    with pytest.raises(DaemonError) as caught:
                        client.request(op, id=hostile)
                    assert caught.value.exit_code == 2, (op, hostile)
                    assert "invalid session id" in str(caught.value)
            assert client.request("current")["id"] == sid  # nothing ended
            listed = client.request("list", limit=500)["sessions"]
        finally:
            client.close()
        assert [s["id"] for s in listed] == [sid]
        assert sorted(os.listdir(data_dir)) == before
    for hostile in HOSTILE_IDS[:3]:
        done = cli("show", hostile)
        assert done.returncode == 2
        assert "invalid session id" in done.stderr

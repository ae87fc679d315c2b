"""Hostile neighbours and odd files: another local user planting things
where we look (a real second user, made with ``useradd``), our own files
replaced by directories and FIFOs, and settings that would put data in the
wrong place."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ..support.commands import SESSION_AGENT, Cli, clean_env, open_manager
from ..support.daemon_process import refused_daemon, run_daemon, wait_for

pytestmark = pytest.mark.reliability

NEIGHBOUR = "sa-neighbour"


@pytest.fixture(scope="session")
def neighbour() -> int:
    """The uid of a second local user (created when missing: we run as root)."""
    try:
        return pwd.getpwnam(NEIGHBOUR).pw_uid
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run([useradd, "--system", "--no-create-home", NEIGHBOUR], check=True, timeout=60)
    return pwd.getpwnam(NEIGHBOUR).pw_uid


def _as_neighbour(uid: int, *argv: str) -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "scripts/test installs util-linux"
    subprocess.run(
        [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv], check=True, timeout=30
    )


@pytest.mark.parametrize("planted", ["directory", "file", "fifo"])
def test_a_runtime_dir_planted_by_another_user_locks_nobody_out(
    tmp_path: Path, neighbour: int, planted: str, request: pytest.FixtureRequest
) -> None:
    # No XDG_RUNTIME_DIR: the runtime dir falls back to <tmp>/session-agent-<uid>,
    # in a directory every user can write to. Before: every command exit 5.
    shared_tmp = Path(tempfile.mkdtemp(prefix="sa-shared-", dir="/tmp"))  # reachable by the neighbour
    shared_tmp.chmod(0o1777)
    request.addfinalizer(lambda: shutil.rmtree(shared_tmp, ignore_errors=True))
    spot = shared_tmp / f"session-agent-{os.getuid()}"
    make = {"directory": ["mkdir", "-m", "700"], "file": ["touch"], "fifo": ["mkfifo"]}[planted]
    _as_neighbour(neighbour, *make, str(spot))
    env = clean_env(tmp_path, TMPDIR=str(shared_tmp))
    env.pop("XDG_RUNTIME_DIR")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SESSION_AGENT), *args], capture_output=True, text=True, env=env, timeout=30, check=False
        )

    started = run("start")
    assert started.returncode == 0, started.stderr  # embedded: the planted path is not ours
    assert run("current").stdout == started.stdout
    assert started.stdout.strip() in run("list").stdout
    assert run("end").returncode == 0
    daemon = run("daemon")
    assert daemon.returncode == 5
    assert f"{spot} " in daemon.stderr
    assert "choose another with --runtime-dir" in daemon.stderr
    assert os.lstat(spot).st_uid == neighbour  # untouched


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_config_toml_that_is_not_a_file_is_named_and_nothing_else_breaks(
    tmp_path: Path, data_dir: Path, runtime_dir: Path, cli: Cli, kind: str
) -> None:
    config = data_dir / "config.toml"
    if kind == "directory":
        config.mkdir()
    else:
        os.mkfifo(config)
    refused = cli("start")
    assert refused.returncode == 2
    assert f"{config} is {'a directory' if kind == 'directory' else 'not a regular file'}" in refused.stderr
    assert cli("list").returncode == 0  # reads do not need it
    assert cli("status").returncode == 7
    with run_daemon(tmp_path, data_dir, runtime_dir) as daemon:
        through = cli("start")
        assert through.returncode == 2
        assert "config.toml must be a file" in through.stderr
        assert "internal error" not in through.stderr
        (data_dir / "current_session").write_text("start\n")  # a file edit still starts one
        wait_for(lambda: cli("current").returncode == 0)
        assert "starting with the built-in defaults" in daemon.log()


def test_a_daemon_refused_for_its_runtime_dir_says_which_option(tmp_path: Path, data_dir: Path) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o777)
    runtime.chmod(0o777)
    log = refused_daemon(tmp_path, data_dir, runtime, 5)
    assert f"{runtime} is writable by other users" in log
    assert "choose another with --runtime-dir" in log


def test_the_scope_cap_holds_for_directories_made_behind_our_back(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: 3,000 directories made with `mkdir -p`, each with `start`
    # written, started 3,000 sessions past the cap of 1,024 (here: 3).
    monkeypatch.setattr("agent.scope_dirs.MAX_SCOPES", 3)
    for n in range(6):
        scope = data_dir / "scopes" / f"made-{n}"
        scope.mkdir(parents=True, mode=0o700)
        (scope / "current_session").write_text("start\n")
    with open_manager(data_dir) as manager:
        actives = manager.reconcile_all()
        assert len(actives) == 3
        refused = [n for n in range(6) if f"made-{n}" not in actives]
        for n in refused:  # their files restored: no session there
            assert not (data_dir / "scopes" / f"made-{n}" / "current_session").exists()


def test_a_root_data_dir_and_an_empty_home_are_refused(tmp_path: Path) -> None:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        full = clean_env(tmp_path, **env)
        full.pop("XDG_DATA_HOME")
        return subprocess.run(
            [str(SESSION_AGENT), *args], capture_output=True, text=True, env=full, timeout=30, check=False
        )

    root = run("--data-dir", "/", "start")
    assert root.returncode == 2
    assert "the data dir cannot be / itself" in root.stderr
    for home in ("", "relative/home"):
        empty = run("start", HOME=home)
        assert empty.returncode == 2, empty.stderr
        assert f"HOME is {home!r}, so there is no default data dir" in empty.stderr
    assert run("--data-dir", str(tmp_path / "d"), "start", HOME="").returncode == 0  # given: fine

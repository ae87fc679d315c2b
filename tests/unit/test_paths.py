"""Where files live: precedence, defaults, the per-data-dir socket, safety."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import SessionIOError
from agent.paths import Paths, ensure_private_dir


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("SESSION_AGENT_DATA_DIR", raising=False)
    monkeypatch.delenv("SESSION_AGENT_RUNTIME_DIR", raising=False)
    return tmp_path


def test_defaults_follow_xdg(xdg: Path) -> None:
    paths = Paths.resolve()
    assert paths.data_dir == xdg / "share" / "session-agent"
    assert paths.runtime_dir == xdg / "run" / "session-agent"
    assert paths.current_file == paths.data_dir / "current_session"
    assert paths.db == paths.data_dir / "db"
    assert paths.socket == xdg / "run" / "session-agent" / "control.sock"


@pytest.mark.parametrize("xdg_data_home", ["/abs/share", "relative/share", "", None])
def test_the_default_data_dir_is_platformdirs_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xdg_data_home: str | None
) -> None:
    """Computed without importing platformdirs (the CLI's hot path), it must
    still be the directory platformdirs names."""
    import platformdirs

    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg_data_home is None:
        monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_DATA_HOME", xdg_data_home)
    expected = Path(platformdirs.user_data_dir("session-agent", appauthor=False)).absolute()
    assert Paths.resolve(runtime_dir=tmp_path).data_dir == expected


def test_option_beats_environment_beats_default(xdg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_AGENT_DATA_DIR", str(xdg / "env-data"))
    monkeypatch.setenv("SESSION_AGENT_RUNTIME_DIR", str(xdg / "env-run"))
    assert Paths.resolve() == Paths(xdg / "env-data", xdg / "env-run")
    assert Paths.resolve(xdg / "opt-data", xdg / "opt-run") == Paths(xdg / "opt-data", xdg / "opt-run")


def test_an_unusable_xdg_runtime_dir_falls_back_to_a_per_user_tmp_dir(
    xdg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (xdg / "run").chmod(0o755)
    assert Paths.resolve().runtime_dir.name == f"session-agent-{os.getuid()}"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert Paths.resolve().runtime_dir.name == f"session-agent-{os.getuid()}"


def test_each_data_dir_gets_its_own_short_socket_path(xdg: Path) -> None:
    a = Paths.resolve(xdg / ("a" * 200))
    b = Paths.resolve(xdg / "b")
    assert a.socket != b.socket
    assert a.socket.parent.parent == a.runtime_dir
    # The data dir's length never reaches the socket path (sun_path is 107 bytes).
    assert (
        len(str(a.socket))
        == len(str(b.socket))
        == len(str(a.runtime_dir)) + len("/d-0123456789abcdef/control.sock")
    )
    assert Paths.resolve(xdg / "b").socket == b.socket


def test_ensure_private_dir_creates_0700_and_refuses_shared_or_non_dirs(tmp_path: Path) -> None:
    made = ensure_private_dir(tmp_path / "x" / "data")
    assert made.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o775)
    shared.chmod(0o775)
    with pytest.raises(SessionIOError, match="writable by other users"):
        ensure_private_dir(shared)
    (tmp_path / "file").write_text("")
    with pytest.raises(SessionIOError, match=r"cannot create|not a directory"):
        ensure_private_dir(tmp_path / "file")

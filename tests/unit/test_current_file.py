"""The current-session file: safe reads, compare-and-swap writes, parsing."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from agent import SessionIOError, faults
from agent.current_file import MAX_CONTENT, CurrentFile, FileChangedError, FileKind
from agent.file_edits import EditKind, parse_edit
from agent.session_id import new_session_id


@pytest.fixture
def current(data_dir: Path) -> CurrentFile:
    return CurrentFile(data_dir)


@pytest.fixture
def no_faults() -> object:
    yield
    faults.configure(None)


def test_replace_writes_the_id_privately_and_stamps_it(current: CurrentFile) -> None:
    sid = new_session_id()
    stamp = current.replace(current.observe(), sid)
    assert current.path.read_text() == f"{sid}\n"
    assert stat.S_IMODE(os.lstat(current.path).st_mode) == 0o600
    assert stamp is not None
    assert stamp.matches(current.observe())
    os.utime(current.path, ns=(1, 1))  # a touch is no longer our write
    assert not stamp.matches(current.observe())


def test_replace_with_none_removes_the_file(current: CurrentFile) -> None:
    current.replace(current.observe(), new_session_id())
    assert current.replace(current.observe(), None) is None
    assert current.observe().kind is FileKind.MISSING
    assert sorted(p.name for p in current.dir.iterdir()) == []


def test_replace_refuses_to_clobber_an_edit_made_after_the_observation(current: CurrentFile) -> None:
    current.path.write_text("end\n")
    seen = current.observe()
    current.path.write_text("start\n")  # lands after we looked
    with pytest.raises(FileChangedError):
        current.replace(seen, None)
    assert current.path.read_text() == "start\n"
    with pytest.raises(FileChangedError):
        current.replace(seen, new_session_id())
    assert current.path.read_text() == "start\n"
    assert [p.name for p in current.dir.iterdir()] == ["current_session"]


def test_replace_refuses_when_a_file_appears_where_none_was(current: CurrentFile) -> None:
    seen = current.observe()
    current.path.write_text("start\n")
    with pytest.raises(FileChangedError):
        current.replace(seen, new_session_id())
    assert current.path.read_text() == "start\n"


def test_an_in_place_rewrite_of_the_same_size_is_noticed(current: CurrentFile) -> None:
    current.path.write_text("start\n")
    seen = current.observe()
    with open(current.path, "r+b") as f:  # same inode, same size, maybe same mtime tick
        f.write(b"START\n")
    with pytest.raises(FileChangedError):
        current.replace(seen, None)
    assert current.path.read_bytes() == b"START\n"


def test_a_symlink_is_observed_not_followed_and_replaced_itself(current: CurrentFile, tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious\n")
    os.symlink(target, current.path)
    seen = current.observe()
    assert (seen.kind, seen.content) == (FileKind.SYMLINK, None)
    sid = new_session_id()
    current.replace(seen, sid)
    assert not current.path.is_symlink()
    assert current.path.read_text() == f"{sid}\n"
    assert target.read_text() == "precious\n"


def test_a_fifo_is_observed_without_blocking(current: CurrentFile) -> None:
    os.mkfifo(current.path)
    seen = current.observe()
    assert (seen.kind, seen.content) == (FileKind.FIFO, None)
    current.replace(seen, None)
    assert current.observe().kind is FileKind.MISSING


def test_a_socket_is_observed(current: CurrentFile, tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(current.path))
        assert current.observe().kind is FileKind.SOCKET


def test_a_directory_is_observed_and_never_replaced(current: CurrentFile) -> None:
    current.path.mkdir()
    seen = current.observe()
    assert seen.kind is FileKind.DIRECTORY
    with pytest.raises(ValueError, match="directory"):
        current.replace(seen, None)
    assert current.path.is_dir()


def test_a_huge_file_is_read_only_up_to_the_cap(current: CurrentFile) -> None:
    current.path.write_bytes(b"x" * 100_000)
    seen = current.observe()
    assert seen.content is not None
    assert len(seen.content) == MAX_CONTENT + 1
    assert parse_edit(seen.content).kind is EditKind.INVALID


def test_leftover_temporary_files_are_cleaned_but_nothing_else(current: CurrentFile) -> None:
    (current.dir / ".current_session.abc.tmp").write_text("x")
    (current.dir / ".current_session.def.old").write_text("y")
    (current.dir / "notes.tmp").write_text("mine")
    assert current.remove_leftovers() == 2
    assert sorted(p.name for p in current.dir.iterdir()) == ["notes.tmp"]


@pytest.mark.usefixtures("no_faults")
@pytest.mark.parametrize("point", ["file.before_fsync", "file.before_rename"])
def test_a_failed_write_is_an_io_error_and_leaves_the_old_file_untouched(
    current: CurrentFile, point: str
) -> None:
    current.path.write_text("start\n")
    seen = current.observe()
    faults.configure(f"{point}=enospc")
    with pytest.raises(SessionIOError, match="No space left on device"):
        current.replace(seen, new_session_id())
    assert current.path.read_text() == "start\n"
    assert [p.name for p in current.dir.iterdir()] == ["current_session"]


SID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


@pytest.mark.parametrize(
    ("content", "kind", "session_id"),
    [
        (b"", EditKind.END, None),
        (b"  \n\t ", EditKind.END, None),
        (b"end", EditKind.END, None),
        (b" End \n", EditKind.END, None),
        (b"start\n", EditKind.START, None),
        (b"START", EditKind.START, None),
        (b"abandon\r\n", EditKind.ABANDON, None),
        (SID.encode() + b"\n", EditKind.NAMES, SID),
        (SID.upper().encode(), EditKind.NAMES, SID),
    ],
)
def test_parse_edit_understands_the_protocol(content: bytes, kind: EditKind, session_id: str | None) -> None:
    edit = parse_edit(content)
    assert (edit.kind, edit.session_id) == (kind, session_id)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfe\x00", "not valid UTF-8"),
        (b"x" * (MAX_CONTENT + 1), "more than 4096 bytes"),
        (b"restart", "neither a keyword nor a session id"),
        (b"start\nend\n", "`start`: 'end' is not key=value"),
        (b"../../etc/passwd", "neither a keyword"),
        (None, "cannot be read"),
    ],
)
def test_parse_edit_rejects_everything_else_with_a_reason(content: bytes | None, problem: str) -> None:
    edit = parse_edit(content)
    assert edit.kind is EditKind.INVALID
    assert edit.problem is not None
    assert problem in edit.problem

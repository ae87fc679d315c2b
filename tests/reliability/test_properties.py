"""Property-based test: random sequences of operations, file edits, crashes
and restarts against a simple model keep the design's invariants."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent import SessionAlreadyActiveError, SessionIOError, SessionManager, SessionStatus, faults
from agent.session import Session

from ..support.commands import open_manager

UNKNOWN_ID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
ENDING = {b"end": SessionStatus.COMPLETED, b"": SessionStatus.COMPLETED, b" \n": SessionStatus.COMPLETED}
ENDING[b"ABANDON\n"] = SessionStatus.ABANDONED
IGNORED = [b"junk", b"\xff\xfe", b"x" * 5000, UNKNOWN_ID.encode()]


class ManagerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="sa-prop-"))
        self.manager: SessionManager = open_manager(self.dir)
        self.active: str | None = None  # the model's truth
        self.terminated: dict[str, Session] = {}  # as first seen; must never change

    @property
    def file(self) -> Path:
        return self.dir / "current_session"

    def teardown(self) -> None:
        faults.configure(None)
        self.manager.close()
        shutil.rmtree(self.dir)

    # --- operations through the API ---------------------------------------------

    @rule()
    def start(self) -> None:
        if self.active:
            with pytest.raises(SessionAlreadyActiveError):
                self.manager.start()
        else:
            self.active = self.manager.start().id

    @rule(abandon=st.booleans(), target_kind=st.sampled_from(["current", "old", "unknown", "default"]))
    def terminate(self, abandon: bool, target_kind: str) -> None:
        target: str | None
        if target_kind == "current":
            target = self.active or UNKNOWN_ID
        elif target_kind == "old":
            target = next(iter(self.terminated), UNKNOWN_ID)
        elif target_kind == "unknown":
            target = UNKNOWN_ID
        else:
            target = None
        ended = self.manager.abandon(target) if abandon else self.manager.end(target)
        if self.active and target in (None, self.active):
            assert ended is not None
            assert ended.id == self.active
            self.active = None
        else:
            assert ended is None

    # --- external edits of the file -------------------------------------------------

    @rule(
        content=st.sampled_from([b"start", b"START\n", *ENDING, *IGNORED, b"<active>", b"<old>"]),
        atomic=st.booleans(),
    )
    def edit_file(self, content: bytes, atomic: bool) -> None:
        if content == b"<active>":
            content = (self.active or UNKNOWN_ID).encode()
        elif content == b"<old>":
            content = next(iter(self.terminated), UNKNOWN_ID).encode()
        if atomic:
            temp = self.dir / "editor.tmp"
            temp.write_bytes(content)
            temp.replace(self.file)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.file.unlink(missing_ok=True)
            self.file.write_bytes(content)
        result = self.manager.reconcile()
        if content.strip().lower() == b"start":
            if self.active is None:
                assert result is not None
                self.active = result.id
        elif content in ENDING and self.active:
            ended = self.manager.get(self.active)
            assert ended is not None
            assert ended.status is ENDING[content]
            self.active = None
        assert (result.id if result else None) == self.active

    @rule()
    def delete_file(self) -> None:
        self.file.unlink(missing_ok=True)
        self.manager.reconcile()
        if self.active:
            ended = self.manager.get(self.active)
            assert ended is not None
            assert ended.status is SessionStatus.COMPLETED
            self.active = None

    @rule()
    def touch_file(self) -> None:
        if self.file.exists():
            os.utime(self.file)
        result = self.manager.reconcile()
        assert (result.id if result else None) == self.active

    # --- restarts and interrupted writes ---------------------------------------------

    @rule()
    def restart(self) -> None:
        self.manager.close()
        self.manager = open_manager(self.dir)

    @precondition(lambda self: self.active is None)
    @rule(point=st.sampled_from(["manager.after_store", "file.before_rename", "manager.after_file"]))
    def start_interrupted(self, point: str) -> None:
        """The process dies (an injected error, then a restart) mid-start:
        the store already has the session, so it must come back active."""
        faults.configure(f"{point}=eio")
        with pytest.raises((OSError, SessionIOError), match="injected"):
            self.manager.start()
        faults.configure(None)
        self.restart()
        result = self.manager.reconcile()
        assert result is not None
        self.active = result.id

    # --- invariants ----------------------------------------------------------------

    @invariant()
    def at_most_one_active_and_it_is_the_models(self) -> None:
        sessions = self.manager.list_sessions()
        active = [s.id for s in sessions if s.is_active]
        assert active == ([self.active] if self.active else [])
        for s in sessions:
            if not s.is_active:
                first = self.terminated.setdefault(s.id, s)
                assert s == first, "a terminated session changed"

    @invariant()
    def the_file_names_the_active_session_or_is_absent(self) -> None:
        if self.active:
            assert self.file.read_text() == f"{self.active}\n"
        else:
            assert not self.file.exists()
        assert sorted(p.name for p in self.dir.iterdir()) in (
            ["db", "db.lock"],
            ["current_session", "db", "db.lock"],
            ["db", "db.lock", "editor.tmp"],
            ["current_session", "db", "db.lock", "editor.tmp"],
        )


ManagerMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestManagerModel = ManagerMachine.TestCase


class ManagerMachineLong(ManagerMachine):
    pass


ManagerMachineLong.TestCase.settings = settings(
    max_examples=500,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestManagerModelLong = pytest.mark.timeout(1200)(pytest.mark.slow(ManagerMachineLong.TestCase))

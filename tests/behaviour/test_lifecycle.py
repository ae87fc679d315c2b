"""How sessions end when no end comes, in-process on simulated clocks: the
idle timeout, owner processes, suspends and clock jumps, ``--replace``,
crash recovery, and the defaults of ``config.toml``.

The clock is a ``FakeClock`` passed to a real manager on a real store. The
current file's mtimes are real, so a test that edits it sets the mtime to
the simulated wall time (``touch``)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent import SessionAlreadyActiveError, SessionManager, SessionStatus, open_db
from agent.changes import OwnerExits
from agent.clock import Clock
from agent.config import StartRequest
from agent.errors import ConfigError, InvalidArgumentError
from agent.lifecycle import Tracking, due_end
from agent.owner import OwnerIdentity, process_start_ticks
from agent.session import EndReason, Session
from agent.store_keys import ScopeKeys

from ..support.commands import SLEEP

HOUR = 3600
TRUE = shutil.which("true") or "/bin/true"


class FakeClock(Clock):
    """Starts at the real wall time (so real mtimes are close), then moves
    only when told."""

    def __init__(self) -> None:
        self.wall = datetime.now(UTC)
        self.boot_seconds = 1000.0
        self.boot_name = "boot-1"

    def now(self) -> datetime:
        return self.wall

    def boot(self) -> float:
        return self.boot_seconds

    def boot_id(self) -> str:
        return self.boot_name

    def advance(self, seconds: float) -> None:
        """Time passes (awake or suspended: both clocks move)."""
        self.wall += timedelta(seconds=seconds)
        self.boot_seconds += seconds

    def set_wall(self, seconds: float) -> None:
        """Someone sets the wall clock; no time passes."""
        self.wall += timedelta(seconds=seconds)

    def reboot(self, seconds_down: float) -> None:
        self.wall += timedelta(seconds=seconds_down)
        self.boot_seconds = 5.0
        self.boot_name = "boot-2"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _open(data_dir: Path, clock: Clock) -> SessionManager:
    return SessionManager(open_db(data_dir / "db"), data_dir, clock=clock)


@pytest.fixture
def manager(data_dir: Path, clock: FakeClock) -> Iterator[SessionManager]:
    with _open(data_dir, clock) as m:
        yield m


def _seconds_to_idle_end(manager: SessionManager, clock: FakeClock) -> float | None:
    state = manager.active_state()
    assert state is not None
    return state.seconds_to_idle_end(clock)


def touch(manager: SessionManager, clock: FakeClock, content: str | None = None) -> None:
    """An edit of the current file made now on the simulated clock."""
    path = manager.current_file
    if content is not None:
        path.write_text(content)
    stamp = int(clock.wall.timestamp() * 1e9)
    os.utime(path, ns=(stamp, stamp))


def _idle(manager: SessionManager, timeout: int, grace: int = 0) -> Session:
    return manager.start(StartRequest(idle_timeout=timeout, idle_grace=grace))


# --- idle ----------------------------------------------------------------------


def test_an_idle_session_ends_at_its_last_activity_plus_the_grace(
    manager: SessionManager, clock: FakeClock
) -> None:
    session = _idle(manager, timeout=1800, grace=120)
    clock.advance(1799)
    assert manager.reconcile() == session  # not yet
    clock.advance(3 * HOUR)  # noticed long after
    assert manager.reconcile() is None
    ended = manager.get(session.id)
    assert ended is not None
    assert (ended.status, ended.end_reason) == (SessionStatus.ABANDONED, EndReason.IDLE)
    assert ended.ended_at == session.started_at + timedelta(seconds=120)
    assert not manager.current_file.exists()


def test_heartbeats_keep_a_session_alive_and_move_its_end(manager: SessionManager, clock: FakeClock) -> None:
    session = _idle(manager, timeout=1800)
    for _ in range(5):
        clock.advance(1500)
        touch(manager, clock)
        assert manager.reconcile() is not None
    last = manager.get(session.id)
    assert last is not None
    assert last.last_activity_at == clock.wall
    clock.advance(1800)
    assert manager.reconcile() is None
    ended = manager.get(session.id)
    assert ended is not None
    assert ended.ended_at == last.last_activity_at


def test_the_touch_command_is_a_heartbeat_too(manager: SessionManager, clock: FakeClock) -> None:
    session = _idle(manager, timeout=60)
    clock.advance(50)
    touched = manager.touch()
    assert touched is not None
    assert touched.last_activity_at == session.started_at + timedelta(seconds=50)
    clock.advance(50)
    assert manager.reconcile() is not None


def test_a_wall_clock_set_forward_is_not_idleness(manager: SessionManager, clock: FakeClock) -> None:
    session = _idle(manager, timeout=1800)
    clock.set_wall(+2 * HOUR)
    assert manager.reconcile() == session
    clock.advance(1700)
    assert manager.reconcile() == session


def test_a_wall_clock_set_back_does_not_silence_heartbeats(manager: SessionManager, clock: FakeClock) -> None:
    """Heartbeats are rate-limited on the boot clock: with the wall clock an
    hour behind, a touch 20 minutes later still counts, and keeps the
    session alive 20 minutes after that."""
    session = _idle(manager, timeout=1800)
    clock.set_wall(-HOUR)
    clock.advance(1200)
    touch(manager, clock)
    assert manager.reconcile() is not None
    clock.advance(1200)
    assert manager.reconcile() is not None, "the heartbeat under the set-back clock was lost"
    clock.advance(1800)
    assert manager.reconcile() is None
    ended = manager.get(session.id)
    assert ended is not None
    assert ended.end_reason is EndReason.IDLE
    assert ended.ended_at is not None
    assert ended.ended_at >= ended.last_activity_at


def test_a_suspend_longer_than_the_timeout_ends_the_session_before_it(
    manager: SessionManager, clock: FakeClock
) -> None:
    """The laptop sleeps for two hours; on resume the editor touches the
    file. The touch does not revive the session: it ended idle, dated at the
    last activity before the sleep."""
    session = _idle(manager, timeout=1800, grace=60)
    clock.advance(600)
    touch(manager, clock)
    manager.reconcile()
    before_sleep = manager.get(session.id)
    assert before_sleep is not None
    clock.advance(2 * HOUR)  # suspended
    touch(manager, clock)  # the editor, on resume
    assert manager.reconcile() is None
    ended = manager.get(session.id)
    assert ended is not None
    assert ended.end_reason is EndReason.IDLE
    assert ended.ended_at == before_sleep.last_activity_at + timedelta(seconds=60)
    assert not manager.current_file.exists()


def test_a_suspend_shorter_than_the_timeout_is_idle_time_but_not_an_end(
    manager: SessionManager, clock: FakeClock
) -> None:
    session = _idle(manager, timeout=1800)
    clock.advance(1000)  # suspended
    assert _seconds_to_idle_end(manager, clock) == pytest.approx(800)
    touch(manager, clock)
    assert manager.reconcile() is not None
    assert _seconds_to_idle_end(manager, clock) == pytest.approx(1800)
    assert manager.get(session.id) is not None


def test_a_timeout_that_expired_while_no_daemon_ran_ends_at_the_right_time(
    data_dir: Path, clock: FakeClock
) -> None:
    with _open(data_dir, clock) as first:
        session = _idle(first, timeout=1800, grace=30)
    clock.advance(5 * HOUR)
    with _open(data_dir, clock) as later:
        assert later.reconcile() is None
        ended = later.get(session.id)
    assert ended is not None
    assert ended.end_reason is EndReason.IDLE
    assert ended.ended_at == session.started_at + timedelta(seconds=30)


def test_a_heartbeat_written_while_no_daemon_ran_counts_at_its_mtime(
    data_dir: Path, clock: FakeClock
) -> None:
    """Written 20 minutes in, applied 3 hours in: the session was alive at
    the touch, and ended idle 30 minutes after it."""
    with _open(data_dir, clock) as first:
        session = _idle(first, timeout=1800)
        clock.advance(1200)
        touch(first, clock)
        touched_at = clock.wall
    clock.advance(3 * HOUR)
    with _open(data_dir, clock) as later:
        assert later.reconcile() is None
        ended = later.get(session.id)
    assert ended is not None
    assert ended.end_reason is EndReason.IDLE
    assert ended.last_activity_at == touched_at
    assert ended.ended_at == touched_at


def test_an_end_written_while_no_daemon_ran_is_dated_at_its_mtime(data_dir: Path, clock: FakeClock) -> None:
    with _open(data_dir, clock) as first:
        session = first.start()
        clock.advance(600)
        touch(first, clock, "end\n")
        written_at = clock.wall
    clock.advance(3 * HOUR)
    with _open(data_dir, clock) as later:
        assert later.reconcile() is None
        ended = later.get(session.id)
    assert ended is not None
    assert (ended.status, ended.end_reason, ended.ended_at) == (
        SessionStatus.COMPLETED,
        EndReason.FILE,
        written_at,
    )


def test_after_a_reboot_idleness_falls_back_to_the_wall_clock(data_dir: Path, clock: FakeClock) -> None:
    with _open(data_dir, clock) as first:
        session = _idle(first, timeout=1800)
    clock.reboot(seconds_down=600)
    with _open(data_dir, clock) as later:
        assert later.reconcile() == session  # 10 minutes by the wall clock
        clock.advance(1200)
        assert later.reconcile() is None
        ended = later.get(session.id)
    assert ended is not None
    assert ended.end_reason is EndReason.IDLE


def test_sessions_without_a_timeout_never_go_idle(manager: SessionManager, clock: FakeClock) -> None:
    session = manager.start()
    clock.advance(400 * 86400)
    assert manager.reconcile() == session
    assert _seconds_to_idle_end(manager, clock) is None


# --- owners ----------------------------------------------------------------------


def _end_of(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def test_a_session_whose_owner_exited_is_abandoned(
    manager: SessionManager, clock: FakeClock, owner: subprocess.Popen[bytes]
) -> None:
    session = manager.start(StartRequest(owner_pid=owner.pid))
    assert session.owner_pid == owner.pid
    clock.advance(600)
    touch(manager, clock)
    assert manager.reconcile() is not None  # alive: the heartbeat counts
    heartbeat = clock.wall
    clock.advance(600)
    _end_of(owner)
    assert manager.reconcile() is None
    ended = manager.get(session.id)
    assert ended is not None
    assert (ended.status, ended.end_reason) == (SessionStatus.ABANDONED, EndReason.OWNER_EXITED)
    # No one watched it exit: the last moment it was known alive.
    assert ended.ended_at == heartbeat


def test_an_owner_seen_alive_at_a_clean_stop_dates_its_exit_no_earlier(
    data_dir: Path, clock: FakeClock, owner: subprocess.Popen[bytes]
) -> None:
    with _open(data_dir, clock) as first:
        session = first.start(StartRequest(owner_pid=owner.pid))
        clock.advance(900)
        first.note_owner_alive()  # what the daemon does as it stops
        stopped = clock.wall
    _end_of(owner)
    clock.advance(HOUR)
    with _open(data_dir, clock) as later:
        assert later.reconcile() is None
        ended = later.get(session.id)
    assert ended is not None
    assert ended.end_reason is EndReason.OWNER_EXITED
    assert ended.ended_at == stopped


def test_an_exit_time_seen_by_a_watch_is_the_end(
    data_dir: Path, clock: FakeClock, owner: subprocess.Popen[bytes]
) -> None:
    class SeenByAWatch(OwnerExits):
        """What the daemon's watch would say: the exit, once it saw it."""

        seen: datetime | None = None

        def exited_at(self, identity: OwnerIdentity) -> datetime | None:
            return self.seen if identity.pid == owner.pid else None

    exits = SeenByAWatch()
    with SessionManager(open_db(data_dir / "db"), data_dir, clock=clock, owner_exits=exits) as manager:
        session = manager.start(StartRequest(owner_pid=owner.pid))
        state = manager.active_state()
        assert state is not None
        watched = state.owner
        assert watched is not None
        assert watched.pid == owner.pid
        clock.advance(300)
        exit_seen = exits.seen = clock.wall
        _end_of(owner)
        clock.advance(5)
        assert manager.reconcile() is None
        ended = manager.get(session.id)
        assert ended is not None
        assert ended.ended_at == exit_seen


def test_an_owner_is_one_process_not_a_pid(clock: FakeClock) -> None:
    """pid reuse: the same pid with another start time is another process."""
    me = OwnerIdentity.of(os.getpid(), clock)
    assert me is not None
    assert me.alive(clock)
    assert not OwnerIdentity(me.pid, me.start_ticks + 1, me.boot_id).alive(clock)
    assert not OwnerIdentity(me.pid, me.start_ticks, "another-boot").alive(clock)
    assert process_start_ticks(os.getpid()) == me.start_ticks


def test_a_zombie_owner_has_exited(clock: FakeClock) -> None:
    proc = subprocess.Popen([SLEEP, "600"])
    identity = OwnerIdentity.of(proc.pid, clock)
    assert identity is not None
    assert identity.alive(clock)
    proc.kill()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert os.path.exists(f"/proc/{proc.pid}")
    assert process_start_ticks(proc.pid) is None
    assert not identity.alive(clock)
    proc.wait()


def test_a_start_for_an_owner_that_does_not_run_is_refused(manager: SessionManager) -> None:
    gone = subprocess.Popen([TRUE])
    gone.wait()
    with pytest.raises(InvalidArgumentError, match=f"no process {gone.pid} is running"):
        manager.start(StartRequest(owner_pid=gone.pid))
    assert manager.active() is None
    with pytest.raises(InvalidArgumentError, match="not a process id"):
        StartRequest(owner_pid=0)


def test_the_earliest_rule_wins(clock: FakeClock) -> None:
    session = Session.begin(clock.now(), owner_pid=1, idle_timeout=60, idle_grace=10)
    tracking = Tracking(session.id, clock.boot_id(), clock.boot())
    clock.advance(600)
    exited = session.started_at + timedelta(seconds=5)
    end = due_end(session, tracking, clock, owner_exited_at=exited, owner_alive=False)
    assert end is not None
    assert (end.reason, end.at) == (EndReason.OWNER_EXITED, exited)
    end = due_end(session, tracking, clock, owner_exited_at=None, owner_alive=True)
    assert end is not None
    assert (end.reason, end.at) == (
        EndReason.IDLE,
        session.started_at + timedelta(seconds=10),
    )
    # As of a moment before the exit, the exit does not count.
    early = due_end(session, tracking, clock, at=session.started_at + timedelta(seconds=2), owner_alive=False)
    assert early is None


# --- replace, crash recovery ---------------------------------------------------------


def test_start_replace_ends_the_active_session_and_starts_one(
    manager: SessionManager, clock: FakeClock
) -> None:
    first = manager.start()
    with pytest.raises(SessionAlreadyActiveError):
        manager.start()
    clock.advance(60)
    second = manager.start(StartRequest(replace=True))
    replaced = manager.get(first.id)
    assert replaced is not None
    assert (replaced.status, replaced.end_reason) == (SessionStatus.ABANDONED, EndReason.REPLACED)
    assert replaced.ended_at == second.started_at
    assert manager.active() == second
    assert manager.current_file.read_text() == f"{second.id}\n"
    assert manager.start(StartRequest(replace=True)).id != second.id  # again: replaces the second


def test_a_second_active_record_is_abandoned_as_crash_recovery(
    manager: SessionManager, clock: FakeClock
) -> None:
    stray = Session.begin(clock.now())
    manager.store.commit((stray,))  # what a crashed older writer could leave behind
    clock.advance(60)
    active = manager.start()
    recovered = manager.recover_orphans()
    assert [s.id for s in recovered] == [stray.id]
    gone = manager.get(stray.id)
    assert gone is not None
    assert (gone.status, gone.end_reason, gone.ended_at) == (
        SessionStatus.ABANDONED,
        EndReason.CRASH_RECOVERY,
        stray.last_activity_at,
    )
    assert manager.active() == active
    assert manager.recover_orphans() == []


def test_ending_by_the_api_records_api(manager: SessionManager) -> None:
    import asyncio

    sid = asyncio.run(manager.start_session(idle_timeout=60))
    asyncio.run(manager.end_session(sid))
    ended = manager.get(sid)
    assert ended is not None
    assert ended.end_reason is EndReason.API
    assert ended.idle_timeout == 60


# --- the file's start options and config.toml ------------------------------------------


def test_start_options_in_the_file(manager: SessionManager, owner: subprocess.Popen[bytes]) -> None:
    manager.current_file.write_text(f"START owner={owner.pid} idle=30m grace=1m\n")
    active = manager.reconcile()
    assert active is not None
    assert (active.owner_pid, active.idle_timeout, active.idle_grace) == (owner.pid, 1800, 60)
    manager.current_file.write_text("start replace idle=0")
    replaced_by = manager.reconcile()
    assert replaced_by is not None
    assert replaced_by.id != active.id
    assert replaced_by.idle_timeout is None
    old = manager.get(active.id)
    assert old is not None
    assert old.end_reason is EndReason.REPLACED


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("start owner=abc", "does not take 'owner=abc'"),
        ("start owner=0", "not a process id"),
        ("start idle=forever", "not a duration"),
        ("start idle=5m grace=10m", None),  # a grace longer than the timeout
        ("start replace replace", "twice"),
        ("start please", "does not take 'please'"),
        ("start owner=4000000", "no process 4000000 is running"),
    ],
)
def test_bad_start_options_in_the_file_are_rejected_and_restored(
    manager: SessionManager, content: str, problem: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    manager.current_file.write_text(content)
    with caplog.at_level(logging.WARNING):
        assert manager.reconcile() is None
    assert not manager.current_file.exists()
    assert "ignored an edit" in caplog.text
    if problem:
        assert problem in caplog.text


def test_config_toml_gives_the_defaults_and_explicit_values_win(
    manager: SessionManager, data_dir: Path
) -> None:
    (data_dir / "config.toml").write_text('[sessions]\nidle_timeout = "45m"\nidle_grace = 90\n')
    by_default = manager.start()
    assert (by_default.idle_timeout, by_default.idle_grace) == (2700, 90)
    manager.end()
    explicit = manager.start(StartRequest(idle_timeout=0))
    assert (explicit.idle_timeout, explicit.idle_grace) == (None, 0)
    manager.end()
    short = manager.start(StartRequest(idle_timeout=60))
    assert (short.idle_timeout, short.idle_grace) == (60, 60)  # the default grace, cut to the timeout
    manager.end()
    with pytest.raises(InvalidArgumentError, match="cannot be longer than the idle timeout"):
        manager.start(StartRequest(idle_timeout=60, idle_grace=61))
    with pytest.raises(InvalidArgumentError, match="an idle grace needs an idle timeout"):
        manager.start(StartRequest(idle_timeout=0, idle_grace=5))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[sessions\n", "not valid TOML"),
        ("[sessions]\nidle_timeout = 'soon'\n", "not a duration"),
        ("[sessions]\nidle = '5m'\n", "unknown setting sessions.idle"),
        ("[other]\n", "unknown setting other"),
        ("sessions = 3\n", "must be a table"),
    ],
)
def test_a_bad_config_is_reported_and_file_starts_still_work(
    manager: SessionManager, data_dir: Path, text: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    (data_dir / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=problem):
        manager.start()
    manager.current_file.write_text("start")
    with caplog.at_level(logging.ERROR):
        started = manager.reconcile()
    assert started is not None
    assert started.idle_timeout is None
    assert "built-in defaults" in caplog.text


def test_tracking_survives_encoding(clock: FakeClock) -> None:
    session = Session.begin(clock.now())
    tracking = Tracking(session.id, clock.boot_id(), 12.5, 4242, clock.now())
    assert Tracking.decode(tracking.encode()) == tracking
    assert Tracking.decode(b"short") is None
    assert Tracking.decode(None) is None
    bare = Tracking(session.id, clock.boot_id(), 1.0)
    assert Tracking.decode(bare.encode()) == bare


def test_the_tracking_goes_with_the_active_session(manager: SessionManager) -> None:
    session = manager.start()
    assert manager.store.get_meta(ScopeKeys.TRACKING) is not None
    manager.end(session.id)
    assert manager.store.get_meta(ScopeKeys.TRACKING) is None


# --- active time -----------------------------------------------------------------------


def test_active_time_counts_each_gap_up_to_the_activity_gap(
    manager: SessionManager, clock: FakeClock
) -> None:
    """Gaps below, at and above the 15-minute default: 600 + 900 + 900 (of
    1,000) + 100 seconds; the long gap splits the activity into two spans."""
    started = manager.start()
    for gap in (600, 900, 1000):
        clock.advance(gap)
        assert manager.touch() is not None
    clock.advance(100)
    ended = manager.end()
    assert ended is not None
    assert ended.active_seconds == 600 + 900 + 900 + 100
    assert ended.activity is not None
    assert len(ended.activity.spans) == 2
    (first_start, first_end), (second_start, second_end) = ended.activity.spans
    assert first_end - first_start == (600 + 900 + 900) * 1_000_000  # closed a whole gap after its last sign
    assert second_end - second_start == 100 * 1_000_000
    assert manager.get(started.id) == ended  # as stored


def test_active_time_is_kept_current_by_heartbeats(manager: SessionManager, clock: FakeClock) -> None:
    manager.start()
    clock.advance(120)
    touched = manager.touch()
    assert touched is not None
    assert touched.active_seconds == 120
    active = manager.active()
    assert active is not None
    assert active.active_seconds == 120


def test_a_suspend_counts_at_most_the_activity_gap(manager: SessionManager, clock: FakeClock) -> None:
    manager.start()
    clock.advance(8 * 3600)  # a night asleep, then a heartbeat
    manager.touch()
    ended = manager.end()
    assert ended is not None
    assert ended.active_seconds == 900


def test_the_activity_gap_comes_from_config_toml(data_dir: Path, clock: FakeClock) -> None:
    (data_dir / "config.toml").write_text('[sessions]\nactivity_gap = "5m"\n')
    with _open(data_dir, clock) as manager:
        manager.start()
        clock.advance(400)
        manager.touch()
        ended = manager.end()
    assert ended is not None
    assert ended.active_seconds == 300
    assert ended.to_dict()["activity_gap"] == 300

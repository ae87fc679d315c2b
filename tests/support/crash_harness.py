"""The crash suite's machinery: drive a real daemon (or the embedded CLI)
with random operations, crash it, restart it, and check the invariants.

A run is reproducible from its seed: every random choice (the operations,
the crash point and pass, the moment of a ``kill -9``) comes from one
``random.Random(seed)``; only the exact timing of a kill against the work
in flight varies from one run to the next.

What is checked after every restart (``History.verify``):

* every acknowledged ``start`` is in the store;
* every acknowledged ``end``/``abandon`` left its session terminated, with
  the status and ``ended_at`` the acknowledgement reported;
* a session once seen terminated keeps its status, ``ended_at`` and
  ``end_reason``; every terminated session has a reason;
* in each scope, at most one session is active, the daemon's ``current``
  names it, and the scope's current file names it (``<id>\\n``) or is
  absent when none is active;
* the rules held: a session ``replaced`` has a successor that started as it
  ended (one batch, never half); ``owner_exited`` only for owners the driver
  killed, and no active session is bound to one; ``idle`` ends exactly at
  the last activity plus the grace, and no active session is past its
  timeout.

Sessions are started with random rules: ``--replace``, an owner (a
``sleep`` helper that the driver kills at random moments), short idle
timeouts (1-2 s, so they expire during a run); in one of ``SCOPES`` (the
default scope half of the time), through the socket, the CLI and the
scope's own file, whose directory the driver sometimes removes.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.control.client import DaemonClient
from agent.environment import FAULTS_FILE_ENV as FILE_ENV_VAR
from agent.errors import DaemonError, SessionAlreadyActiveError, SessionError
from agent.faults import CRASH_EXIT_CODE, POINTS
from agent.paths import Paths

from .commands import CLI_TIMEOUT, SESSION_AGENT, SLEEP
from .daemon_process import DaemonProcess, daemon_env, spawn_daemon, wait_for, wait_ready
from .event_witness import EventWitness

Session = dict[str, Any]
SCOPES = ("default", "nvim-1", "claude-2")  # the scopes a run works in
IDLE_SLACK = timedelta(seconds=3)  # for the daemon's timer to fire, on a loaded machine


@dataclass
class History:
    """What was acknowledged and observed, across every crash of a run."""

    acked_starts: set[str] = field(default_factory=set)
    acked_ends: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (status, ended_at)
    terminated: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # + end_reason
    acknowledged: int = 0  # operations acknowledged (ok reply or CLI exit 0)
    killed_owners: set[int] = field(default_factory=set)  # every owner pid the driver killed
    dead_owners: set[int] = field(default_factory=set)  # those not reused by a live helper since
    reasons: dict[str, int] = field(default_factory=dict)  # end reasons seen, for the report

    def saw(self, session: Session | None) -> None:
        if session is None or session["status"] == "active":
            return
        seen = (session["status"], session["ended_at"], session["end_reason"])
        before = self.terminated.setdefault(session["id"], seen)
        if before != seen:
            raise AssertionError(f"session {session['id']} was {before}, now {seen}")

    def started(self, session: Session) -> None:
        self.acknowledged += 1
        self.acked_starts.add(session["id"])

    def ended(self, session: Session | None) -> None:
        self.acknowledged += 1
        if session is not None:
            self.acked_ends[session["id"]] = (session["status"], session["ended_at"])
            self.saw(session)

    def verify(
        self,
        sessions: dict[str, Session],
        current: str | None,
        file_content: bytes | None,
        *,
        others: dict[str, tuple[str | None, bytes | None]] | None = None,
    ) -> None:
        """``current`` and ``file_content`` are the default scope's;
        ``others`` the same of other scopes. An active session in a scope
        not looked at is a violation too."""
        problems = []
        views = {"default": (current, file_content), **(others or {})}
        actives: dict[str, list[str]] = {}
        for sid, s in sessions.items():
            if s["status"] == "active":
                actives.setdefault(s.get("scope", "default"), []).append(sid)
        for scope in sorted(set(views) | set(actives)):
            active = sorted(actives.get(scope, []))
            if len(active) > 1:
                problems.append(f"{len(active)} active sessions in scope {scope}: {active}")
            if scope not in views:
                problems.append(f"session {active} is active in scope {scope}, which was never used")
                continue
            said, content = views[scope]
            if said != (active[0] if active else None):
                problems.append(f"`current` of scope {scope} says {said}, the records say {active}")
            wanted = f"{active[0]}\n".encode() if active else None
            if content != wanted:
                problems.append(f"the current file of scope {scope} holds {content!r}, expected {wanted!r}")
        lost = self.acked_starts - sessions.keys()
        if lost:
            problems.append(f"acknowledged starts lost: {sorted(lost)}")
        for sid, ended in self.acked_ends.items():
            now = sessions.get(sid)
            if now is None or (now["status"], now["ended_at"]) != ended:
                problems.append(f"acknowledged end of {sid} ({ended}) is now {now}")
        for sid, seen in self.terminated.items():
            now = sessions.get(sid)
            if now is None or (now["status"], now["ended_at"], now["end_reason"]) != seen:
                problems.append(f"terminated session {sid} ({seen}) is now {now}")
        problems += self._rule_problems(sessions)
        if problems:
            raise AssertionError("invariants violated:\n  " + "\n  ".join(problems))
        for session in sessions.values():
            self.saw(session)

    def _rule_problems(self, sessions: dict[str, Session]) -> list[str]:
        problems = []
        starts = {s["started_at"] for s in sessions.values()}
        now = datetime.now(UTC)
        self.reasons = {}
        for sid, s in sessions.items():
            reason = s["end_reason"]
            self.reasons[reason or "active"] = self.reasons.get(reason or "active", 0) + 1
            if (s["status"] == "active") != (reason is None):
                problems.append(f"{sid} is {s['status']} with end reason {reason}")
            if reason == "replaced" and s["ended_at"] not in starts:
                problems.append(f"{sid} was replaced, but no session started at {s['ended_at']}")
            if reason == "owner_exited" and s["owner_pid"] not in self.killed_owners:
                problems.append(f"{sid} ended owner_exited, but its owner {s['owner_pid']} was never killed")
            if s["status"] == "active" and s["owner_pid"] in self.dead_owners:
                problems.append(f"{sid} is active, but its owner {s['owner_pid']} was killed")
            last = datetime.fromisoformat(s["last_activity_at"])
            if reason == "idle":
                expected = last + timedelta(seconds=s["idle_grace"])
                if datetime.fromisoformat(s["ended_at"]) != expected:
                    problems.append(f"{sid} ended idle at {s['ended_at']}, not at {expected}")
            idle_for = now - last - timedelta(seconds=s["idle_timeout"] or 0)
            if s["status"] == "active" and s["idle_timeout"] and idle_for > IDLE_SLACK:
                problems.append(
                    f"{sid} is active, idle since {s['last_activity_at']} ({s['idle_timeout']} s)"
                )
        return problems


def _whole_log(paths: Paths) -> list[dict[str, Any]]:
    """Every event kept, through a subscription from 0 read up to the last."""
    import json
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(paths.socket))
        sock.sendall(json.dumps({"v": 1, "op": "subscribe", "args": {"since": 0}}).encode() + b"\n")
        reader = sock.makefile("rb")
        last = json.loads(reader.readline())["result"]["last"]
        return [json.loads(reader.readline()) for _ in range(last)]


def all_sessions(client: DaemonClient) -> dict[str, Session]:
    found: dict[str, Session] = {}
    before = None
    while True:
        page = client.request("list", limit=500, all_scopes=True, **({"before": before} if before else {}))
        if page["errors"]:
            raise AssertionError(f"corrupt records: {page['errors']}")
        for session in page["sessions"]:
            found[session["id"]] = session
        if len(page["sessions"]) < 500:
            return found
        before = page["sessions"][-1]["id"]


def read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


@dataclass
class CrashRun:
    """One data dir, crashed and restarted ``crashes`` times."""

    tmp_path: Path
    runtime_dir: Path
    seed: int
    rng: random.Random = field(init=False)
    history: History = field(default_factory=History)
    crashes: int = 0
    events: int = 0  # in the log at the final check
    by_kind: dict[str, int] = field(default_factory=dict)
    owners: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)  # live helpers
    pauses: bool = True  # let idle timeouts expire at times (only a rule's end needs it)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.data_dir = self.tmp_path / "data"
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.paths = Paths(self.data_dir, self.runtime_dir)
        self.control = self.tmp_path / "faults"
        self.env = daemon_env(self.tmp_path, self.runtime_dir)
        self.witness = EventWitness(self.data_dir, self.runtime_dir, self.tmp_path)

    # --- one cycle: start a daemon, check, crash it --------------------------------

    def cycle(self, kind: str) -> None:
        """Restart, verify, then crash by ``kind``: ``kill`` (kill -9 at a
        random moment), ``point:<name>`` (a crash injected into the daemon),
        ``embedded:<name>`` (into an embedded CLI command), ``embedded-kill``."""
        self.control.write_text("")
        daemon = self.start_daemon()
        try:
            self._verify(daemon)
            self.witness.follow()
            if kind.startswith("embedded"):
                assert daemon.stop() == 0
                crashed = self._crash_embedded(kind)
            else:
                self._crash_daemon(daemon, kind)
                crashed = True
        finally:
            daemon.close()
            self.witness.stop_following()
        if crashed:
            self.crashes += 1
            family = kind.partition(":")[0]
            self.by_kind[family] = self.by_kind.get(family, 0) + 1

    def random_kind(self) -> str:
        roll = self.rng.random()
        point = self.rng.choice(POINTS)
        if roll < 0.45:
            return "kill"
        if roll < 0.8:
            return f"point:{point}"
        if roll < 0.92:
            return f"embedded:{point}"
        return "embedded-kill"

    def close(self) -> None:
        for helper in self.owners.values():
            helper.kill()
            helper.wait()
        self.owners.clear()

    def owner(self) -> int:
        """A live helper's pid, spawning one if there are few."""
        if len(self.owners) < 3:
            helper = subprocess.Popen([SLEEP, "3600"])
            self.owners[helper.pid] = helper
            self.history.dead_owners.discard(helper.pid)  # the pid names this one now
        return self.rng.choice(sorted(self.owners))

    def kill_owner(self, pid: int | None = None) -> None:
        """Kill helper ``pid`` (default: one at random)."""
        if not self.owners:
            return
        pid = pid or self.rng.choice(sorted(self.owners))
        helper = self.owners.pop(pid)
        helper.kill()
        helper.wait()
        self.history.killed_owners.add(pid)
        self.history.dead_owners.add(pid)

    def _start_rules(self) -> dict[str, Any]:
        """Random rules for a start: none, replace, an owner, an idle timeout."""
        rng = self.rng
        rules: dict[str, Any] = {}
        if rng.random() < 0.25:
            rules["replace"] = True
        if rng.random() < 0.25:
            rules["owner_pid"] = self.owner()
        if rng.random() < 0.4:
            timeout = rng.randint(1, 2)
            rules["idle_timeout"] = timeout
            rules["idle_grace"] = rng.randint(0, timeout)
        return rules

    def final_check(self) -> None:
        self.control.write_text("")
        daemon = self.start_daemon()
        try:
            self._verify(daemon)
            self._check_events()
        finally:
            daemon.close()
            self.witness.stop_following()

    def _check_events(self) -> None:
        """The witnesses of the event log (``event_witness``), once the hook
        has caught up and the subscriber has read to the end."""
        client = self.connected()
        try:

            def hook_cursor() -> int:
                status = client.request("status")
                return int(status["hooks"]["hooks"][0]["cursor"])

            last = int(client.request("status")["events"]["last"])
            wait_for(lambda: hook_cursor() >= last, timeout=60)
            self.witness.follow()
            wait_for(lambda: len(self.witness.seen) >= last, timeout=60)
            for _ in range(20):  # a rule may end a session meanwhile: read between two equal listings
                before = all_sessions(client)
                log = _whole_log(self.paths)
                if all_sessions(client) == before:
                    break
            self.events = self.witness.check(before, log, hook_cursor())
        finally:
            client.close()

    # --- the pieces ---------------------------------------------------------------

    def start_daemon(self) -> DaemonProcess:
        faults = {FILE_ENV_VAR: str(self.control)}
        daemon = spawn_daemon(self.tmp_path, self.data_dir, self.runtime_dir, env=faults)
        wait_ready(daemon)
        return daemon

    def _verify(self, daemon: DaemonProcess) -> None:
        """Check a snapshot taken twice alike: the daemon's rules go on while
        it is read (a 1-2 s idle timeout may end a session between the
        listing and `current`), so a snapshot straddling such an end is
        taken again rather than mistaken for a violation."""
        client = self.client()
        assert client is not None, "the daemon is ready but its socket does not answer"
        try:
            before = self._snapshot(client)
            for _ in range(20):
                after = self._snapshot(client)
                if after == before:
                    break
                before = after
        finally:
            client.close()
        sessions, views = after
        default = views.pop("default")
        self.history.verify(sessions, *default, others=views)
        _check_log(daemon)

    def _snapshot(
        self, client: DaemonClient
    ) -> tuple[dict[str, Session], dict[str, tuple[str | None, bytes | None]]]:
        views: dict[str, tuple[str | None, bytes | None]] = {}
        for scope in SCOPES:
            current = client.request("current", **_scoped(scope))  # settles that scope first
            views[scope] = (current and current["id"], read_file(self.paths.current_file_of(scope)))
        return all_sessions(client), views

    def scope(self) -> str:
        """A scope to work in: the default one half of the time."""
        return "default" if self.rng.random() < 0.5 else self.rng.choice(SCOPES[1:])

    def connected(self) -> DaemonClient:
        client = self.client()
        assert client is not None, "the daemon is ready but its socket does not answer"
        return client

    def client(self) -> DaemonClient | None:
        return DaemonClient.connect(self.paths.socket, self.data_dir)

    def _crash_daemon(self, daemon: DaemonProcess, kind: str) -> None:
        if kind == "kill":
            delay = self.rng.uniform(0.0, 0.25)
            killer = threading.Timer(delay, lambda: _kill(daemon))
            killer.start()
        else:
            point = kind.partition(":")[2]
            action = self.rng.choice(("crash", "kill"))
            self.control.write_text(f"{point}={action}@{self.rng.randint(1, 3)}")
            killer = None
        try:
            self._drive(daemon, max_ops=60)
        finally:
            if killer is not None:
                killer.join()
        if daemon.proc.poll() is None:  # the point was not reached often enough: crash anyway
            _kill(daemon)
        daemon.proc.wait(timeout=10)
        assert daemon.proc.returncode in (-signal.SIGKILL, CRASH_EXIT_CODE), daemon.log()
        _check_log(daemon)

    def _drive(self, daemon: DaemonProcess, max_ops: int) -> None:
        """Random operations until the daemon dies or ``max_ops`` are done."""
        client = self.client()
        try:
            for _ in range(max_ops):
                if daemon.proc.poll() is not None or client is None:
                    return
                try:
                    self._one_operation(client, daemon)
                except (SessionError, OSError):
                    # Fine if the daemon died under us (give the kernel a moment
                    # to report it); a living daemon must not fail a request.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        daemon.proc.wait(timeout=2)
                    if daemon.proc.poll() is not None:
                        return
                    raise
        finally:
            if client is not None:
                client.close()

    def _one_operation(self, client: DaemonClient, daemon: DaemonProcess) -> None:
        rng = self.rng
        roll = rng.random()
        scoped = _scoped(self.scope())
        if roll < 0.25:
            try:
                self.history.started(client.request("start", **self._start_rules(), **scoped))
            except DaemonError as exc:
                if exc.exit_code != SessionAlreadyActiveError.exit_code:
                    raise
                self.history.acknowledged += 1
        elif roll < 0.4:
            self.history.ended(client.request(rng.choice(("end", "abandon")), **scoped))
        elif roll < 0.45 and self.history.acked_starts:
            target = rng.choice(sorted(self.history.acked_starts))
            self.history.ended(client.request("end", id=target))
        elif roll < 0.47:
            self.history.saw(client.request("current", **scoped))
        elif roll < 0.51:
            self.kill_owner()
        elif roll < 0.55:  # idle: let timeouts expire under the daemon's eyes (unless it dies first)
            if not self.pauses:
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.proc.wait(timeout=rng.uniform(0.5, 2.0))
        elif roll < 0.8:
            self._edit_file()
        elif roll < 0.9:
            daemon.send(rng.choice((signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)))
        else:
            command = rng.choice(("start", "start --replace", "end", "abandon", "current"))
            self._cli(f"{command} --scope {self.scope()}", wait=True)

    def _edit_file(self) -> None:
        rng = self.rng
        scope = self.scope()
        path = self.paths.current_file_of(scope)
        if scope != "default" and rng.random() < 0.1:  # the tool is done with its scope
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            with contextlib.suppress(OSError):  # not empty: a start raced in, or the daemon's write
                path.parent.rmdir()
            return
        if scope != "default":
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # as integrations do
        content = rng.choice(
            (
                b"start\n",
                b"start replace\n",
                f"start owner={self.owner()}\n".encode(),
                b"start idle=1s grace=1s\n",
                b"end\n",
                b"abandon\n",
                b"  \n",
                b"",
                b"junk\n",
                b"\xff\xfe",
                None,
            )
        )
        how = rng.choice(("atomic", "in-place", "touch"))
        try:
            if content is None:
                path.unlink()
            elif how == "touch":
                os.utime(path)
            elif how == "in-place":
                path.write_bytes(content)
            else:
                temp = path.with_name(f"edit.{rng.getrandbits(32):08x}")
                temp.write_bytes(content)
                os.rename(temp, path)
        except FileNotFoundError:
            pass

    def _cli(
        self, command: str, *, wait: bool, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [str(SESSION_AGENT), "--data-dir", str(self.data_dir), *command.split()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**self.env, **(extra_env or {})},
        )
        if wait:
            self._settle_cli(proc, command)
        return proc

    def _settle_cli(self, proc: subprocess.Popen[bytes], command: str) -> bool:
        """Record what the command acknowledged; ``True`` if it crashed."""
        out, err = proc.communicate(timeout=CLI_TIMEOUT)
        if proc.returncode == 0:
            self.history.acknowledged += 1
            if command.startswith("start"):
                self.history.acked_starts.add(out.decode().strip())
            return False
        # 1: none active; 3: one is active; 5: the daemon died mid-request
        crashed = proc.returncode in (CRASH_EXIT_CODE, -signal.SIGKILL)
        assert crashed or proc.returncode in (1, 3, 5), f"{command}: exit {proc.returncode}: {err.decode()}"
        return crashed

    def _crash_embedded(self, kind: str) -> bool:
        """No daemon: CLI commands open the store themselves, one crashes.
        ``True`` if it did (the point may not be on that command's path)."""
        verbs = ("start", "end", "abandon", "start", "start --replace")
        commands = [f"{self.rng.choice(verbs)} --scope {self.scope()}" for _ in range(3)]
        crash_at = self.rng.randrange(len(commands))
        crashed = False
        for i, command in enumerate(commands):
            if self.rng.random() < 0.5:
                self._edit_file()
            if i != crash_at:
                self._cli(command, wait=True)
            elif kind == "embedded-kill":
                proc = self._cli(command, wait=False)
                time.sleep(self.rng.uniform(0.0, 0.15))
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
                crashed = self._settle_cli(proc, command)
            else:
                point = kind.partition(":")[2]
                fault = {"SESSION_AGENT_FAULTS": f"{point}={self.rng.choice(('crash', 'kill'))}"}
                crashed = self._settle_cli(self._cli(command, wait=False, extra_env=fault), command)
        return crashed


def _scoped(scope: str) -> dict[str, str]:
    return {} if scope == "default" else {"scope": scope}


def _check_log(daemon: DaemonProcess) -> None:
    log = daemon.log()
    assert "Traceback" not in log, log
    assert "internal error" not in log, log


def _kill(daemon: DaemonProcess) -> None:
    with contextlib.suppress(ProcessLookupError):
        daemon.proc.send_signal(signal.SIGKILL)


@contextlib.contextmanager
def crash_run(tmp_path: Path, runtime_dir: Path, seed: int, *, pauses: bool = True) -> Iterator[CrashRun]:
    run = CrashRun(tmp_path, runtime_dir, seed, pauses=pauses)
    try:
        yield run
    except AssertionError as exc:
        where = f"seed {seed}, after {run.crashes} crashes; rerun with --seed {seed}"
        raise AssertionError(f"{exc}\n({where})") from None
    finally:
        run.close()

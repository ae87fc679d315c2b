"""The daemon: start-up, main loop, shutdown.

``Daemon.serve`` reads as its life:

* **start-up** -- take the data dir's instance lock (before anything else,
  so a second daemon changes nothing), open the store, apply what happened
  to the current files of every scope while no daemon ran, bind the control
  socket (or take the one systemd passed), start watching the files, then
  tell systemd ``READY=1``: from then on the CLI goes through us;
* **main loop** -- wait for a signal or a periodic duty (the systemd
  watchdog, a retry after a failed reconcile); act on it. Beside it, the
  active sessions' rules are armed after every change (``RuleWatch``: a
  pidfd watch on each owner process, a timer for the earliest idle
  timeout), and a timer removes the directories of scopes left empty (see
  ``SessionManager.sweep_empty_scopes``);
* **shutdown** -- in ``finally``, each step bounded: ``STOPPING=1``, stop
  watching, close the socket (connections get ``SHUTDOWN_GRACE`` seconds),
  unlink it, close the store, drop the lock. The active session stays
  active; the next start-up restores it.

Requests and file events are handled on the event loop's thread, one at a
time: each is a few synced writes, well under the latency goals, and no two
can interleave.

Signals (handlers only record; the loop acts): SIGTERM/SIGINT stop (a second
one cuts the shutdown grace short); SIGHUP applies every scope's current
file now; SIGUSR1 starts a session in the default scope if none is active
there; SIGUSR2 ends the default scope's active one. (A signal carries no
argument to name a scope; other scopes have their files and the CLI.)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import signal
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent import __version__
from agent.clock import SystemClock
from agent.control.client import MAX_SOCKET_PATH
from agent.control.handlers import RequestHandler
from agent.control.server import ControlServer, bind_unix_socket
from agent.environment import IDLE_RECHECK_ENV
from agent.errors import SessionError, SessionIOError, StorageError
from agent.instance import InstanceLock
from agent.manager import SessionManager
from agent.paths import Paths, ensure_private_dir
from agent.rule_watch import RuleWatch
from agent.scope import DEFAULT_SCOPE, scope_problem
from agent.session import EndReason, format_time
from agent.store import close_db, open_db
from agent.systemd import Notifier, listen_fds
from agent.watcher import FileWatcher, WatchSettings, dir_identity

__all__ = ["EXIT_DATA_DIR_REPLACED", "Daemon", "DaemonConfig"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 2.0
STORE_WAIT = 5.0  # an embedded CLI command may hold the store for a moment
EXIT_DATA_DIR_REPLACED = 75  # EX_TEMPFAIL: systemd's Restart=on-failure starts us on the new one
# After a failed reconcile (disk full, ...): soon, and never long after the
# fault is gone (a file naming a replaced session must not linger).
_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_ACTION_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_UNGUARDED_OPS = frozenset({"ping", "status"})
_READ_ONLY_OPS = frozenset({"ping", "status", "get", "list"})  # they change no session
_TRANSITION_OPS = {"start": "started", "end": "completed", "abandon": "abandoned"}
_IDLE_RECHECK = 60.0  # seconds: the latest an idle session ends after a resume from suspend
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_SAY_AGAIN_AFTER = 60.0  # seconds between two reports of running out of file descriptors
_SNAPSHOT_RECHECK = 3600.0  # seconds: how often config.toml is looked at while snapshots are off


def _idle_recheck_default() -> float:
    raw = os.environ.get(IDLE_RECHECK_ENV)
    try:
        value = float(raw) if raw else _IDLE_RECHECK
    except ValueError:
        value = _IDLE_RECHECK
    return min(max(value, 0.05), 3600.0)


@dataclass(frozen=True)
class DaemonConfig:
    paths: Paths
    watch: WatchSettings = field(default_factory=WatchSettings)
    idle_recheck: float = field(default_factory=_idle_recheck_default)


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.paths = config.paths
        self.should_exit = False
        self.force_exit = False
        self.exit_code = 0
        self._signals: deque[signal.Signals] = deque()
        self._pending_signals: dict[int, None] = {}  # marked by the handler, in arrival order
        self._resources_said_at: float | None = None  # when running out of fds was last logged
        self._wakeup: asyncio.Event | None = None
        self._notifier = Notifier()
        self._lock: InstanceLock | None = None
        self._manager: SessionManager | None = None
        self._server: ControlServer | None = None
        self._socket_path: str | None = None  # ours to unlink (None when systemd owns it)
        self._socket_activated = False
        self._socket_name = ""
        self._handler: RequestHandler | None = None
        self._watcher_task: asyncio.Task[None] | None = None
        self._dir_identity: tuple[int, int] | None = None  # taken at start-up
        self._started_at = datetime.now(UTC)
        self._started_monotonic = time.monotonic()
        self._ready_at: tuple[float, float] | None = None  # (monotonic, CPU seconds) when start-up ended
        self._failed_reconciles = 0
        self._last_problem: str | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._shown_status: str | None = None
        self._clock = SystemClock()
        self._rules: RuleWatch | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at: float | None = None  # loop time the sweep timer fires
        self._snapshot_timer: asyncio.TimerHandle | None = None
        self._changed_since_snapshot = True  # start-up takes one if it is due
        self._snapshot_waits_for_change = False

    # --- the story ---------------------------------------------------------------

    def run(self) -> int:
        return asyncio.run(self.serve())

    async def serve(self) -> int:
        self._wakeup = asyncio.Event()
        asyncio.get_running_loop().set_exception_handler(self._loop_exception)
        with self._capture_signals():
            try:
                await self._startup()
                if not self.should_exit:
                    self._ready_at = (time.monotonic(), _cpu_seconds())
                    log.info("ready: %s; control socket %s", self._status_line(), self._socket_name)
                    self._notifier.ready(self._status_line())
                    await self._main_loop()
            finally:
                await self._shutdown()
        return self.exit_code

    async def _startup(self) -> None:
        paths = self.paths
        os.umask(0o077)  # the store's files too: RocksDB creates them with the umask
        ensure_private_dir(paths.data_dir)
        self._dir_identity = dir_identity(paths.data_dir)
        self._lock = InstanceLock.acquire(paths.data_dir)  # a second daemon stops here, having logged nothing
        log.info("session-agent %s starting (pid %d) on %s", __version__, os.getpid(), paths.data_dir)
        db = open_db(paths.db, wait=STORE_WAIT)
        try:
            self._manager = SessionManager(db, paths.data_dir, clock=self._clock)
        except BaseException:
            close_db(db)
            raise
        self._rules = RuleWatch(
            self._manager,
            self._clock,
            self.config.idle_recheck,
            lambda scopes, why: self._reconcile(why, scopes),
        )
        self._manager.owner_exit_time = self._rules.exited_at
        self._manager.recover_orphans()
        actives = self._manager.reconcile_all()
        for scope, active in actives.items():
            log.info(
                "restored session %s%s", active.id, "" if scope == DEFAULT_SCOPE else f" in scope {scope}"
            )
        if not actives:
            log.info("no active session")
        sock = self._control_socket()
        self._socket_name = str(sock.getsockname() or "(unnamed)")
        self._handler = RequestHandler(self._manager, self.status)
        self._server = ControlServer(self._handle)
        await self._server.start(sock)
        watcher = FileWatcher(
            paths.data_dir,
            self.config.watch,
            on_change=lambda scopes: self._reconcile("the current file changed", scopes),
            on_dir_replaced=self._data_dir_replaced,
        )
        self._watcher_task = asyncio.create_task(watcher.run(), name="watcher")
        self._watcher_task.add_done_callback(lambda _: self._wake())  # the main loop checks on it
        await watcher.established.wait()
        self._rules.rearm()
        self._sweep_empty_scopes()
        self._snapshot()

    async def _main_loop(self) -> None:
        assert self._wakeup is not None
        interval = self._notifier.watchdog_interval
        if interval is not None:
            self._notifier.watchdog()
        while not self.should_exit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), interval)
            self._wakeup.clear()
            if interval is not None:
                self._notifier.watchdog()
            while self._signals and not self.should_exit:
                self._act_on(self._signals.popleft())
            if self._watcher_task is not None and self._watcher_task.done():
                log.error("the file watcher stopped unexpectedly: %s", self._watcher_task.exception())
                self.exit_code = 1
                self.should_exit = True

    async def _shutdown(self) -> None:
        if self._lock is None:  # refused before anything started: nothing to stop
            return
        log.info("stopping")
        self._notifier.stopping()
        if self._retry is not None:
            self._retry.cancel()
        if self._sweep is not None:
            self._sweep.cancel()
        if self._snapshot_timer is not None:
            self._snapshot_timer.cancel()
        if self._rules is not None:
            self._rules.stop()
        if self._watcher_task is not None:
            self._watcher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._watcher_task, SHUTDOWN_GRACE)
        if self._server is not None:
            cut = await self._server.close(0.0 if self.force_exit else SHUTDOWN_GRACE)
            if cut:
                log.warning("cut %d control connection(s) that did not finish in time", cut)
        if self._socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._socket_path)
        if self._manager is not None:
            try:
                self._manager.note_owner_alive()
            except SessionError as exc:
                log.warning("could not record that the owner process was alive: %s", exc)
            try:
                self._manager.close()
            except SessionError as exc:  # every change was synced when made: nothing is at risk
                log.warning("could not close the store cleanly: %s", exc)
        if self._lock is not None:
            self._lock.release()
        log.info("stopped")

    # --- start-up details --------------------------------------------------------

    def _control_socket(self) -> socket.socket:
        passed = listen_fds()
        if passed:
            self._socket_activated = True
            for extra in passed[1:]:
                extra.close()
            log.info("using the control socket passed by systemd")
            return passed[0]
        path = self.paths.socket
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise SessionIOError(
                f"the control socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
                "choose a shorter --runtime-dir"
            )
        ensure_private_dir(self.paths.runtime_dir, allow_symlink=False, option="--runtime-dir")
        ensure_private_dir(self.paths.socket_dir, allow_symlink=False, option="--runtime-dir")
        try:
            sock = bind_unix_socket(str(path))
        except OSError as exc:
            raise SessionIOError(f"cannot listen on {path}: {exc.strerror}") from None
        self._socket_path = str(path)
        return sock

    # --- requests, file events, signals -----------------------------------------

    def _handle(self, op: str, args: dict[str, Any]) -> Any:
        assert self._handler is not None
        if op not in _UNGUARDED_OPS:
            self._check_data_dir()
        named = args.get("scope")
        touched = {named if isinstance(named, str) and scope_problem(named) is None else DEFAULT_SCOPE}
        try:
            result = self._handler(op, args)
            if isinstance(result, dict) and isinstance(result.get("scope"), str):
                touched.add(result["scope"])  # `end ID`: the session's own scope
            if op in _TRANSITION_OPS:
                _log_transition(op, result)
            return result
        except (SessionIOError, StorageError) as exc:
            # A write failed, perhaps halfway (store written, file not): the
            # caller gets the error, and we settle again by ourselves once
            # the fault (a full disk, ...) has gone.
            self._retry_later(f"{op} failed: {exc}")
            raise
        finally:
            if op not in _READ_ONLY_OPS:
                # Right after the reply goes out: re-arming the rules and
                # telling systemd need not keep the client waiting.
                asyncio.get_running_loop().call_soon(self._settled, touched)

    def _check_data_dir(self) -> None:
        if dir_identity(self.paths.data_dir) != self._dir_identity:
            raise SessionIOError(
                f"the data dir {self.paths.data_dir} was moved or deleted while the daemon ran; "
                "put it back, or restart the daemon"
            )

    def _reconcile(self, why: str, scopes: frozenset[str] | None = None) -> None:
        """Apply the current files of ``scopes`` (``None``: every scope);
        after a failure, try again later by itself, every scope."""
        assert self._manager is not None
        if scopes is None and self._retry is not None:
            self._retry.cancel()
            self._retry = None
        try:
            self._check_data_dir()
            if scopes is None:
                self._manager.reconcile_all()
            else:
                for scope in sorted(scopes):
                    self._manager.reconcile(scope)
        except Exception as exc:
            if not isinstance(exc, SessionError):  # a bug: keep the traceback, keep running
                log.exception("unexpected error while applying the current file")
            self._retry_later(f"could not apply the current file ({why}): {exc}")
            return
        if self._failed_reconciles and scopes is None:
            log.info("the current file is applied again")
            self._failed_reconciles = 0
            self._last_problem = None
        self._settled(scopes)

    def _retry_later(self, problem: str) -> None:
        """Log ``problem`` and reconcile again after a delay that grows with
        each consecutive failure."""
        if self._retry is not None:
            self._retry.cancel()
        delay = _RETRY_DELAYS[min(self._failed_reconciles, len(_RETRY_DELAYS) - 1)]
        self._failed_reconciles += 1
        # A fault that stays is retried every 2 s: said once, not every time.
        repeated = problem == self._last_problem
        self._last_problem = problem
        log.log(logging.DEBUG if repeated else logging.ERROR, "%s; retrying in %g s", problem, delay)
        self._retry = asyncio.get_running_loop().call_later(delay, self._reconcile, "retry", None)

    def _data_dir_replaced(self) -> None:
        log.error(
            "the data dir %s was replaced by another directory; the store it held is gone with it. "
            "Stopping so that a restart opens the new one",
            self.paths.data_dir,
        )
        self.exit_code = EXIT_DATA_DIR_REPLACED
        self._request_exit()

    @contextlib.contextmanager
    def _capture_signals(self) -> Iterator[None]:
        """Signals coalesce: the handler only marks the signal pending (a
        dict insert, no lock, no I/O) and the interpreter's wakeup fd wakes
        the loop, which acts once per pending signal. A storm of thousands
        therefore costs one action each, never blocks, and never reports a
        full wakeup pipe (``warn_on_full_buffer=False``: that report, written
        to stderr from the signal machinery, could deadlock on stderr's lock).
        asyncio's ``add_signal_handler`` queues a callback per signal and
        warns on a full pipe, which is what a storm turned into a hang."""
        loop = asyncio.get_running_loop()
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signals = (*_STOP_SIGNALS, *_ACTION_SIGNALS)
        previous = {sig: signal.signal(sig, self._note_signal) for sig in signals}
        previous_fd = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        loop.add_reader(wake_read, self._take_signals, wake_read)
        try:
            yield
        finally:
            loop.remove_reader(wake_read)
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_read)
            os.close(wake_write)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Out of file descriptors, asyncio's accept loop reports every
        failed accept with a traceback (hundreds a second, a core burnt on
        logging): say it once a minute, with the limit, instead."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES:
            now = time.monotonic()
            if self._resources_said_at is None or now - self._resources_said_at >= _SAY_AGAIN_AFTER:
                self._resources_said_at = now
                soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
                log.error(
                    "cannot accept control connections: %s (the open-file limit is %d); "
                    "clients wait until some close, or raise the limit (LimitNOFILE=)",
                    exc.strerror,
                    soft,
                )
            return
        loop.default_exception_handler(context)

    def _note_signal(self, signum: int, frame: object) -> None:
        """The signal handler: mark, nothing else (see ``_capture_signals``)."""
        self._pending_signals[signum] = None

    def _take_signals(self, wake_read: int) -> None:
        """On the loop: empty the wakeup pipe, then act on each pending signal once."""
        with contextlib.suppress(BlockingIOError):
            while os.read(wake_read, 4096):
                pass
        # Swapped, not iterated in place: the handler may run between any two
        # bytecodes and would change the dict under the iteration. Marks made
        # after the swap land in the new dict and wake us again.
        pending, self._pending_signals = self._pending_signals, {}
        for signum in pending:
            self._record_signal(signal.Signals(signum))

    def _record_signal(self, sig: signal.Signals) -> None:
        if sig in _STOP_SIGNALS:
            if self.should_exit:
                self.force_exit = True
            log.info("received %s: stopping", sig.name)
            self._request_exit()
            return
        if sig not in self._signals:  # one pending action per signal
            self._signals.append(sig)
        self._wake()

    def _request_exit(self) -> None:
        self.should_exit = True
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _act_on(self, sig: signal.Signals) -> None:
        assert self._manager is not None
        manager = self._manager
        log.info("received %s", sig.name)
        try:
            if sig == signal.SIGHUP:
                self._reconcile("SIGHUP")
            elif sig == signal.SIGUSR1:  # signals act on the default scope
                active = manager.reconcile()
                if active is None:
                    log.info("SIGUSR1: started session %s", manager.start().id)
                else:
                    log.info("SIGUSR1: session %s is already active", active.id)
            elif sig == signal.SIGUSR2:
                ended = manager.end(reason=EndReason.SIGNAL)
                log.info("SIGUSR2: %s", f"completed session {ended.id}" if ended else "no active session")
        except (SessionIOError, StorageError) as exc:
            self._retry_later(f"{sig.name} failed: {exc}")
        except SessionError as exc:
            log.error("%s failed: %s", sig.name, exc)
        except Exception:  # a bug: keep the traceback, keep running
            log.exception("unexpected error while handling %s", sig.name)
        self._settled(frozenset({DEFAULT_SCOPE}))

    # --- after a change ------------------------------------------------------------

    def _settled(self, scopes: Iterable[str] | None = None) -> None:
        """After anything that may have changed the active session of
        ``scopes`` (``None``: of any scope)."""
        self._changed_since_snapshot = True
        if self._snapshot_waits_for_change:
            self._snapshot_waits_for_change = False
            asyncio.get_running_loop().call_soon(self._snapshot)
        if self._rules is not None:
            self._rules.rearm(scopes)
            if scopes is None or any(s != DEFAULT_SCOPE and s not in self._rules.actives for s in scopes):
                self._plan_sweep(None)  # a scope may have been left empty
        self._show_status()

    def _snapshot(self) -> None:
        """Take a snapshot when one is due and sessions changed since the
        last (see ``agent.snapshots``), then plan the next look."""
        self._snapshot_timer = None
        if self._manager is None:
            return
        if not self._changed_since_snapshot:
            self._snapshot_waits_for_change = True  # the next change calls us again
            return
        if self._manager.take_snapshot_if_due() is not None:
            self._changed_since_snapshot = False
        delay = _SNAPSHOT_RECHECK  # while off, or config.toml unusable: look again later
        try:
            from agent.snapshots import Snapshots

            due_in = Snapshots.configured(self.paths.data_dir).seconds_until_due(self._clock.now())
            if due_in is not None:
                delay = max(due_in, 1.0)
        except SessionError as exc:
            log.warning("cannot plan the next snapshot: %s", exc)
        self._snapshot_timer = asyncio.get_running_loop().call_later(delay, self._snapshot)

    def _plan_sweep(self, delay: float | None) -> None:
        """Sweep the empty scopes in ``delay`` seconds (``None``: once a scope
        left empty now is due), unless a sweep comes sooner."""
        if delay is None:
            try:
                assert self._manager is not None
                delay = self._manager.sweep_delay()
            except SessionError as exc:
                log.warning("could not plan the removal of empty scopes: %s", exc)
                return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay + 0.01
        if self._sweep is not None and self._sweep_at is not None and self._sweep_at <= at:
            return
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep, self._sweep_at = loop.call_at(at, self._sweep_empty_scopes), at

    def _sweep_empty_scopes(self) -> None:
        self._sweep = self._sweep_at = None
        if self._manager is None:
            return
        try:
            self._check_data_dir()
            next_due = self._manager.sweep_empty_scopes()
        except SessionError as exc:
            log.warning("could not remove empty scopes: %s", exc)
            return
        if next_due is not None:
            self._plan_sweep(next_due)

    # --- status ------------------------------------------------------------------

    def _status_line(self) -> str:
        actives = dict(self._rules.actives) if self._rules else {}
        default = actives.pop(DEFAULT_SCOPE, None)
        line = f"session {default.id} active" if default else "no active session"
        if actives:
            line += f"; {len(actives)} more in other scopes"
        return line

    def _show_status(self) -> None:
        """Keep systemd's STATUS= in step with the active session."""
        if not self._notifier.enabled:
            return
        try:
            line = self._status_line()
        except SessionError as exc:
            log.debug("no STATUS= update: %s", exc)
            return
        if line != self._shown_status:
            self._shown_status = line
            self._notifier.status(line)

    def status(self) -> dict[str, Any]:
        import psutil

        process = psutil.Process()
        with process.oneshot():
            rss = process.memory_info().rss
            times = process.cpu_times()
        now = time.monotonic()
        uptime = now - self._started_monotonic
        cpu = times.user + times.system
        # Start-up (imports, opening the store) dominates an average since the
        # start: the figure users want is what the daemon costs while it runs.
        ready_at, cpu_at_ready = self._ready_at or (self._started_monotonic, 0.0)
        running = now - ready_at
        assert self._manager is not None
        return {
            "daemon": {
                "running": True,
                "pid": os.getpid(),
                "version": __version__,
                "started_at": format_time(self._started_at),
                "uptime_seconds": round(uptime, 3),
                "rss_bytes": rss,
                "cpu_seconds": round(cpu, 3),
                "cpu_percent": round(100 * (cpu - cpu_at_ready) / running, 3) if running > 0 else 0.0,
                "cpu_percent_span_seconds": round(running, 3),
                "connections": self._server.connection_count if self._server else 0,
                "socket_activated": self._socket_activated,
                "systemd_notify": self._notifier.enabled,
            },
            "paths": self.paths.describe(),
            "watcher": {
                "step_ms": self.config.watch.step_ms,
                "debounce_ms": self.config.watch.debounce_ms,
            },
            **self._manager.describe_active(self._manager.active_sessions()),
        }


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _log_transition(op: str, result: object) -> None:
    """Every start and end a client asked for, in the journal beside those
    that file edits, signals and rules made."""
    if not isinstance(result, dict):
        log.info("control socket: %s: no active session, nothing to do", op)
        return
    scope = result.get("scope")
    where = "" if scope in (None, DEFAULT_SCOPE) else f" in scope {scope}"
    log.info("control socket: %s session %s%s", _TRANSITION_OPS[op], result.get("id"), where)

"""The daemon: start-up, main loop, shutdown.

``Daemon.serve`` reads as its life:

* **start-up** (``_start``) -- take the data dir's instance lock (before
  anything else, so a second daemon changes nothing), open the store,
  apply what happened to the current files of every scope while no daemon
  ran, bind the control socket (or take the one systemd passed), start
  watching the files, arm the rules and the upkeep timers, then tell
  systemd ``READY=1``: from then on the CLI goes through us. Each part is
  entered on one ``AsyncExitStack`` as it starts;
* **main loop** -- wait for a stop, a signal's action or the systemd
  watchdog. Everything else runs on the event loop beside it: requests
  (``agent.control``), file events (``agent.watcher``) and the rules'
  timers ask the ``Reconciler`` to apply files; the manager's changes go
  through the ``ChangeFeed`` to the rule watch, the sweeper, the snapshot
  timer and systemd's STATUS=; the event log's through the ``EventFeed`` to
  the subscribers (``agent.event_stream``) and the hooks
  (``agent.hook_runner``);
* **shutdown** -- the stack unwinds: the reverse of start-up by
  construction, each step bounded. The active sessions stay active; the
  next start-up restores them.

Requests and file events are handled on the event loop's thread, one at a
time: each is a few synced writes, well under the latency goals, and no two
can interleave.

Signals (``agent.signal_inbox``): SIGTERM/SIGINT stop (a second one cuts
the shutdown grace short); SIGHUP applies every scope's current file now;
SIGUSR1 starts a session in the default scope if none is active there;
SIGUSR2 ends the default scope's active one. (A signal carries no argument
to name a scope; other scopes have their files and the CLI.)
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent import __version__
from agent.change_feed import ChangeFeed, EventFeed
from agent.clock import default_clock
from agent.control.client import MAX_SOCKET_PATH
from agent.control.handlers import RequestHandler
from agent.control.server import ControlServer, bind_unix_socket
from agent.daemon_status import DaemonStatus
from agent.database import close_db, open_db
from agent.environment import IDLE_RECHECK_ENV
from agent.errors import SessionError, SessionIOError, StorageError
from agent.event_stream import EventStream
from agent.hook_runner import HookRunner
from agent.instance import InstanceLock
from agent.layout import DEFAULT_SCOPE
from agent.manager import SessionManager
from agent.owner_watch import OwnerWatches
from agent.paths import Paths, ensure_private_dir
from agent.reconciler import Reconciler
from agent.rule_watch import RuleWatch
from agent.session import EndReason
from agent.signal_inbox import SignalInbox
from agent.sync_service import SyncService
from agent.systemd import Notifier, listen_fds
from agent.upkeep import SnapshotTimer, Sweeper
from agent.watcher import FileWatcher, WatchSettings

__all__ = ["EXIT_DATA_DIR_REPLACED", "Daemon", "DaemonConfig"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 2.0
STORE_WAIT = 5.0  # an embedded CLI command may hold the store for a moment
EXIT_DATA_DIR_REPLACED = 75  # EX_TEMPFAIL: systemd's Restart=on-failure starts us on the new one
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_ACTION_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_UNGUARDED_OPS = frozenset({"ping", "status", "report", "import"})
# Answered from a thread (a report may read for seconds); guarded ops touch
# the reconciler, which belongs to the loop, so none may be here.
_THREADED_OPS = frozenset({"report", "import"})
_TRANSITION_OPS = {"start": "started", "end": "completed", "abandon": "abandoned"}
_IDLE_RECHECK = 60.0  # seconds: the latest an idle session ends after a resume from suspend
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_SAY_AGAIN_AFTER = 60.0  # seconds between two reports of running out of file descriptors


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
        self._actions: deque[signal.Signals] = deque()
        self._wakeup = asyncio.Event()
        self._notifier = Notifier()
        self._clock = default_clock()
        self._started = (datetime.now(UTC), time.monotonic())
        self._resources_said_at: float | None = None  # when running out of fds was last logged
        self._manager: SessionManager | None = None  # the parts the main loop and requests use
        self._reconciler: Reconciler | None = None
        self._handler: RequestHandler | None = None
        self._sweeper: Sweeper | None = None
        self._watcher_task: asyncio.Task[None] | None = None

    # --- the story -----------------------------------------------------------------

    def run(self) -> int:
        return asyncio.run(self.serve())

    async def serve(self) -> int:
        asyncio.get_running_loop().set_exception_handler(self._loop_exception)
        async with contextlib.AsyncExitStack() as stack:
            inbox = SignalInbox((*_STOP_SIGNALS, *_ACTION_SIGNALS), self._on_signal)
            inbox.open()
            stack.callback(inbox.close)
            await self._start(stack)
            if not self.should_exit:
                await self._main_loop()
        return self.exit_code

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        """Start each part and enter its stop on ``stack``: shutdown is the
        reverse. The socket is served last, once every part is ready, so it
        is also the first to close."""
        paths = self.paths
        ensure_private_dir(paths.data_dir)
        _raise_open_file_limit()
        lock = InstanceLock.acquire(paths.data_dir)  # a second daemon stops here, having logged nothing
        stack.callback(log.info, "stopped")
        stack.callback(lock.release)
        log.info("session-agent %s starting (pid %d) on %s", __version__, os.getpid(), paths.data_dir)

        owners = OwnerWatches(self._clock)
        db = open_db(paths.db, wait=STORE_WAIT)
        try:
            manager = self._manager = SessionManager(
                db, paths.data_dir, clock=self._clock, owner_exits=owners
            )
        except BaseException:
            close_db(db)
            raise
        stack.callback(self._close_store, manager)
        reconciler = self._reconciler = Reconciler(manager, paths.data_dir)
        stack.callback(reconciler.stop)
        feed = ChangeFeed()
        stack.callback(manager.subscribe(feed))
        stack.callback(feed.stop)

        await self._start_serving(stack, manager, reconciler, feed, owners)

    async def _start_serving(
        self,
        stack: contextlib.AsyncExitStack,
        manager: SessionManager,
        reconciler: Reconciler,
        feed: ChangeFeed,
        owners: OwnerWatches,
    ) -> None:
        """With the store open: the files applied, the rules and timers armed,
        the files watched, then the socket served."""
        paths = self.paths
        manager.recover_orphans()
        actives = manager.reconcile_all()
        for scope, active in actives.items():
            log.info(
                "restored session %s%s", active.id, "" if scope == DEFAULT_SCOPE else f" in scope {scope}"
            )
        if not actives:
            log.info("no active session")

        rules = RuleWatch(
            owners, self._clock, self.config.idle_recheck, lambda s, why: reconciler.apply(why, s)
        )
        rules.arm(manager.active_states())
        stack.callback(rules.stop)
        sweeper = self._sweeper = Sweeper(manager, reconciler)
        sweeper.sweep()
        stack.callback(sweeper.stop)
        snapshots = SnapshotTimer(manager, self._clock)
        snapshots.look()
        stack.callback(snapshots.stop)

        events = EventFeed()
        stack.callback(manager.store.events.listen(events))
        stack.callback(events.stop)
        stream = EventStream(manager.store.events)
        stack.callback(stream.stop)
        hooks = HookRunner(manager.store, paths.data_dir, self._clock)
        hooks.start()  # each first runs what it missed
        stack.push_async_callback(hooks.stop)
        sync = SyncService(manager.store, paths.data_dir, self._clock)
        sync.start()  # first ships what it has not, takes in what it has not
        stack.push_async_callback(sync.stop)
        events.add(stream.deliver)
        events.add(hooks.on_events)
        events.add(sync.on_events)

        sock, socket_path, activated = self._control_socket()
        if socket_path is not None:
            stack.callback(_unlink, socket_path)
        server = ControlServer(self._handle, threaded_ops=_THREADED_OPS, streamer=stream.serve)
        status = DaemonStatus(
            paths,
            self.config.watch,
            self._notifier,
            manager,
            server,
            socket_activated=activated,
            started=self._started,
            followers=(stream, hooks, sync),
        )
        self._handler = RequestHandler(manager, status.report)
        for listener in (rules.on_change, sweeper.on_change, snapshots.on_change, status.on_change):
            feed.add(listener)

        watcher = FileWatcher(
            paths.data_dir,
            self.config.watch,
            on_change=self._files_changed,
            on_dir_replaced=self._data_dir_replaced,
        )
        self._watcher_task = asyncio.create_task(watcher.run(), name="watcher")
        self._watcher_task.add_done_callback(lambda _: self._wakeup.set())  # the main loop checks on it
        stack.push_async_callback(_cancel, self._watcher_task)
        await watcher.established.wait()

        await server.start(sock)
        stack.push_async_callback(self._close_server, server)
        if not self.should_exit:
            line = status.ready(manager.active_states())
            log.info("ready: %s; control socket %s", line, sock.getsockname() or "(unnamed)")
        stack.callback(self._notifier.stopping)
        stack.callback(log.info, "stopping")

    async def _main_loop(self) -> None:
        interval = self._notifier.watchdog_interval
        if interval is not None:
            self._notifier.watchdog()
        while not self.should_exit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), interval)
            self._wakeup.clear()
            if interval is not None:
                self._notifier.watchdog()
            while self._actions and not self.should_exit:
                self._act_on(self._actions.popleft())
            if self._watcher_task is not None and self._watcher_task.done():
                log.error("the file watcher stopped unexpectedly: %s", self._watcher_task.exception())
                self.exit_code = 1
                self.should_exit = True

    # --- start-up and shutdown details ---------------------------------------------

    def _control_socket(self) -> tuple[socket.socket, str | None, bool]:
        """The listening socket, the path that is ours to unlink (``None``
        when systemd owns it), and whether systemd passed it."""
        passed = listen_fds()
        if passed:
            for extra in passed[1:]:
                extra.close()
            log.info("using the control socket passed by systemd")
            return passed[0], None, True
        path = self.paths.socket
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise SessionIOError(
                f"the control socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
                "choose a shorter --runtime-dir"
            )
        ensure_private_dir(self.paths.runtime_dir, allow_symlink=False, option="--runtime-dir")
        ensure_private_dir(self.paths.socket_dir, allow_symlink=False, option="--runtime-dir")
        try:
            return bind_unix_socket(str(path)), str(path), False
        except OSError as exc:
            raise SessionIOError(f"cannot listen on {path}: {exc.strerror}") from None

    async def _close_server(self, server: ControlServer) -> None:
        cut = await server.close(0.0 if self.force_exit else SHUTDOWN_GRACE)
        if cut:
            log.warning("cut %d control connection(s) that did not finish in time", cut)

    def _close_store(self, manager: SessionManager) -> None:
        try:
            manager.note_owner_alive()
        except SessionError as exc:
            log.warning("could not record that the owner process was alive: %s", exc)
        try:
            manager.close()
        except SessionError as exc:  # every change was synced when made: nothing is at risk
            log.warning("could not close the store cleanly: %s", exc)

    # --- requests, file events, signals --------------------------------------------

    def _handle(self, op: str, args: dict[str, Any]) -> Any:
        assert self._handler is not None
        assert self._reconciler is not None
        if op not in _UNGUARDED_OPS:
            self._reconciler.check_data_dir()
        try:
            result = self._handler(op, args)
        except (SessionIOError, StorageError) as exc:
            # A write failed, perhaps halfway (store written, file not): the
            # caller gets the error, and we settle again by ourselves once
            # the fault (a full disk, ...) has gone.
            self._reconciler.retry_later(f"{op} failed: {exc}")
            raise
        if op in _TRANSITION_OPS:
            _log_transition(op, result)
        return result

    def _files_changed(self, scopes: frozenset[str] | None) -> None:
        """From the watcher: ``scopes``' files or directories changed (``None``:
        any may have, while the watches were re-established)."""
        assert self._reconciler is not None
        assert self._sweeper is not None
        self._reconciler.apply("the current file changed", scopes)
        if scopes is None or any(scope != DEFAULT_SCOPE for scope in scopes):
            self._sweeper.plan()  # a scope's directory changed: it may be left empty

    def _data_dir_replaced(self) -> None:
        log.error(
            "the data dir %s was replaced by another directory; the store it held is gone with it. "
            "Stopping so that a restart opens the new one",
            self.paths.data_dir,
        )
        self.exit_code = EXIT_DATA_DIR_REPLACED
        self._request_exit()

    def _on_signal(self, sig: signal.Signals) -> None:
        if sig in _STOP_SIGNALS:
            if self.should_exit:
                self.force_exit = True
            log.info("received %s: stopping", sig.name)
            self._request_exit()
            return
        if sig not in self._actions:  # one pending action per signal
            self._actions.append(sig)
        self._wakeup.set()

    def _request_exit(self) -> None:
        self.should_exit = True
        self._wakeup.set()

    def _act_on(self, sig: signal.Signals) -> None:
        manager, reconciler = self._manager, self._reconciler
        assert manager is not None
        assert reconciler is not None
        log.info("received %s", sig.name)
        try:
            if sig == signal.SIGHUP:
                reconciler.apply("SIGHUP")
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
            reconciler.retry_later(f"{sig.name} failed: {exc}")
        except SessionError as exc:
            log.error("%s failed: %s", sig.name, exc)
        except Exception:  # a bug: keep the traceback, keep running
            log.exception("unexpected error while handling %s", sig.name)

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


def _raise_open_file_limit() -> None:
    """Each subscriber is a file descriptor: take the hard limit the system
    grants (systemd's default soft limit is 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(task, SHUTDOWN_GRACE)


def _log_transition(op: str, result: object) -> None:
    """Every start and end a client asked for, in the journal beside those
    that file edits, signals and rules made."""
    if not isinstance(result, dict):
        log.info("control socket: %s: no active session, nothing to do", op)
        return
    scope = result.get("scope")
    where = "" if scope in (None, DEFAULT_SCOPE) else f" in scope {scope}"
    log.info("control socket: %s session %s%s", _TRANSITION_OPS[op], result.get("id"), where)

"""``HookRunner``: the daemon runs each user hook over the event log.

Each hook (``agent.hooks``) has a task of its own that follows the log from
the hook's cursor, kept in the store: it reads the events after it, runs
the hook for each one it wants (in order, one at a time), and moves the
cursor on once that run is over -- so a daemon killed mid-run runs that
event again after its restart (at least once), and events recorded while
no daemon ran (commands that opened the store themselves, file edits
applied at start-up) are run when it starts. Events older than the hook's
``max_age`` when it gets to them are passed over (counted as skipped). A
new hook starts at the log's end: it is not run for what came before it.

Nothing here is on a transition's path: the runner hears of events after
their commit (``agent.change_feed``), and a hook's process runs beside the
loop. A run that outlives its timeout is killed (its whole process group);
what a hook prints on stdout is dropped, the tail of its stderr kept for
the log; a failure (an exit status, a signal, a timeout, a command that
cannot be run) is logged and recorded in the hook's state, never retried,
and the hook goes on with the next event. ``config.toml`` is read again
when it changes: hooks added, changed (by name) or removed take effect at
the next event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from agent.clock import Clock
from agent.config import load_settings
from agent.control import jsonline
from agent.errors import SessionError
from agent.events import Event
from agent.hooks import Hook, HookState, hook_environment, state_key
from agent.session import format_time
from agent.store import SessionStore

__all__ = ["HookRunner", "hook_states", "hooks_status"]

log = logging.getLogger(__name__)

_READ_BATCH = 64
_STDERR_TAIL = 2048  # bytes of a hook's stderr kept for the log
_KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL for a hook past its timeout


def hook_states(store: SessionStore, hooks: tuple[Hook, ...]) -> list[dict[str, object]]:
    """Each configured hook's state as ``status`` shows it."""
    last = store.events.last_seq
    found: list[dict[str, object]] = []
    for hook in hooks:
        state = HookState.decode(store.get_meta(state_key(hook.name)))
        found.append(state.to_dict(hook.name, last) if state else {"name": hook.name, "cursor": None})
    return found


def hooks_status(store: SessionStore, data_dir: Path, problem: str | None = None) -> dict[str, object]:
    """The ``hooks`` part of ``status``: each configured hook's state, and
    what is wrong with the config, if anything."""
    try:
        hooks = load_settings(data_dir).hooks
    except SessionError as exc:
        return {"hooks": [], "problem": str(exc)}
    return {"hooks": hook_states(store, hooks), "problem": problem}


class HookRunner:
    def __init__(self, store: SessionStore, data_dir: Path, clock: Clock) -> None:
        self._store = store
        self._data_dir = data_dir
        self._clock = clock
        self._hooks: dict[str, Hook] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._config_problem: str | None = None
        self._stopping = False

    def start(self) -> None:
        """Start a task per configured hook (each first runs what it missed)."""
        self._refresh()

    def on_events(self, events: tuple[Event, ...]) -> None:
        """The event feed's listener: wake the hooks (a hook the config gained
        since the last events starts with these)."""
        self._refresh(start_after=events[0].seq - 1)
        for wake in self._wake.values():
            wake.set()

    def status(self) -> dict[str, object]:
        return hooks_status(self._store, self._data_dir, self._config_problem)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- the hooks, as the config names them ---------------------------------------

    def _refresh(self, start_after: int | None = None) -> None:
        if self._stopping:
            return
        try:
            hooks = {hook.name: hook for hook in load_settings(self._data_dir).hooks}
        except SessionError as exc:  # kept as they were: said once per problem
            if str(exc) != self._config_problem:
                self._config_problem = str(exc)
                log.error("hooks not (re)loaded: %s", exc)
            return
        self._config_problem = None
        if hooks == self._hooks:
            return
        for name in set(self._hooks) - set(hooks):
            self._tasks.pop(name).cancel()
            del self._wake[name]
            log.info("hook %s removed", name)
        for name, hook in hooks.items():
            if self._hooks.get(name) == hook:
                continue
            if name in self._tasks:
                self._tasks.pop(name).cancel()
            self._wake[name] = asyncio.Event()
            self._tasks[name] = asyncio.create_task(self._follow(hook, start_after), name=f"hook {name}")
        self._hooks = hooks

    # --- one hook --------------------------------------------------------------------

    async def _follow(self, hook: Hook, start_after: int | None) -> None:
        """``_run_over_log``, started again after an unexpected error (a bug,
        a store that failed a read): a hook is never silently given up."""
        while True:
            try:
                await self._run_over_log(hook, start_after)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("hook %s: unexpected error; going on in a second", hook.name)
                await asyncio.sleep(1.0)

    async def _run_over_log(self, hook: Hook, start_after: int | None) -> None:
        wake = self._wake[hook.name]
        state = self._state(hook, start_after)
        while True:
            try:
                batch = list(self._store.events.after(state.cursor, _READ_BATCH))
            except SessionError as exc:
                log.warning(
                    "hook %s: cannot read the event log (%s); trying again at the next event", hook.name, exc
                )
                batch = []
            if not batch:
                wake.clear()
                await wake.wait()
                continue
            first = self._store.events.first_seq()
            if state.cursor + 1 < first:
                log.warning(
                    "hook %s: events %d to %d were trimmed from the log before it ran for them",
                    hook.name,
                    state.cursor + 1,
                    first - 1,
                )
            for event in batch:
                if hook.wants(event):
                    age = (self._clock.now() - event.at).total_seconds()
                    if hook.max_age and age > hook.max_age:
                        state = state.replace(cursor=event.seq, skipped=state.skipped + 1)
                        continue
                    state = await self._run(hook, event, state)
                    self._save(hook, state)
                else:
                    state = state.replace(cursor=event.seq)
            self._save(hook, state)

    def _state(self, hook: Hook, start_after: int | None) -> HookState:
        stored = HookState.decode(self._store.get_meta(state_key(hook.name)))
        last = self._store.events.last_seq
        if stored is None:  # new: from here on
            stored = HookState(last if start_after is None else min(start_after, last))
            self._save(hook, stored)
            log.info("hook %s added: runs for events after %d", hook.name, stored.cursor)
        elif stored.cursor > last:
            log.warning(
                "hook %s: its cursor %d is past the log's end %d (the store was restored)",
                hook.name,
                stored.cursor,
                last,
            )
            stored = stored.replace(cursor=last)
        return stored

    def _save(self, hook: Hook, state: HookState) -> None:
        try:
            self._store.commit(meta={state_key(hook.name): state.encode()})
        except SessionError as exc:  # kept in memory; after a crash the run is repeated
            log.warning("hook %s: cannot save its place in the log: %s", hook.name, exc)

    async def _run(self, hook: Hook, event: Event, state: HookState) -> HookState:
        """Run ``hook`` for ``event``; its state after the run."""
        began = time.monotonic()
        failure: str | None = None
        code: int | None = None
        try:
            code, tail = await self._execute(hook, event)
            if code != 0:
                failure = f"exited with status {code}" if code > 0 else f"killed by {_signal_name(-code)}"
                if tail:
                    failure += f"; its stderr ended: {tail}"
        except TimeoutError:
            failure = f"did not finish within {hook.timeout} s: killed"
        except OSError as exc:
            failure = f"cannot run {hook.argv[0]}: {exc.strerror or exc}"
        seconds = round(time.monotonic() - began, 3)
        at = format_time(self._clock.now())
        run = {"seq": event.seq, "at": at, "exit": code, "seconds": seconds}
        if failure is None:
            log.debug("hook %s ran for event %d in %.3f s", hook.name, event.seq, seconds)
            return state.replace(cursor=event.seq, runs=state.runs + 1, last_run=run)
        log.warning(
            "hook %s failed for event %d (%s %s): %s",
            hook.name,
            event.seq,
            event.kind.value,
            event.session.id,
            failure,
        )
        return state.replace(
            cursor=event.seq,
            runs=state.runs + 1,
            failures=state.failures + 1,
            last_run=run,
            last_failure={"seq": event.seq, "at": at, "message": failure},
        )

    async def _execute(self, hook: Hook, event: Event) -> tuple[int, str]:
        """The exit status (negative: the signal) and the tail of stderr."""
        environment = {**os.environ, **hook_environment(event, self._data_dir)}
        process = await asyncio.create_subprocess_exec(
            *hook.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
            cwd=_home(self._data_dir),
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
        try:
            async with asyncio.timeout(hook.timeout):
                tail = asyncio.create_task(_tail(process.stderr))
                await _feed(process.stdin, jsonline.dumps(event.to_wire()).encode() + b"\n")
                code = await process.wait()
                return code, await tail
        except BaseException:
            await _kill(process)
            raise


async def _feed(stdin: asyncio.StreamWriter | None, data: bytes) -> None:
    """Write the event to the hook's stdin and close it (a hook that does not
    read it is no failure)."""
    if stdin is None:
        return
    with contextlib.suppress(ConnectionError, BrokenPipeError):
        stdin.write(data)
        await stdin.drain()
    with contextlib.suppress(ConnectionError, BrokenPipeError):
        stdin.close()


async def _tail(stream: asyncio.StreamReader | None) -> str:
    """Read ``stream`` to its end, keeping only its last bytes."""
    if stream is None:
        return ""
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-_STDERR_TAIL:]
    return kept.decode("utf-8", "replace").strip().replace("\n", " | ")


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Stop a hook's whole process group: SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
            return


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _home(data_dir: Path) -> str:
    home = os.path.expanduser("~")
    return home if os.path.isdir(home) else str(data_dir)

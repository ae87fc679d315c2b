"""The commands editors and hooks call most, carried out without click.

``start``, ``end``, ``abandon``, ``current`` and ``touch`` (with ``--json``
where the command takes it and ``--scope``, after the global ``--data-dir``
and ``--runtime-dir``) run on every editor start, save and exit, where their
latency is the user's. When a daemon answers, this module carries them out
with the socket client alone: no click, no typing, no datetime, which is
most of what a Python CLI spends before it does anything.

Without a daemon, the same commands open the store here (embedded, through
``agent.backend`` as the full CLI does), still without click.

Everything else goes to the full CLI (``agent.cli``): any other command or
option, ``--debug``, ``--help``, a daemon that went away before a read was
answered (the full CLI asks again). Both print the same output and exit
with the same codes; a test runs each form both ways and compares, with a
daemon and without.
"""

from __future__ import annotations

import os
import sys

from agent.output import command_place, fail, note, show_result

TYPE_CHECKING = False  # typing costs milliseconds on this path
if TYPE_CHECKING:
    from agent.backend import Backend

__all__ = ["main"]

_GLOBAL_OPTIONS = ("--data-dir", "--runtime-dir")
# The hot commands, and whether each takes --json.
_HOT = {"start": True, "end": False, "stop": False, "abandon": False, "current": True, "touch": True}
_ALIASES = {"stop": "end"}
_READ_ONLY = frozenset({"current", "touch"})  # without a daemon, they create no store


def main() -> None:
    """The entry point of ``session-agent`` (and ``python -m agent``): every
    command, the daemon too, starts here."""
    from agent.environment import FAULTS_ENV, FAULTS_FILE_ENV, TEST_CLOCK_ENV

    # Whatever this process creates -- the store's files (RocksDB creates
    # them with the umask), current files, snapshots -- is the user's alone.
    os.umask(0o077)

    # Test machinery, installed here when asked for and never at import.
    if os.environ.get(FAULTS_ENV) or os.environ.get(FAULTS_FILE_ENV):
        from agent.errors import SessionError
        from agent.faults import install_from_environment

        try:
            install_from_environment()
        except SessionError as error:
            sys.exit(fail(error, error.exit_code))
    if os.environ.get(TEST_CLOCK_ENV):
        from agent.simulated_clock import install_from_environment as install_clock

        install_clock()
    code = run(sys.argv[1:])
    if code is None:
        from agent.cli import main as full_cli

        full_cli()
        return
    sys.exit(code)


def run(argv: list[str]) -> int | None:
    """Carry out a hot command through the daemon and return its exit code,
    or ``None`` when the full CLI must handle it."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    options, command, as_json, scope, given = parsed

    from agent.control.client import ConnectionLostError, DaemonClient
    from agent.errors import DaemonError, SessionError
    from agent.locations import SOCKET_NAME, resolve_dirs, socket_dir
    from agent.scope import scope_args

    try:
        data_dir, runtime_dir = resolve_dirs(options.get("--data-dir"), options.get("--runtime-dir"))
        client = DaemonClient.connect(os.path.join(socket_dir(data_dir, runtime_dir), SOCKET_NAME), data_dir)
    except SessionError as error:  # e.g. no answer within the deadline: not worth a second wait
        return fail(error, error.exit_code)
    if client is None:
        return _embedded(data_dir, runtime_dir, command, as_json, scope, given)
    try:
        extra = {**command_place(), **given} if command == "start" else {}
        result = client.request(command, **scope_args(scope), **extra)
        if result is not None and not (isinstance(result, dict) and isinstance(result.get("id"), str)):
            raise DaemonError(f"the daemon sent a malformed reply to {command!r}")
    except ConnectionLostError as error:
        if command == "current":
            return None  # a read: the full CLI asks again, embedded or of the next daemon
        return fail(error, error.exit_code)
    except SessionError as error:
        return fail(error, error.exit_code)
    except OSError as error:
        return fail(error, 5)
    finally:
        client.close()
    return show_result(command, result, as_json)


def _embedded(  # noqa: PLR0917 -- the parsed command, as run() has it
    data_dir: str, runtime_dir: str, command: str, as_json: bool, scope: str, given: dict[str, object]
) -> int:
    """No daemon: the store opened here, as the full CLI would (same backend,
    same logging), still without click."""
    from agent.backend import open_backend
    from agent.errors import SessionError
    from agent.logs import configure_cli_logging
    from agent.paths import Paths

    paths = Paths.resolve(data_dir, runtime_dir)
    try:
        backend = open_backend(
            paths, before_embedded=lambda: configure_cli_logging(False), create=command not in _READ_ONLY
        )
        try:
            if command in ("end", "abandon"):
                session = getattr(backend, command)(None, scope)
            elif command == "start":
                from agent.config import StartRequest
                from agent.details import Details

                details = Details.from_given({**command_place(), **given})
                session = backend.start(StartRequest(details=details), scope)
            else:
                session = getattr(backend, command)(scope=scope)
        except BaseException:
            _close_quietly(backend)
            raise
    except SessionError as error:
        return fail(error, error.exit_code)
    except OSError as error:
        return fail(error, 5)
    code = show_result(command, session.to_dict() if session is not None else None, as_json)
    try:
        backend.close()
    except SessionError as error:  # after the answer: what the command did was synced when done
        note(f"warning: {error}; what this command did is on disk")
    return code


def _close_quietly(backend: Backend) -> None:
    """Close after a failure that is being reported already."""
    import contextlib

    from agent.errors import SessionError

    with contextlib.suppress(SessionError):
        backend.close()


def _parse(argv: list[str]) -> tuple[dict[str, str], str, bool, str, dict[str, object]] | None:
    """``(global options, command, --json, scope)`` for a hot form, else
    ``None`` (also for a bad scope name: the full CLI says what is wrong)."""
    options: dict[str, str] = {}
    rest = list(argv)
    while rest and rest[0].startswith(_GLOBAL_OPTIONS):
        name, equals, value = rest.pop(0).partition("=")
        if name not in _GLOBAL_OPTIONS or name in options:
            return None
        if not equals:
            if not rest:
                return None
            value = rest.pop(0)
        if not value or value.startswith("-"):
            return None
        options[name] = value
    if not rest or rest[0] not in _HOT:
        return None
    from agent.environment import START_ENV

    if rest[0] == "start" and any(os.environ.get(name) for name in START_ENV):
        return None
    from agent.environment import SCOPE_ENV
    from agent.scope import DEFAULT_SCOPE, scope_problem

    command, flags = _ALIASES.get(rest[0], rest[0]), rest[1:]
    as_json = False
    scope = os.environ.get(SCOPE_ENV) or DEFAULT_SCOPE
    given: dict[str, object] = {}
    while flags:
        flag, equals, value = flags.pop(0).partition("=")
        if not equals and flag in _VALUED and flags:
            value = flags.pop(0)
        if flag == "--json" and not equals and _HOT[command] and not as_json:
            as_json = True
        elif flag == "--scope" and (equals or value):
            scope = value
        elif command == "start" and flag in _DETAILS and value and not value.startswith("-"):
            if not _take_detail(given, _DETAILS[flag], value):
                return None
        else:
            return None
    if scope_problem(scope) is not None:
        return None
    return options, command, as_json, scope, given


# What `start` says of the session on the fast path (as `agent.cli`'s options).
_DETAILS = {
    "--tool": "tool",
    "--external-id": "external_id",
    "--project": "project",
    "--title": "title",
    "--tag": "tags",
    "--label": "labels",
}
_VALUED = frozenset({"--scope", *_DETAILS})


def _take_detail(given: dict[str, object], name: str, value: str) -> bool:
    """Add one option's value; ``False`` for what the full CLI must judge."""
    if name == "tags":
        tags = given.setdefault("tags", [])
        assert isinstance(tags, list)
        tags.append(value)
    elif name == "labels":
        key, equals, label = value.partition("=")
        if not equals or not key:
            return False  # the full CLI's usage error
        labels = given.setdefault("labels", {})
        assert isinstance(labels, dict)
        labels[key] = label
    elif name in given:
        return False  # given twice: click keeps the last; let it
    else:
        given[name] = value
    return True

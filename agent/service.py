"""Installing session-agent as a systemd user service.

The unit files are rendered here, with the real path of the Python that runs
this code, so the service starts the same installation the user ran
``service install`` from. ``systemd/`` in the repository holds the same
units rendered for a ``pip install --user`` (the tests check they are
current).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import SessionIOError

__all__ = [
    "SERVICE_UNIT",
    "SOCKET_UNIT",
    "ServicePlan",
    "install",
    "render_service",
    "render_socket",
    "uninstall",
    "unit_dir",
]

SERVICE_UNIT = "session-agent.service"
SOCKET_UNIT = "session-agent.socket"
DEFAULT_LISTEN = "%t/session-agent/control.sock"
_SYSTEMCTL_TIMEOUT = 60

_SERVICE = """\
[Unit]
Description=session-agent: keeps track of work sessions for editors and AI-coding tools
Documentation=man:systemd.service(5)

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
# 6: another daemon already runs on this data dir; restarting will not help.
RestartPreventExitStatus=6
WatchdogSec=30
TimeoutStopSec=15
# Hardening that works in a user manager (no mount namespaces needed).
UMask=0077
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictAddressFamilies=AF_UNIX
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=default.target
"""

_SOCKET = """\
[Unit]
Description=session-agent control socket (starts the daemon on first use)

[Socket]
ListenStream={listen}
SocketMode=0600
DirectoryMode=0700
FileDescriptorName=control

[Install]
WantedBy=sockets.target
"""


def _exec_quote(arg: str) -> str:
    """Quote one ExecStart word: systemd expands ``%`` specifiers and ``$``
    variables, and splits on whitespace unless quoted."""
    escaped = arg.replace("\\", "\\\\").replace("%", "%%").replace("$", "$$")
    if any(c.isspace() for c in escaped) or any(c in escaped for c in "\"'"):
        escaped = '"' + escaped.replace('"', '\\"') + '"'
    return escaped


def render_service(command: Sequence[str]) -> str:
    return _SERVICE.format(exec_start=" ".join(_exec_quote(arg) for arg in command))


def render_socket(listen: str = DEFAULT_LISTEN) -> str:
    return _SOCKET.format(listen=listen)


def unit_dir() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


@dataclass(frozen=True)
class ServicePlan:
    """What ``install`` writes: the daemon's command line and, for socket
    activation, where the socket listens."""

    command: tuple[str, ...]
    socket_path: str | None  # None: no socket unit

    @classmethod
    def for_this_python(cls, global_args: Sequence[str], socket_path: str | None) -> ServicePlan:
        return cls((sys.executable, "-m", "agent", *global_args, "daemon"), socket_path)

    def units(self) -> dict[str, str]:
        units = {SERVICE_UNIT: render_service(self.command)}
        if self.socket_path is not None:
            units[SOCKET_UNIT] = render_socket(self.socket_path)
        return units


def _write(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as exc:
        raise SessionIOError(f"cannot write {path}: {exc.strerror}") from None


def _systemctl(*args: str) -> str | None:
    """Run ``systemctl --user``; the problem as text, or ``None`` if it worked."""
    program = shutil.which("systemctl")
    if program is None:
        return "systemctl was not found"
    try:
        done = subprocess.run(
            [program, "--user", *args],
            capture_output=True,
            text=True,
            timeout=_SYSTEMCTL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
    return None


_NO_MANAGER = ("failed to connect to bus", "dbus_session_bus_address", "no medium found")


def _no_user_manager(problem: str) -> bool:
    """Whether systemctl failed only because no user manager runs for us
    (a container, an SSH session without lingering)."""
    lowered = problem.lower()
    return any(sign in lowered for sign in _NO_MANAGER)


def install(plan: ServicePlan, *, enable: bool) -> list[str]:
    """Write the units and (with a running user manager) enable and start
    them. Returns what happened, one line each, for the user. Without a
    user manager the units are written all the same, and the lines say
    what to do instead; only a failure of the manager itself is an error."""
    directory = unit_dir()
    notes = []
    for name, text in plan.units().items():
        _write(directory / name, text)
        notes.append(f"wrote {directory / name}")
    stale_socket = directory / SOCKET_UNIT
    if plan.socket_path is None and stale_socket.exists():
        notes.append(f"note: {stale_socket} is left from an earlier install; `service uninstall` removes it")
    main_unit = SOCKET_UNIT if plan.socket_path is not None else SERVICE_UNIT
    commands: list[tuple[str, ...]] = [("daemon-reload",)]
    if enable:
        commands.append(("enable", "--now", main_unit))
    if plan.socket_path is not None and enable:
        commands.append(("enable", SERVICE_UNIT))  # also start at login, to watch the file
    shown = ["systemctl --user " + " ".join(args) for args in commands]
    if shutil.which("systemctl") is None:
        notes.append("systemctl was not found; once systemd runs your user session, run:")
        notes.extend(f"  {line}" for line in shown)
        return notes
    for args, line in zip(commands, shown, strict=True):
        problem = _systemctl(*args)
        if problem is not None and _no_user_manager(problem):
            return [*notes, *_without_manager(problem, shown, enable)]
        if problem is not None:
            raise SessionIOError(f"the units are written, but `{line}` failed: {problem}")
        notes.append(f"ran {line}")
    return notes


def _without_manager(problem: str, shown: list[str], enable: bool) -> list[str]:
    user = os.environ.get("USER") or str(os.getuid())
    first = problem.splitlines()[0]
    lines = [f"warning: no systemd user manager runs for you ({first}), so nothing was enabled or started."]
    if not enable:
        return [*lines, "Once one runs, `systemctl --user daemon-reload` picks the units up."]
    return [
        *lines,
        "To have systemd start it: run `loginctl enable-linger " + user + "`, log in again, then:",
        *(f"  {line}" for line in shown),
        "Or run `session-agent daemon` yourself; without a daemon, every command opens the store itself.",
    ]


def uninstall() -> list[str]:
    directory = unit_dir()
    notes = []
    present = [name for name in (SOCKET_UNIT, SERVICE_UNIT) if (directory / name).exists()]
    if shutil.which("systemctl") is not None and present:
        problem = _systemctl("disable", "--now", *present)
        if problem is not None:
            notes.append(f"warning: systemctl --user disable --now failed: {problem}")
    for name in present:
        try:
            (directory / name).unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise SessionIOError(f"cannot remove {directory / name}: {exc.strerror}") from None
        notes.append(f"removed {directory / name}")
    if shutil.which("systemctl") is not None and present:
        _systemctl("daemon-reload")
    if not present:
        notes.append(f"nothing to remove in {directory}")
    return notes

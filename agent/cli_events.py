"""``events``: the event log, printed, and followed. ``agent.cli`` adds it to its group.

Without ``--follow`` it reads the store as it is on disk, read-only (beside
a running daemon or without one); with ``--follow`` it subscribes on the
daemon's socket (``agent.follow``), which serves the stored events first
and then each new one."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

import click

from agent.cli_support import Agent
from agent.events import KINDS, Event, Gap

__all__ = ["EVENTS_COMMANDS"]


class SinceSeqType(click.ParamType[object]):
    """A seq (a whole number), ``now``, or a time as ``list --since`` takes it."""

    name = "SEQ|WHEN"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        from agent.timespec import parse_since

        text = str(value).strip()
        if text.isdigit():
            return int(text)
        if text == "now":
            return text
        try:
            return parse_since(text, datetime.now(UTC))
        except ValueError as exc:
            self.fail(f"{exc}; or a seq (a whole number), or now", param, ctx)


@click.command()
@click.option(
    "-f", "--follow", is_flag=True, help="Go on printing new events as they happen (needs the daemon)."
)
@click.option(
    "-s",
    "--since",
    type=SinceSeqType(),
    default=None,
    help="After this seq, or from this time (2h, 7d, an ISO time), or now "
    "[default: every event kept; with --follow: now].",
)
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS), help="Only this kind (repeatable).")
@click.option("--scope", "scope", default=None, help="Only scopes matching this shell pattern (claude-*).")
@click.option("--project", default=None, help="Only this project's sessions.")
@click.option("--tool", default=None, help="Only this tool's sessions.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, as the socket sends them.")
@click.pass_obj
def events(  # noqa: PLR0917 -- click passes the options by name
    agent: Agent,
    follow: bool,
    since: object,
    kinds: tuple[str, ...],
    scope: str | None,
    project: str | None,
    tool: str | None,
    as_json: bool,
) -> None:
    """Print what happened to sessions: started, ended (and why), activity,
    updated, counted -- each with its seq, oldest first.

    \b
    Examples:
      session-agent events --since 1h
      session-agent events --follow --kind started --kind ended
      session-agent events --follow --json --since 42   # resume after seq 42
    """
    from agent.errors import DaemonNotRunningError
    from agent.follow import follow_events, read_events

    wanted = list(kinds) or None
    moment = since if isinstance(since, datetime) else None
    seq = since if isinstance(since, int) else 0

    def stored() -> None:
        if since != "now":
            found = read_events(
                seq,
                since_time=moment,
                kinds=wanted,
                scope=scope,
                project=project,
                tool=tool,
                data_dir=agent.paths.data_dir,
            )
            _print(found, as_json)

    if not follow:
        stored()
        return
    signal.signal(signal.SIGINT, lambda *_: _quit(130))
    try:
        stream = follow_events(
            since if isinstance(since, int) else "now",
            since_time=moment,
            kinds=wanted,
            scope=scope,
            project=project,
            tool=tool,
            data_dir=agent.paths.data_dir,
            runtime_dir=agent.paths.runtime_dir,
        )
        _print(stream, as_json)
    except DaemonNotRunningError:
        stored()  # what there is, then why no more comes
        raise DaemonNotRunningError(
            "--follow needs the daemon, and none runs: start it (`session-agent daemon`, or the "
            "service); without --follow, events prints what is stored"
        ) from None


def _print(items: Iterable[Event | Gap], as_json: bool) -> None:
    """Each item, flushed as it comes (a follower is read live); quiet when
    the reader goes away (``| head``)."""
    from agent.control import jsonline

    try:
        for item in items:
            line = jsonline.dumps(item.to_wire()) if as_json else _text(item)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more to say to a reader that left
        _quit(0)


def _text(item: Event | Gap) -> str:
    if isinstance(item, Gap):
        return f"-- events {item.first} to {item.last} are no longer kept ([events] in config.toml) --"
    session = item.session
    when = item.at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    line = f"{item.seq:>6}  {when}  {item.kind.value:<8}  {session.id}  {session.scope}"
    extras = []
    if item.kind.value == "ended" and session.end_reason is not None:
        extras.append(f"{session.status.value}, {session.end_reason.value}")
    for name, value in (("project", session.details.project), ("tool", session.details.tool)):
        if value:
            extras.append(f"{name} {value}")
    if item.kind.value == "counted":
        extras.append(f"{session.memory_count} memories")
    return line + (f"  ({'; '.join(extras)})" if extras else "")


def _quit(code: int) -> None:
    os._exit(code)  # a follower blocked in a read (each line was flushed): nothing is left to tidy


EVENTS_COMMANDS = (events,)

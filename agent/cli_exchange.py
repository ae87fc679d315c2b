"""``export`` and ``import``: history out of the store and into it.
``agent.cli`` adds them to its group.

``export`` reads the store as it is on disk, read-only, beside a running
daemon or without one (as ``doctor`` does), and streams: constant memory
however much history there is."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent.cli_support import SCOPE, Agent, hosts_option, write_whole
from agent.errors import SessionError
from agent.output import note

if TYPE_CHECKING:
    from datetime import datetime

    from agent.errors import StorageError
    from agent.paths import Paths
    from agent.session import Session
    from agent.store import SessionStore

__all__ = ["EXCHANGE_COMMANDS"]


@click.command()
@click.option(
    "-f",
    "--format",
    "form",
    type=click.Choice(["jsonl", "csv", "ical", "timewarrior"]),
    default="jsonl",
    show_default=True,
    help="JSON lines (every field), CSV, iCalendar events, or the JSON `timew export` writes.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here [default: stdout]."
)
@click.option(
    "-s", "--since", default=None, help="Sessions that ran since: as report takes it [default: all]."
)
@click.option("-u", "--until", default=None, help="...and before this [default: now].")
@click.option("--project", help="Only this project's sessions.")
@click.option(
    "--tag", "tags", multiple=True, help="Only sessions with this tag (repeatable: with every one)."
)
@click.option("--tool", help="Only sessions of this tool.")
@click.option("--scope", type=SCOPE, default=None, help="Only this scope's sessions [default: every scope].")
@hosts_option
@click.pass_obj
def export(  # noqa: PLR0917 -- click passes the options by name
    agent: Agent,
    hosts: str | None,
    form: str,
    output: Path | None,
    since: str | None,
    until: str | None,
    project: str | None,
    tags: tuple[str, ...],
    tool: str | None,
    scope: str | None,
) -> None:
    """Export sessions, oldest first: every one, or those that ran in a range.

    \b
    Examples:
      session-agent export > sessions.jsonl
      session-agent export --format csv --since last-month -o month.csv
      session-agent export --format ical --project webshop > webshop.ics
      session-agent export --format timewarrior > timew.json
      session-agent export --all-hosts --since this-month > everywhere.jsonl
    """
    from agent.cli_report import resolve_range
    from agent.clock import default_clock
    from agent.details import SessionFilter
    from agent.export import export_lines
    from agent.history import sessions_that_ran
    from agent.periods import Calendar, local_zone, locale_first_weekday

    now = default_clock().now()
    start = end = None
    if since is not None or until is not None:
        calendar = Calendar(local_zone()[1], locale_first_weekday())
        start, end = resolve_range(since or "1970-01-01T00:00Z", until, now, calendar)
    where = SessionFilter(project, frozenset(tags), tool)
    problems: list[StorageError] = []
    with _history(agent.paths) as store:
        ran: Iterable[Session] = () if store is None else sessions_that_ran(store, start, end, problems)
        if store is not None and hosts is not None:
            ran = _over_hosts(store, agent.paths, hosts, ran, span=(start, end), problems=problems)
        kept = (s for s in ran if (scope is None or s.scope == scope) and where.keeps(s))
        _write(export_lines(kept, form, now), output)
    for problem in problems:
        note(f"warning: skipped: {problem}")


def _over_hosts(
    store: SessionStore,
    paths: Paths,
    hosts: str,
    local: Iterable[Session],
    *,
    span: tuple[datetime | None, datetime | None],
    problems: list[StorageError],
) -> Iterator[Session]:
    """This machine's sessions (if chosen) and those taken in from the hosts
    chosen (as the daemon last took them in), oldest first."""
    import heapq

    from agent.host_choice import HostChoice

    try:
        choice = HostChoice.resolve(hosts, store, paths.data_dir)
    except SessionError as exc:
        raise click.ClickException(str(exc)) from None
    assert choice is not None
    since, until = span
    streams: list[Iterable[Session]] = [(choice.named(s) for s in local)] if choice.local else []
    if choice.remote:
        remote = (s for _, s in store.remote.oldest_first(choice.remote_host, problems))
        streams.append(
            s
            for s in remote
            if (until is None or s.started_at < until)
            and (since is None or s.ended_at is None or s.ended_at >= since)
        )
    return heapq.merge(*streams, key=lambda s: s.id)


@contextmanager
def _history(paths: Paths) -> Iterator[SessionStore | None]:
    """The store read-only (``None`` if the data dir holds none yet)."""
    from agent.database import holds_a_store, open_db_read_only
    from agent.store import SessionStore

    if not holds_a_store(paths.db):
        note(f"the data dir {paths.data_dir} holds no store yet: nothing to export")
        yield None
        return
    store = SessionStore(open_db_read_only(paths.db), read_only=True)
    try:
        yield store
    finally:
        store.close()


def _write(pieces: Iterable[str], output: Path | None) -> None:
    """Stream ``pieces`` to stdout (quietly ending if the reader goes away:
    ``| head``), or to ``output``, whole or not at all."""
    if output is not None:
        write_whole(output, pieces)
        return
    try:
        for piece in pieces:
            sys.stdout.write(piece)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more to say to a reader that left


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--from",
    "form",
    type=click.Choice(["jsonl", "timewarrior", "watson"]),
    required=True,
    help="Our own JSON lines, `timew export`'s JSON, or Watson's frames file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was imported as JSON.")
@click.pass_obj
def import_(agent: Agent, file: Path, form: str, as_json: bool) -> None:
    """Import sessions from FILE: all of it, or nothing if a record is bad.

    Importing the same file again adds nothing. Imported sessions are ended
    and keep their times; a peer's project, tags and annotation become
    ours (see docs/export-import.md).

    \b
    Examples:
      session-agent import sessions.jsonl --from jsonl
      timew export > timew.json && session-agent import timew.json --from timewarrior
      session-agent import ~/.config/watson/frames --from watson
    """
    from agent.cli_support import echo_json

    path = str(file.absolute())
    result = agent.backend().import_file(path, form)
    if as_json:
        echo_json(result)
        return
    click.echo(f"imported {result['added']} session(s) from {file}; {result['already_held']} already held")
    for what in result.get("left_out") or ():
        note(f"left out: {what}")


EXCHANGE_COMMANDS = (export, import_)

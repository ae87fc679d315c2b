"""``report``: where the time went. ``agent.cli`` adds it to its group.

The range is resolved here, in the user's zone and week (``agent.periods``),
and the report is built where the sessions are -- in the daemon, or in
this process -- then drawn here (``agent.report_text``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent.cli_support import SCOPE, Agent, echo_json, hosts_option, json_option, write_whole
from agent.output import note

if TYPE_CHECKING:
    from agent.backend import Backend
    from agent.periods import Calendar

__all__ = ["REPORT_COMMANDS"]

_WHEN_HELP = (
    "today, yesterday, this-week, last-week, this-month, last-month, "
    "a duration ago (90m, 7d), or an ISO date/time"
)


def resolve_range(
    since: str, until: str | None, now: datetime, calendar: Calendar
) -> tuple[datetime, datetime]:
    """``--since``/``--until`` as a range. A named period given to
    ``--since`` alone is that whole period (``--since yesterday``: all of
    yesterday); ``--until NAME`` is where that period starts (``--until
    today``: last midnight); anything else, as ``list --since`` reads it,
    until now."""
    from agent.periods import NAMED
    from agent.timespec import parse_since

    def point(text: str, option: str) -> tuple[datetime, datetime | None]:
        word = text.strip().lower()
        if word in NAMED:
            return calendar.named(word, now)
        try:
            return parse_since(text, now), None
        except ValueError as exc:
            raise click.BadParameter(f"{exc}, or {', '.join(NAMED)}", param_hint=option) from None

    start, natural_end = point(since, "'--since'")
    end = point(until, "'--until'")[0] if until is not None else natural_end or now
    if end <= start:
        raise click.BadParameter(
            f"--until ({end.astimezone(calendar.zone):%Y-%m-%d %H:%M}) is not after --since "
            f"({start.astimezone(calendar.zone):%Y-%m-%d %H:%M})",
            param_hint="'--until'",
        )
    return start, end


def _groupings(text: str) -> tuple[str, ...]:
    from agent.report import GROUPINGS

    by = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not 1 <= len(by) <= 2 or len(set(by)) != len(by) or any(g not in GROUPINGS for g in by):
        raise click.BadParameter(
            f"{text!r}: give one or two of {', '.join(GROUPINGS)}, comma-separated (e.g. day,project)",
            param_hint="'--by'",
        )
    return by


@click.command()
@click.option("-s", "--since", default="today", show_default=True, help=f"From: {_WHEN_HELP}.")
@click.option(
    "-u", "--until", default=None, help="To (not included) [default: the end of --since's period, or now]."
)
@click.option(
    "--by",
    "by_text",
    default="project",
    show_default=True,
    help="Group by one or two of project, tag, scope, tool, host, day, week, month (e.g. day,project).",
)
@click.option("--project", help="Only this project's sessions.")
@click.option(
    "--tag", "tags", multiple=True, help="Only sessions with this tag (repeatable: with every one)."
)
@click.option("--tool", help="Only sessions of this tool (nvim, claude-code, cli, ...).")
@click.option("--scope", type=SCOPE, default=None, help="Only this scope's sessions [default: every scope].")
@click.option("--csv", "as_csv", is_flag=True, help="CSV: a row per group, a header row.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write one self-contained page (charts, timeline, table) to this file.",
)
@hosts_option
@json_option
@click.pass_obj
def report(  # noqa: PLR0917 -- click passes the options by name
    agent: Agent,
    hosts: str | None,
    since: str,
    until: str | None,
    by_text: str,
    project: str | None,
    tags: tuple[str, ...],
    tool: str | None,
    scope: str | None,
    as_csv: bool,
    html_file: Path | None,
    as_json: bool,
) -> None:
    """Where the time went: wall and active time per group, over a range.

    Each session's time is clipped to the range and split at local
    midnights (a session across midnight counts on both days); sessions
    still running count up to now. Active time is the time with signs of
    life (heartbeats), each gap counted up to the activity gap.

    \b
    Examples:
      session-agent report                          today, by project
      session-agent report --since yesterday        all of yesterday
      session-agent report --since this-week --by day,project
      session-agent report --since 30d --by tag --tool claude-code
      session-agent report --since last-month --csv > month.csv
      session-agent report --since this-month --html month.html
      session-agent report --since 7d --all-hosts   every machine, per host and in total
    """
    from agent.config import load_settings
    from agent.details import SessionFilter
    from agent.periods import Calendar, local_zone, locale_first_weekday
    from agent.report import ReportQuery

    if as_csv and as_json:
        raise click.UsageError("give --csv or --json, not both")
    by = _groupings(by_text)
    zone_name, zone = local_zone()
    week_start = load_settings(agent.paths.data_dir).week_start if agent.paths.data_dir.is_dir() else None
    calendar = Calendar(zone, locale_first_weekday() if week_start is None else week_start)
    now = datetime.now(UTC)
    start, end = resolve_range(since, until, now, calendar)
    query = ReportQuery(
        start,
        end,
        by,
        where=SessionFilter(project, frozenset(tags), tool),
        scope=scope,
        zone=zone_name,
        first_weekday=calendar.first_weekday,
        timeline=html_file is not None,
        hosts=hosts,
    )
    errors: list[str] = []

    def ask(backend: Backend) -> dict[str, object]:
        return backend.report(query, errors)

    built = agent.read(ask)
    for error in errors:
        note(f"warning: skipped: {error}")
    if html_file is not None:
        _write_page(built, html_file, calendar)
        built.pop("timeline", None)
    if as_json:
        echo_json(built)
        return
    from agent.report_text import report_csv, report_table

    if as_csv:
        click.echo(report_csv(built), nl=False)
    else:
        click.echo(report_table(built, color=_color()))


def _write_page(built: dict[str, object], target: Path, calendar: Calendar) -> None:
    """The HTML page, written whole or not at all."""
    from agent.report_html import report_html

    since = datetime.fromisoformat(str(built["since"])).astimezone(calendar.zone)
    until = datetime.fromisoformat(str(built["until"])).astimezone(calendar.zone)
    title = f"{since:%a %Y-%m-%d %H:%M} → {until:%a %Y-%m-%d %H:%M} ({built['zone']})"
    write_whole(target, [report_html(built, title)])
    note(f"wrote {target}")


def _color() -> bool:
    """Colour only on a terminal, and never under ``NO_COLOR``."""
    import os
    import sys

    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


REPORT_COMMANDS = (report,)

"""``sync``: sessions from several machines through a synced folder
(``agent.sync_service``). ``agent.cli`` adds the group."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from agent.cli_support import Agent, echo_json, exit_with, json_option
from agent.output import note

__all__ = ["SYNC_COMMANDS"]


@click.group()
def sync() -> None:
    """Share history with other machines through a synced folder.

    Set it up in config.toml (see docs/several-machines.md):

    \b
      [sync]
      dir = "~/Sync/session-agent"
      host = "laptop"
    """


@sync.command("status")
@json_option
@click.pass_obj
def sync_status(agent: Agent, as_json: bool) -> None:
    """Show this machine's shipping and each other host: its newest
    segment, how far behind it is, what was passed over in its folder.

    Exits 1 when no sync dir is set.
    """
    from agent.render import sync_text

    report = agent.read(lambda backend: backend.status())
    found = report.get("sync")
    if as_json:
        echo_json(found)
    elif found:
        click.echo(sync_text(found, datetime.now(UTC)))
    if not found:
        if not as_json:
            note("sync is off: set [sync] dir in config.toml (see docs/several-machines.md)")
        exit_with(1)


SYNC_COMMANDS = (sync,)

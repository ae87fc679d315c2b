"""The commands that change what a session was, never when it was: ``tag``,
``set`` and ``count``. ``agent.cli`` adds them to its group."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from agent.cli_support import Agent, exit_with, json_option, scope_option
from agent.output import NO_ACTIVE_SESSION, note, show_result

if TYPE_CHECKING:
    from agent.details import DetailsChange
    from agent.session import Session

__all__ = ["DETAIL_COMMANDS"]

_WORDS = {"ignore_unknown_options": True}  # `-name` is a tag to remove, not an option


def _split_id(words: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """A leading session id, if the first word is one; the rest."""
    from agent.session_id import parse_session_id

    if words:
        try:
            return parse_session_id(words[0]), list(words[1:])
        except ValueError:
            pass
    return None, list(words)


def _changed(agent: Agent, session_id: str | None, scope: str, as_json: bool, change: DetailsChange) -> None:
    _show_changed(agent.backend().update(session_id, change, scope), as_json)


def _show_changed(session: Session | None, as_json: bool) -> None:
    """The changed session's id (JSON: the session); exit 1 when there was none."""
    if session is None:
        if as_json:
            show_result("current", None, as_json=True)
        else:
            note(NO_ACTIVE_SESSION)
        exit_with(1)
    if as_json:
        show_result("start", session.to_dict(), as_json=True)
    else:
        click.echo(session.id)


@click.command(context_settings=_WORDS)
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="[ID] [+TAG | -TAG]...")
@scope_option
@json_option
@click.pass_obj
def tag(agent: Agent, words: tuple[str, ...], scope: str, as_json: bool) -> None:
    """Add (+TAG, or TAG) and remove (-TAG) tags of session ID, or of the
    scope's current session; print its id. Exits 1 if none is active.

    \b
    Examples:
      session-agent tag +review -wip
      session-agent tag 01a2... +billed
    """
    from agent.details import DetailsChange

    session_id, names = _split_id(words)
    if not names:
        raise click.UsageError("give at least one +TAG or -TAG")
    add = [n[1:] if n.startswith("+") else n for n in names if not n.startswith("-")]
    remove = [n[1:] for n in names if n.startswith("-")]
    _changed(agent, session_id, scope, as_json, DetailsChange(add_tags=add, remove_tags=remove))


@click.command("set", context_settings=_WORDS)
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="[ID] KEY=VALUE...")
@scope_option
@json_option
@click.pass_obj
def set_(agent: Agent, words: tuple[str, ...], scope: str, as_json: bool) -> None:
    """Set what session ID (or the scope's current session) was: project=,
    title=, tool=, external_id=, parent=, cwd=, label.KEY= (an empty value
    clears it). Its times, status and end reason never change.

    \b
    Examples:
      session-agent set project=engine title="the parser's errors"
      session-agent set 01a2... label.ticket=ENG-42
    """
    from agent.details import DetailsChange

    session_id, pairs = _split_id(words)
    if not pairs:
        raise click.UsageError("give at least one KEY=VALUE")
    texts: dict[str, str | None] = {}
    labels: dict[str, str | None] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise click.UsageError(f"{pair!r} is not KEY=VALUE")
        if key.startswith("label.") and len(key) > len("label."):
            labels[key[len("label.") :]] = value or None
        else:
            texts[key] = value or None
    _changed(agent, session_id, scope, as_json, DetailsChange(texts, labels=labels))


@click.command()
@click.argument("words", nargs=-1, metavar="[ID] [N]")
@scope_option
@json_option
@click.pass_obj
def count(agent: Agent, words: tuple[str, ...], scope: str, as_json: bool) -> None:
    """Count N memories (default 1) on session ID, or the scope's current
    session, or its session that ended less than ten minutes ago (captures
    arrive late); print its id. Each count is durable. Exits 1 if there is
    no such session.
    """
    session_id, rest = _split_id(words)
    if len(rest) > 1 or (rest and not rest[0].isdigit()):
        raise click.UsageError("count takes [ID] [N], N a whole number")
    n = int(rest[0]) if rest else 1
    _show_changed(agent.backend().count(session_id, n, scope), as_json)


DETAIL_COMMANDS = (tag, set_, count)

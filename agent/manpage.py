"""The man page, written from the command line's own help.

``setup.py`` calls ``render`` when the wheel is built, so the page a user
reads with ``man session-agent`` says what ``--help`` says, word for word:
both come from the click commands' docstrings and option help.
"""

from __future__ import annotations

import click

__all__ = ["render"]

_SEE_ALSO = "systemd.service(5), systemctl(1)"


def render(cli: click.Group, name: str, version: str, date: str) -> str:
    """The page, in roff (``man -l`` shows it)."""
    ctx = click.Context(cli, info_name=name, **cli.context_settings)  # as click makes it: -h too
    lines = [
        f'.TH {_upper(name)} 1 "{date}" "{name} {version}" "User Commands"',
        ".SH NAME",
        f"{_escape(name)} \\- {_escape(cli.get_short_help_str(200))}",
        ".SH SYNOPSIS",
        f".B {_escape(name)}",
        _escape(" ".join(cli.collect_usage_pieces(ctx))),
        ".SH DESCRIPTION",
        *_text(cli.help or ""),
        ".SH OPTIONS",
        *_options(cli, ctx),
        ".SH COMMANDS",
    ]
    for command_name, command in _commands(cli, ctx):
        lines += _command(command, click.Context(command, info_name=command_name, parent=ctx))
    lines += [".SH SEE ALSO", _escape(_SEE_ALSO), ""]
    return "\n".join(lines)


def _commands(group: click.Group, ctx: click.Context) -> list[tuple[str, click.Command]]:
    """Every visible command, subcommands of groups included, in order."""
    found: list[tuple[str, click.Command]] = []
    for sub in group.list_commands(ctx):
        command = group.get_command(ctx, sub)
        if command is None or command.hidden:
            continue
        found.append((sub, command))
        if isinstance(command, click.Group):
            inner = click.Context(command, info_name=sub, parent=ctx)
            found += [(f"{sub} {n}", c) for n, c in _commands(command, inner)]
    return found


def _command(command: click.Command, ctx: click.Context) -> list[str]:
    path = ctx.command_path
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f'.SS "{_escape(path)}"', f".B {_escape(path)}", _escape(usage), ".PP"]
    lines += _text(command.help or command.short_help or "")
    options = _options(command, ctx)
    if options:
        lines += [".PP", "Options:", *options]
    return lines


def _options(command: click.Command, ctx: click.Context) -> list[str]:
    lines = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", f"\\fB{_escape(names)}\\fR", _escape(help_text)]
    return lines


def _text(help_text: str) -> list[str]:
    """Paragraphs as paragraphs; click's ``\\b`` blocks (examples) verbatim."""
    lines: list[str] = []
    for block in _paragraphs(help_text):
        if block and block[0].strip() == "\b":
            lines += [".PP", ".nf", *(_escape(line.rstrip()) for line in block[1:]), ".fi"]
        else:
            lines += [".PP", _escape(" ".join(line.strip() for line in block))]
    return lines


def _paragraphs(text: str) -> list[list[str]]:
    import inspect

    blocks: list[list[str]] = [[]]
    for line in inspect.cleandoc(text).splitlines():
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


def _escape(text: str) -> str:
    """Roff: backslashes doubled, hyphens as minus signs (so they can be
    searched and copied), no line starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _upper(name: str) -> str:
    return name.upper().replace("-", "\\-")

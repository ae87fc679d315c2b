"""Builds the man page from the command line's own help (``agent.manpage``)
into the wheel as ``share/man/man1/session-agent.1``; everything else is in
pyproject.toml."""

import os
import sys
import time
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
MAN_PAGE = Path("build", "man", "session-agent.1")


def write_man_page() -> str:
    """Render the page into build/ and return its path, relative as
    setuptools wants data files."""
    sys.path.insert(0, str(HERE))
    from agent import __version__
    from agent.cli import cli
    from agent.manpage import render

    # SOURCE_DATE_EPOCH, where set, keeps the build reproducible.
    stamp = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time())))
    target = HERE / MAN_PAGE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(cli, "session-agent", __version__, time.strftime("%Y-%m-%d", stamp)))
    return str(MAN_PAGE)


setup(data_files=[("share/man/man1", [write_man_page()])])

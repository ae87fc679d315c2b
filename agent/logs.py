"""Logging to stderr, one line per event.

The daemon logs every event at INFO with a timestamp, except when stderr is
the journal, which stamps lines itself and reads a ``<N>`` syslog priority
prefix instead. The CLI shows only warnings and errors, prefixed with the
program's name, unless ``--debug``.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_cli_logging", "configure_daemon_logging"]

_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITIES.get(record.levelno, 6)}>{super().format(record)}"


def _install(formatter: logging.Formatter, level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger("agent")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def configure_cli_logging(debug: bool) -> None:
    _install(logging.Formatter("session-agent: %(message)s"), logging.DEBUG if debug else logging.WARNING)


def configure_daemon_logging(debug: bool, *, journal: bool) -> None:
    if journal:
        formatter: logging.Formatter = _JournalFormatter("%(message)s")
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(message)s")
    _install(formatter, logging.DEBUG if debug else logging.INFO)

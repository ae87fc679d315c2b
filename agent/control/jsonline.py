"""JSON for the control protocol, without the cost of importing ``json``.

``import json`` costs the command line about 8 ms (it pulls in ``re`` and
``enum``), as much as the rest of a ``session-agent current`` through the
daemon. The work itself is done in C by CPython's ``_json`` accelerator,
which ``json`` wraps: this module drives the same encoder and scanner
directly, with ``json``'s defaults (``ensure_ascii=False``, compact
separators, circular references and NaN handled as ``json.dumps`` does), so
the text on the wire is byte for byte what ``json`` would write and read.
Where ``_json`` is missing or differs (another Python implementation), it
falls back to ``json`` itself.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs the CLI's fast path milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["dumps", "loads"]

_WHITESPACE = " \t\n\r"


def _not_serializable(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class _ScanContext:
    """What ``_json.make_scanner`` reads off a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return float({"-Infinity": "-inf", "Infinity": "inf", "NaN": "nan"}[name])

    memo: dict[str, str] = {}  # noqa: RUF012 -- read by the C scanner of some versions


def _accelerated() -> tuple[Callable[[Any, bool], str], Callable[[str], Any]] | None:
    try:
        import _json

        compact, spaced = (
            _json.make_encoder(
                {}, _not_serializable, _json.encode_basestring, None, key_sep, item_sep, False, False, True
            )
            for key_sep, item_sep in ((":", ","), (": ", ", "))
        )
        scanner = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]  # duck-typed as JSONDecoder
    except (ImportError, AttributeError, TypeError):
        return None

    def dumps(value: Any, spaced_out: bool = False) -> str:
        return "".join((spaced if spaced_out else compact)(value, 0))

    def loads(text: str) -> Any:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = scanner(text, start)
        except StopIteration as stop:
            raise ValueError(f"Expecting value: char {stop.value}") from None
        if text[end:].strip(_WHITESPACE):
            raise ValueError(f"Extra data: char {end}")
        return value

    return dumps, loads


def _plain() -> tuple[Callable[[Any, bool], str], Callable[[str], Any]]:
    import json

    def dumps(value: Any, spaced_out: bool = False) -> str:
        separators = (", ", ": ") if spaced_out else (",", ":")
        return json.dumps(value, ensure_ascii=False, separators=separators)

    return dumps, json.loads


_dumps, _loads = _accelerated() or _plain()


def dumps(value: Any, *, spaced_out: bool = False) -> str:
    """``json.dumps(value, ensure_ascii=False)``: compact (the wire), or
    ``spaced_out`` with ``json``'s default separators (what people read)."""
    return _dumps(value, spaced_out)


def loads(text: str) -> Any:
    """``json.loads(text)``; a ``ValueError`` says what is wrong."""
    return _loads(text)

"""Session ids: UUIDv7 (RFC 9562), whose text sorts by creation time.

Keys of the store are these ids, so the newest sessions are at the end and
a listing since a moment starts at that moment's floor. Parsing accepts any
spelling ``uuid.UUID`` does and gives the canonical text; anything else is
an ``InvalidSessionIdError`` before it can become a key.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta

from agent.errors import InvalidSessionIdError

__all__ = ["canonical_uuid", "derived_session_id", "new_session_id", "parse_session_id", "session_id_floor"]

# A canonical UUID is 36 characters; "urn:uuid:" plus braces is the longest
# spelling accepted. Anything longer is rejected before parsing.
_MAX_ID_INPUT = 47
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_CANONICAL_DIGITS = frozenset("0123456789abcdef")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)

_id_lock = threading.Lock()
_last_id_state = (0, 0)  # (unix ms, 74 random bits) of the last id made here


def new_session_id(at: datetime | None = None) -> str:
    """A UUIDv7 (RFC 9562): its text sorts by creation time.

    Ids made in this process are strictly increasing even within one
    millisecond or when the clock steps back, so key order is start order.
    """
    global _last_id_state
    millis = ((at or datetime.now(UTC)) - _EPOCH) // _MILLISECOND
    with _id_lock:
        last_millis, last_rand = _last_id_state
        if millis <= last_millis:
            millis, rand = last_millis, last_rand + 1 + _random_bits(16)
            if rand >= 1 << 74:
                millis, rand = last_millis + 1, _random_bits(74)
        else:
            rand = _random_bits(74)
        _last_id_state = (millis, rand)
    rand_a, rand_b = rand >> 62, rand & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return _uuid_text(value)


def derived_session_id(at: datetime, identity: bytes) -> str:
    """A UUIDv7 of ``at``'s millisecond whose other bits come from a hash of
    ``identity``: the same source (an imported record) always gives the same
    id, which still sorts by start time."""
    import hashlib

    millis = max(0, (at - _EPOCH) // _MILLISECOND)
    rand = int.from_bytes(hashlib.sha256(identity).digest()[:10], "big") >> 6  # 74 bits
    rand_a, rand_b = rand >> 62, rand & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return _uuid_text(value)


def _random_bits(bits: int) -> int:
    """From the OS's CSPRNG, like ``secrets``, without importing it (and
    ``hashlib`` with it) on the CLI's path."""
    return int.from_bytes(os.urandom((bits + 7) // 8), "big") >> (-bits % 8)


def _uuid_text(value: int) -> str:
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def canonical_uuid(text: str) -> str | None:
    """The canonical form of a UUID spelling (hyphens anywhere or none,
    braces, ``urn:uuid:``, any case), or ``None``. Stricter than
    ``uuid.UUID``, which also lets ``int()`` accept signs and underscores;
    and ``uuid`` costs milliseconds to import on the CLI's path."""
    if (  # the spelling of every stored id: nothing to do (and no `re` on the CLI's path)
        len(text) == 36
        and text[8] == text[13] == text[18] == text[23] == "-"
        and _CANONICAL_DIGITS.issuperset(text.replace("-", ""))
    ):
        return text
    digits = text.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
    if len(digits) != 32 or not _HEX_DIGITS.issuperset(digits):
        return None
    return _uuid_text(int(digits, 16))


def session_id_floor(moment: datetime) -> str:
    """The smallest UUIDv7 text of ``moment``'s millisecond, for range scans."""
    millis = max(0, (moment - _EPOCH) // _MILLISECOND)
    return _uuid_text((millis << 80) | (0x7 << 76))


def parse_session_id(raw: str) -> str:
    """Validate an id from outside and return its canonical lower-case form.

    The usual UUID spellings are taken (see ``_canonical_uuid``); nothing
    else is, so no outside string becomes a store key or a path without
    passing here.
    """
    if not raw or not raw.strip():
        raise InvalidSessionIdError(raw, "it is empty")
    if len(raw) > _MAX_ID_INPUT:
        raise InvalidSessionIdError(raw, f"it is {len(raw)} characters long")
    canonical = canonical_uuid(raw.strip())
    if canonical is None:
        raise InvalidSessionIdError(raw, "it is not a UUID")
    return canonical

"""Varints and length-prefixed strings: the bytes of a record's variable part."""

from __future__ import annotations

__all__ = ["Reader", "write_str", "write_varint"]


def write_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("a varint is not negative")
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return
        out.append(byte | 0x80)


def write_str(out: bytearray, text: str) -> None:
    data = text.encode("utf-8")
    write_varint(out, len(data))
    out += data


class Reader:
    """Reads what ``write_varint``/``write_str`` wrote; ``ValueError`` past the end."""

    def __init__(self, raw: bytes, position: int = 0, end: int | None = None) -> None:
        self.raw = raw
        self.position = position
        self.end = len(raw) if end is None else end

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self.position >= self.end or shift > 63:
                raise ValueError("a truncated number")
            byte = self.raw[self.position]
            self.position += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def take(self, size: int) -> bytes:
        if size > self.end - self.position:
            raise ValueError("a truncated field")
        data = self.raw[self.position : self.position + size]
        self.position += size
        return data

    def str(self) -> str:
        return self.take(self.varint()).decode("utf-8")

    @property
    def done(self) -> bool:
        return self.position >= self.end

"""``Value``: the base of the small immutable records (sessions, file
observations, stamps, paths).

It gives what a frozen dataclass would -- equality and hashing by fields, a
readable ``repr``, no assignment after construction -- without importing
``dataclasses``, which costs every CLI command milliseconds (it pulls in
``inspect``).
"""

from __future__ import annotations

__all__ = ["Value"]


class Value:
    """Subclasses list their fields in ``__slots__`` and set them in
    ``__init__`` with ``self._set(...)``."""

    __slots__: tuple[str, ...] = ()

    def _set(self, **fields: object) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled field by field (a worker process hands values back)."""
        return (_rebuild, (type(self), dict(zip(self.__slots__, self._values(), strict=True))))


def _rebuild(cls: type[Value], fields: dict[str, object]) -> Value:
    value = object.__new__(cls)
    value._set(**fields)
    return value

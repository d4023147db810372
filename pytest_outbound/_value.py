"""``Value``: the base of this package's small immutable classes."""

from __future__ import annotations

import operator
from typing import Any, ClassVar


class Value:
    """Equal, hashed and shown by the attributes a subclass names, as a dataclass would be.

    The package's classes made at import are written out this way rather than with
    ``@dataclass``, which on Python 3.11 compiles each generated method with its own ``exec``:
    about 0.4 ms of every pytest start-up per class. A subclass declares ``__slots__``, sets its
    attributes in ``__init__`` (annotated ``Final``: mypy checks that nothing changes them), and
    names them in ``_fields`` (shown by ``repr``, in that order) and, when not all of them,
    ``_compared`` (compared and hashed).
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _compared: ClassVar[tuple[str, ...] | None] = None
    #: Reads the compared attributes' values (made once per class, in C).
    _key: ClassVar[operator.attrgetter[object]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._key = operator.attrgetter(*(cls._fields if cls._compared is None else cls._compared))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        key = self._key
        return bool(key(self) == key(other))

    def __hash__(self) -> int:
        return hash(self._key(self))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"

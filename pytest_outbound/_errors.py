"""The exceptions pytest-outbound raises; all survive pickling (pytest-xdist)."""

from __future__ import annotations

from typing import Any


class OutboundError(Exception):
    """Base class of every error pytest-outbound raises."""


class PolicyError(OutboundError):
    """A policy (TOML file, conftest hook, marker or option) is malformed.

    ``source`` names where it came from (``outbound.toml:12`` or ``conftest.py``);
    the plugin turns this into a one-line ``pytest.UsageError``. ``key`` is the policy key
    at fault (``schemes``, ``payload.match.version``), when one is: the TOML loader points
    ``source`` at that key's line.
    """

    def __init__(self, message: str, source: str = "", key: str = "") -> None:
        super().__init__(message, source)
        self.message = message
        self.source = source
        self.key = key

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.source, self.key))


class OutboundBlocked(OutboundError):
    """A request that the policy does not admit was blocked before it left.

    Raised at the call site in ``enforce`` mode. ``message`` is the whole
    human-readable explanation; ``url``, ``client`` and ``reasons`` are kept for
    code that wants to inspect it.
    """

    def __init__(
        self, message: str, url: str = "", client: str = "", reasons: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.client = client
        self.reasons = tuple(reasons)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.url, self.client, self.reasons))


# Shown to users as pytest_outbound.X (the public names), not the private module.
for _cls in (OutboundError, PolicyError, OutboundBlocked):
    _cls.__module__ = "pytest_outbound"

"""The hooks pytest-outbound offers to conftest files and plugins (SPEC §7).

Each hookspec is an empty function whose docstring is its documentation; the plugin adds them in
``pytest_addhooks``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_outbound._policy import Destination
    from pytest_outbound._record import OutboundRequest


def pytest_outbound_destinations(config: pytest.Config) -> Iterable[Destination]:
    """Return the destinations documented by this conftest (or plugin).

    Directory-scoped like fixtures: a conftest's destinations apply to the tests in its
    directory and below. Results of every applicable conftest are merged with the policy files;
    a destination name may be defined only once.

    .. code-block:: python

        from pytest_outbound import Destination

        def pytest_outbound_destinations(config):
            return [Destination(name="nuget", hosts=["*.nuget.org"], schemes=["https"])]
    """
    raise NotImplementedError  # a specification: implementations live in conftest files


def pytest_outbound_sensitive_values(config: pytest.Config) -> Mapping[str, Iterable[str]]:
    """Return values that must never leave the machine, by kind.

    For example ``{"customer-id": ["ACME-7731"]}``; a request carrying one is a violation with
    reason ``sensitive:customer-id``. Merged with the machine's own values and the ini option
    ``outbound_sensitive``.
    """
    raise NotImplementedError  # a specification: implementations live in conftest files


def pytest_outbound_request(request: OutboundRequest) -> None:
    """Called for every observed outbound request, after its verdict is known."""


def pytest_outbound_violation(request: OutboundRequest) -> None:
    """Called for every request that violates the policy (before it is blocked in enforce)."""

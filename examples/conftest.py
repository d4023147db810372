"""Shared fixtures of the example suite (tests/) and the leaky variant (leaky/)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from deployserver import Package, Server, ServerSettings

_LOCAL = {None, "localhost", "127.0.0.1", "::1"}


@pytest.fixture(autouse=True)
def _no_real_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: a request the policy allows still must not reach a real host.

    pytest-outbound blocks what is undocumented; this refuses DNS and connections for what a
    test forgot to answer with ``outbound.stub`` or a responses/respx mock.
    """
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in _LOCAL or (isinstance(host, bytes) and host.decode() in _LOCAL):
            return real_getaddrinfo(host, *args, **kwargs)
        raise socket.gaierror(f"examples never resolve {host!r}: stub or mock this request")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    """A fresh installation with the seed page's defaults."""
    return ServerSettings(home=tmp_path / "octopus")


@pytest.fixture
def server(settings: ServerSettings) -> Server:
    return Server(settings)


@pytest.fixture
def package() -> Package:
    return Package("Acme.Web", "1.2.0", b"PK\x03\x04 a nupkg is a zip")

"""Shared fixtures of the example suite (tests/) and the leaky variant (leaky/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployserver import Package, Server, ServerSettings


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

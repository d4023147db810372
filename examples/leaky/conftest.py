"""The leaky variant runs as if on ``build-agent-07.acme.internal``.

pytest-outbound looks for this machine's hostname in every request, but skips names too short or
too common to prove anything (a container is often just ``vm`` or ``runner``). So the leak is
made with a recognisable name, and that name is declared sensitive through the plugin's hook.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping

import pytest

HOSTNAME = "build-agent-07.acme.internal"


@pytest.fixture(autouse=True)
def _recognisable_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: HOSTNAME)


def pytest_outbound_sensitive_values(config: pytest.Config) -> Mapping[str, Iterable[str]]:
    return {"hostname": [HOSTNAME]}

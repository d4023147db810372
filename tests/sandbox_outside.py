"""The sandbox tests' outside: a loopback server that stands for the world, reached through the
test mapping (``PYTEST_OUTBOUND_SANDBOX_OUTSIDE``), which is then all that exists outside.
A plugin of the sandbox test modules (their ``pytest_plugins``), with the fixtures ``sandbox``
(skips where the sandbox cannot be made) and ``outside``."""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from pytest_outbound._sandbox._gateway import OUTSIDE_ENV
from pytest_outbound._sandbox._namespace import SandboxUnavailable, launch


@functools.cache
def _unavailable() -> str | None:
    """Why the sandbox cannot be made here (None: it can): tried once, with ``true``."""
    try:
        started = launch(["true"], dict(os.environ), [])
    except SandboxUnavailable as exc:
        return str(exc)
    started.process.wait()
    started.close_sockets()
    for fd in started.tables.values():
        os.close(fd)
    return None


@pytest.fixture
def sandbox() -> None:
    reason = _unavailable()
    if reason is not None:
        pytest.skip(f"no sandbox on this machine: {reason}")


@dataclass
class OutsideServer:
    """The loopback server that stands for the outside world."""

    port: int
    seen: list[tuple[str, str, bytes]] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, body))  # type: ignore[attr-defined]
        data = f"hello from outside {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def outside(sandbox: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[OutsideServer]:
    """The outside: ``docs.example.test`` is this loopback server (and nothing else exists)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    found = OutsideServer(server.server_address[1])
    server.seen = found.seen  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(OUTSIDE_ENV, json.dumps({"docs.example.test": f"127.0.0.1:{found.port}"}))
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()

"""Shared test helpers: a loopback HTTP server that pytester-made test files can import, and
the fixture that fails any test whose code (or whose in-process inner pytest run) reaches for
the real network."""

from __future__ import annotations

import pytest

# The guard against the real network (installed on import, beneath any session a test starts),
# its fixture that fails a test which reached out, and its end-of-session check.
from no_network import _no_real_network, pytest_sessionfinish  # noqa: F401

# A tiny loopback server for inner (pytester) test runs. It answers every GET with 200 and the
# path, except /redirect?to=URL which answers 302 to URL. Loopback only: nothing leaves.
LOOPBACK_SERVER = """
import http.server
import threading
import contextlib
from urllib.parse import parse_qs, urlsplit


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        parts = urlsplit(self.path)
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = parts.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
"""


@pytest.fixture
def loopback(pytester: pytest.Pytester) -> None:
    """Make ``from loopback import serve`` work in the pytester test files."""
    pytester.makepyfile(loopback=LOOPBACK_SERVER)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "machine_probe: this test's inner pytest runs keep the plugin's machine probe, which"
        " asks the resolver for this machine's own name (the tests of sensitive machine values)",
    )


@pytest.fixture(autouse=True)
def _inner_run_options(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Options for every inner (pytester) run.

    pytest-asyncio (installed for the coexistence tests) warns in every inner run whose ini
    leaves its loop scope unset; set it, as its users do, so the warning cannot mask ours.

    The plugin's start-up probe of this machine's values asks the resolver for the machine's
    own name: a DNS query wherever the hosts file lacks it. Inner runs skip it
    (``outbound_sensitive_machine = false``) unless the test is marked ``machine_probe``."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS when it starts
        options = ["-o asyncio_default_fixture_loop_scope=function"]
        if request.node.get_closest_marker("machine_probe") is None:
            options.append("-o outbound_sensitive_machine=false")
        monkeypatch.setenv("PYTEST_ADDOPTS", " ".join(options))

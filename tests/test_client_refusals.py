"""What a client refuses on its own gets the client's own exception, in every mode (issue 22).

A URL with no scheme, another scheme or no host, and an object the client does not send (an
unprepared ``requests.Request``): nothing of it can leave, so there is nothing to judge or to
block. Each case runs without the plugin, in audit, and in enforce with no policy: the same
exception every time, and no record. The network namespace of the test run makes sure nothing
could have left anyway.

And a failure of the plugin's own judging code is the plugin's: in audit the request goes on
and the summary and the report say so; in enforce it is blocked (what cannot be judged is not
let through).
"""

from __future__ import annotations

import json

import pytest

#: case -> (the call, the exception the client raises itself)
REFUSED = {
    "httpx-relative-url": ("httpx.get('/status')", "httpx.UnsupportedProtocol"),
    "httpx-no-scheme": ("httpx.get('example.com/status')", "httpx.UnsupportedProtocol"),
    "httpx-ftp": ("httpx.get('ftp://example.com/')", "httpx.UnsupportedProtocol"),
    "httpx-no-host": ("httpx.get('http:///status')", "httpx.UnsupportedProtocol"),
    "httpx-async-no-host": (
        "asyncio.run(httpx.AsyncClient().get('https:///status'))",
        "httpx.UnsupportedProtocol",
    ),
    "requests-ftp": ("requests.get('ftp://example.com/')", "requests.exceptions.InvalidSchema"),
    "requests-unprepared": (
        "requests.Session().send(requests.Request('GET', 'https://example.com/'))",
        "ValueError",
    ),
    "requests-no-host": ("requests.get('http:///status')", "requests.exceptions.InvalidURL"),
    "urllib3-ftp": (
        "urllib3.request('GET', 'ftp://example.com/')",
        "urllib3.exceptions.URLSchemeUnknown",
    ),
}

RUNS = {
    "without the plugin": ("-p", "no:outbound"),
    "audit": ("-o", "outbound_mode=audit"),
    "enforce": ("-o", "outbound_mode=enforce"),
}


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_client_refuses_it_itself(pytester: pytest.Pytester, case: str, run: str) -> None:
    call, error = REFUSED[case]
    pytester.makepyfile(
        f"""
        import asyncio, httpx, pytest, requests, urllib3

        def test_refused(request):
            with pytest.raises({error}):
                {call}
            if request.config.pluginmanager.has_plugin("outbound"):
                assert request.getfixturevalue("outbound").requests == []
        """
    )
    result = pytester.runpytest("-p", "no:randomly", *RUNS[run])
    result.assert_outcomes(passed=1)


REDIRECT_TO_NO_HOST = """
import http.server, threading
import pytest, requests

class Redirect(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", self.path[1:])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

@pytest.mark.parametrize("location", ["http://:1", "http://example.com:99999/", "http://[::1/"])
def test_redirect_to_no_host(request, location):
    server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(requests.exceptions.InvalidURL):
            requests.get(f"http://127.0.0.1:{server.server_port}/{location}")
    finally:
        server.shutdown()
    if request.config.pluginmanager.has_plugin("outbound"):
        assert request.getfixturevalue("outbound").requests == []
"""


@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_redirect_to_a_url_without_host_gets_requests_own_error(
    pytester: pytest.Pytester, run: str
) -> None:
    """requests' own suite (``test_redirecting_to_bad_url``): a redirect hop is not prepared
    again, so a ``Location`` with no host (``http://:1``), a port out of range or a broken
    IPv6 literal reaches ``Session.send``, and requests' adapter refuses it (``InvalidURL``)
    before it connects."""
    pytester.makepyfile(REDIRECT_TO_NO_HOST)
    result = pytester.runpytest("-p", "no:randomly", *RUNS[run])
    result.assert_outcomes(passed=3)


LOCAL_PORT_OUT_OF_RANGE = """
import httpx, pytest

def test_local_port_out_of_range(request):
    # httpx's own suite (test_httpcore_exception_mapping): the C resolver takes the port
    # modulo 65536, so this connects to a closed port of this machine
    with pytest.raises(httpx.ConnectError):
        httpx.get("http://127.0.0.1:123456/")
    if request.config.pluginmanager.has_plugin("outbound"):
        assert request.getfixturevalue("outbound").requests == []
"""


@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_local_host_with_a_port_out_of_range_is_local(
    pytester: pytest.Pytester, run: str
) -> None:
    """Clients disagree on a port out of range (R9), never on the host: on a local host the
    request is local traffic, neither recorded nor blocked (``outbound_local = allow``)."""
    pytester.makepyfile(LOCAL_PORT_OUT_OF_RANGE)
    result = pytester.runpytest("-p", "no:randomly", *RUNS[run])
    result.assert_outcomes(passed=1)


def test_with_loopback_judged_a_port_out_of_range_stays_ambiguous(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(LOCAL_PORT_OUT_OF_RANGE)
    result = pytester.runpytest(
        "-p", "no:randomly", "-o", "outbound_mode=enforce", "-o", "outbound_local=enforce"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ambiguous or invalid host: the port 123456*"])


LOCAL_NAME_WITH_TRAILING_DOTS = """
import asyncio, socket
import aiohttp
from aiohttp.abc import AbstractResolver


class StubResolver(AbstractResolver):
    # aiohttp's own suite (test_tcp_connector_do_not_raise_connector_ssl_error): the system
    # resolver refuses "localhost...", a stub answers it
    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


def test_localhost_with_trailing_dots(request):
    async def main():
        async def handle(reader, writer):
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            connector = aiohttp.TCPConnector(resolver=StubResolver())
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(f"http://localhost...:{port}/") as resp:
                    return await resp.text()
        finally:
            server.close()

    assert asyncio.run(main()) == "ok"
    if request.config.pluginmanager.has_plugin("outbound"):
        assert request.getfixturevalue("outbound").requests == []
"""


@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_local_name_with_trailing_dots_is_local(pytester: pytest.Pytester, run: str) -> None:
    """``localhost...`` has empty labels (R4): resolvers refuse it, a stub may answer it, and
    no answer reaches another machine: local traffic."""
    pytester.makepyfile(LOCAL_NAME_WITH_TRAILING_DOTS)
    result = pytester.runpytest("-p", "no:randomly", *RUNS[run])
    result.assert_outcomes(passed=1)


HTTPX_OVER_A_UNIX_SOCKET = """
import asyncio, os, socket, tempfile, threading
import httpx


def serve_once(path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()

    def answer():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()


def test_sync(request):
    path = os.path.join(tempfile.mkdtemp(), "api.sock")
    serve_once(path)
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        assert client.get("http://docker/v1.45/containers/json").text == "ok"
    if request.config.pluginmanager.has_plugin("outbound"):
        assert request.getfixturevalue("outbound").requests == []


def test_async(request):
    path = os.path.join(tempfile.mkdtemp(), "api.sock")
    serve_once(path)

    async def main():
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=path)) as client:
            return (await client.get("http://docker/v1.45/containers/json")).text

    assert asyncio.run(main()) == "ok"
    if request.config.pluginmanager.has_plugin("outbound"):
        assert request.getfixturevalue("outbound").requests == []
"""


@pytest.mark.parametrize("run", sorted(RUNS))
def test_httpx_over_a_unix_socket_is_local_whatever_host_its_url_names(
    pytester: pytest.Pytester, run: str
) -> None:
    """``HTTPTransport(uds=...)`` connects to a socket of this machine (Docker's API is the
    common case): like aiohttp's ``UnixConnector``, local traffic, neither recorded nor
    blocked."""
    pytester.makepyfile(HTTPX_OVER_A_UNIX_SOCKET)
    result = pytester.runpytest("-p", "no:randomly", *RUNS[run])
    result.assert_outcomes(passed=2)


INTERNAL_FAILURE = """
import pytest
import pytest_outbound._interceptors as interceptors


@pytest.fixture(autouse=True)
def broken_plugin(monkeypatch):
    def build_request(*args, **kwargs):
        raise RuntimeError("the plugin's own bug")

    monkeypatch.setattr(interceptors, "build_request", build_request)
"""


def test_a_failure_of_the_plugin_in_audit_is_reported_not_raised(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(INTERNAL_FAILURE)
    pytester.makepyfile(
        """
        import httpx, respx

        @respx.mock
        def test_request():
            respx.get("https://api.example.com/v1").respond(200, text="ok")
            assert httpx.get("https://api.example.com/v1").text == "ok"
        """
    )
    result = pytester.runpytest(
        "-p", "no:randomly", "-o", "outbound_mode=audit", "--outbound-report", "report.json"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "pytest-outbound failed judging 1 request(s) (let through unjudged); this is a bug*",
            "  GET https://api.example.com/v1 (client: httpx)",
        ]
    )
    report = json.loads((pytester.path / "report.json").read_text())
    [error] = report["internal_errors"]
    assert error["what"] == "GET https://api.example.com/v1 (client: httpx)"
    assert "RuntimeError: the plugin's own bug" in error["traceback"]


def test_a_failure_of_the_plugin_in_enforce_blocks_the_request(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INTERNAL_FAILURE)
    pytester.makepyfile(
        """
        import httpx, pytest, respx
        from pytest_outbound import OutboundBlocked

        @respx.mock
        def test_request():
            route = respx.get("https://api.example.com/v1").respond(200)
            with pytest.raises(OutboundBlocked, match="failed judging it"):
                httpx.get("https://api.example.com/v1")
            assert not route.called
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "-o", "outbound_mode=enforce")
    result.assert_outcomes(failed=1)  # the block was caught: the test fails all the same
    result.stdout.fnmatch_lines(
        [
            "*outbound request blocked: GET https://api.example.com/v1 (client: httpx)*",
            "*pytest-outbound failed judging it (RuntimeError: the plugin's own bug)*",
            "pytest-outbound failed judging 1 request(s) (blocked)*",
        ]
    )

"""Low-level HTTP on a documented host: http.client's ``putrequest``/``putheader``/``endheaders``
and urllib3's ``HTTPConnection.request`` used without a pool are judged like the high-level
clients (method, URL, headers, body fields), once per request, before anything leaves.

Loopback only: ``outbound_local = enforce`` makes 127.0.0.1 count as outbound, and the policy
documents it with paths, methods and a payload contract. The inner server records every
request it receives, so a test can tell that a blocked request never reached it.
"""

from __future__ import annotations

import pytest
from inner_output import failed_only_for_swallowed_blocks

# A loopback HTTP server that answers 200 "ok" to any method and keeps, on ``server.received``,
# the (method, path, body) of every request it got, and counts the connections it accepted.
RECORDING_SERVER = """
import contextlib, http.server, threading


class _Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.received.append((self.command, self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    def get_request(self):
        self.connections += 1
        return super().get_request()


@contextlib.contextmanager
def serve():
    server = _Server(("127.0.0.1", 0), _Handler)
    server.received, server.connections = [], 0
    server.port = server.server_address[1]
    server.base = f"http://127.0.0.1:{server.port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
"""

POLICY = """
[[destination]]
name = "api"
hosts = ["127.0.0.1"]
paths = ["/api/**"]
methods = ["GET", "POST", "PUT"]

[destination.payload]
fields = ["version", "header:x-app"]
[destination.payload.match]
version = "semver"
"""

# Helpers for the inner tests: one request each way, on a fresh connection to the server.
CLIENTS = """
import http.client, json, urllib.request
import requests, urllib3, urllib3.connection


def lowlevel(server, method, path, headers=(), body=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.putrequest(method, path)
    for name, value in headers:
        conn.putheader(name, value)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    return conn.getresponse().read()


def client_request(server, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request(method, path, body, headers or {})
    return conn.getresponse().read()


def urllib3_connection(server, method, path, headers=None, body=None):
    conn = urllib3.connection.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request(method, path, body=body, headers=headers)
    return conn.getresponse().data


def urllib3_lowlevel(server, method, path):
    conn = urllib3.connection.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.putrequest(method, path)
    conn.endheaders()
    return http.client.HTTPConnection.getresponse(conn).read()  # urllib3's wants its request
"""

INI = """
[pytest]
outbound_mode = enforce
outbound_local = enforce
outbound_policy = outbound.toml
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(recording_server=RECORDING_SERVER, clients=CLIENTS)
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini(INI)
    return pytester


# call, the method and path it sends, the reasons it is blocked for
BLOCKED = {
    "undocumented-path": (
        "lowlevel(server, 'GET', '/admin', [('X-App', 'cli')])",
        "GET",
        "/admin",
        ["path"],
    ),
    "undocumented-method": (
        "lowlevel(server, 'DELETE', '/api/items/1')",
        "DELETE",
        "/api/items/1",
        ["method"],
    ),
    "body-field-outside-the-contract": (
        "lowlevel(server, 'POST', '/api/report', [('Content-Type', 'application/json')],"
        " json.dumps({'version': '1.2.3', 'user': 'alice'}).encode())",
        "POST",
        "/api/report",
        ["payload:extra:user"],
    ),
    "body-field-not-matching": (
        "lowlevel(server, 'POST', '/api/report', [('Content-Type', 'application/json')],"
        ' b\'{"version": "latest"}\')',
        "POST",
        "/api/report",
        ["payload:malformed:version"],
    ),
    "header-outside-the-contract": (
        "lowlevel(server, 'GET', '/api/check', [('X-Machine', 'build-7')])",
        "GET",
        "/api/check",
        ["payload:extra:header:x-machine"],
    ),
}


@pytest.mark.parametrize("case", sorted(BLOCKED))
def test_a_putrequest_request_breaking_the_contract_is_blocked_before_it_leaves(
    suite: pytest.Pytester, case: str
) -> None:
    call, method, path, reasons = BLOCKED[case]
    suite.makepyfile(
        f"""
        import json, pytest
        from clients import *
        from recording_server import serve
        from pytest_outbound import OutboundBlocked

        def test_blocked(outbound):
            with serve() as server:
                with pytest.raises(OutboundBlocked):
                    {call}
                # a documented request after it: the server saw that one only
                assert client_request(server, "GET", "/api/ok") == b"ok"
                assert server.received == [("GET", "/api/ok", b"")]
                assert server.connections == 1
            assert [(r.client, r.method, r.path, r.verdict) for r in outbound.requests] == [
                ("http.client", "{method}", "{path}", "violation"),
                ("http.client", "GET", "/api/ok", "allowed"),
            ]
            assert outbound.requests[0].reasons == {reasons!r}
        """
    )
    result = suite.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)  # caught by pytest.raises, failed all the same
    result.stdout.fnmatch_lines(
        [f"*outbound request blocked: {method} http://127.0.0.1:*{path} (client: http.client)*"]
    )
    failed_only_for_swallowed_blocks(result)


def test_the_body_and_headers_of_a_putrequest_request_are_recorded(suite: pytest.Pytester) -> None:
    """A documented low-level request goes through whole, recorded with the code's headers and
    the body given to ``endheaders`` (not the Host and Accept-Encoding putrequest adds)."""
    suite.makepyfile(
        """
        from clients import *
        from recording_server import serve

        def test_recorded(outbound):
            body = b'{"version": "1.2.3"}'
            with serve() as server:
                lowlevel(server, "POST", "/api/report?x=1",
                         [("Content-Type", "application/json"), ("X-App", "cli")], body)
                assert server.received == [("POST", "/api/report?x=1", body)]
            [record] = outbound.requests
            assert (record.client, record.method, record.path, record.query, record.verdict) == (
                "http.client", "POST", "/api/report", {"x": ["1"]}, "violation")
            assert record.reasons == ["payload:extra:x"]
            assert record.body == body
            assert record.headers == {
                "Content-Type": "application/json", "X-App": "cli", "Content-Length": "20"}
            assert set(record.fields) == {"version", "header:x-app", "x"}
            assert record.location.startswith("clients.py:")
        """
    )
    result = suite.runpytest("-o", "outbound_mode=audit")
    result.assert_outcomes(passed=1)


def test_a_connection_used_again_after_a_block_sends_nothing_of_the_blocked_request(
    suite: pytest.Pytester,
) -> None:
    """The blocked request line and headers were buffered by ``putrequest``/``putheader``:
    they are dropped, so a connection closed and used again sends only its new request."""
    suite.makepyfile(
        """
        import http.client, pytest
        from recording_server import serve
        from pytest_outbound import OutboundBlocked

        def test_again(outbound):
            with serve() as server:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
                conn.putrequest("GET", "/admin")
                conn.putheader("X-Machine", "build-7")
                with pytest.raises(OutboundBlocked):
                    conn.endheaders()
                with pytest.raises(http.client.CannotSendRequest):  # mid-request until closed
                    conn.putrequest("GET", "/api/ok")
                conn.close()
                conn.putrequest("GET", "/api/ok")
                conn.endheaders()
                assert conn.getresponse().read() == b"ok"
                assert server.received == [("GET", "/api/ok", b"")]
            assert [(r.path, r.verdict) for r in outbound.requests] == [
                ("/admin", "violation"), ("/api/ok", "allowed")]
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    failed_only_for_swallowed_blocks(result)


URLLIB3_BLOCKED = {
    "undocumented-path": ("urllib3_connection(server, 'GET', '/admin')", "GET", "/admin"),
    "undocumented-method": (
        "urllib3_connection(server, 'DELETE', '/api/items/1')",
        "DELETE",
        "/api/items/1",
    ),
    # urllib3 sends the body after the headers: judged in its request, before either leaves
    "body-field-outside-the-contract": (
        "urllib3_connection(server, 'POST', '/api/report',"
        ' {\'Content-Type\': \'application/json\'}, b\'{"version": "1.2.3", "user": "alice"}\')',
        "POST",
        "/api/report",
    ),
    "lowlevel": ("urllib3_lowlevel(server, 'GET', '/admin')", "GET", "/admin"),
}


@pytest.mark.parametrize("case", sorted(URLLIB3_BLOCKED))
def test_a_urllib3_connection_without_a_pool_is_blocked_before_it_leaves(
    suite: pytest.Pytester, case: str
) -> None:
    call, method, path = URLLIB3_BLOCKED[case]
    suite.makepyfile(
        f"""
        import pytest
        from clients import *
        from recording_server import serve
        from pytest_outbound import OutboundBlocked

        def test_blocked(outbound):
            with serve() as server:
                with pytest.raises(OutboundBlocked):
                    {call}
                assert urllib3_connection(server, "GET", "/api/ok") == b"ok"
                assert server.received == [("GET", "/api/ok", b"")]
                assert server.connections == 1
            assert [(r.client, r.method, r.path, r.verdict) for r in outbound.requests] == [
                ("urllib3", "{method}", "{path}", "violation"),
                ("urllib3", "GET", "/api/ok", "allowed"),
            ]
        """
    )
    result = suite.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*outbound request blocked: {method} http://127.0.0.1:*{path} (client: urllib3)*"]
    )
    failed_only_for_swallowed_blocks(result)


def test_every_client_records_one_request_per_request(suite: pytest.Pytester) -> None:
    """Each layer stands aside beneath the one that judged: one record per request, named by
    the client the code used."""
    suite.makepyfile(
        """
        import urllib.request
        import requests, urllib3
        from clients import *
        from recording_server import serve

        def test_once(outbound):
            with serve() as server:
                base = server.base
                client_request(server, "GET", "/api/1")
                lowlevel(server, "GET", "/api/2")
                urllib3_connection(server, "GET", "/api/3")
                urllib3_lowlevel(server, "GET", "/api/4")
                urllib3.PoolManager().request("GET", base + "/api/5")
                urllib3.HTTPConnectionPool("127.0.0.1", server.port).urlopen("GET", "/api/6")
                requests.get(base + "/api/7")
                requests.post(base + "/api/8", json={"version": "1.0.0"})
                urllib.request.urlopen(base + "/api/9").read()
                assert [path for _, path, _ in server.received] == [
                    f"/api/{n}" for n in range(1, 10)]
            assert [(r.client, r.method, r.path, r.verdict) for r in outbound.requests] == [
                ("http.client", "GET", "/api/1", "allowed"),
                ("http.client", "GET", "/api/2", "allowed"),
                ("urllib3", "GET", "/api/3", "allowed"),
                ("urllib3", "GET", "/api/4", "allowed"),
                ("urllib3", "GET", "/api/5", "allowed"),
                ("urllib3", "GET", "/api/6", "allowed"),
                ("requests", "GET", "/api/7", "allowed"),
                ("requests", "POST", "/api/8", "allowed"),
                ("http.client", "GET", "/api/9", "allowed"),
            ]
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mode: enforce; 9 outbound request(s), 0 violation(s)"])


@pytest.mark.parametrize("client", ["http.client", "urllib3"])
def test_through_a_tunnel_the_low_level_record_names_the_target(
    suite: pytest.Pytester, client: str
) -> None:
    """``set_tunnel``: the target is judged, before the proxy is even connected to."""
    connection = {
        "http.client": "http.client.HTTPSConnection",
        "urllib3": "urllib3.connection.HTTPSConnection",
    }[client]
    suite.makepyfile(
        f"""
        import http.client, socket, pytest, urllib3.connection
        from pytest_outbound import OutboundBlocked

        def test_tunnel(outbound):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]   # nothing listens here: no proxy to reach
            conn = {connection}("127.0.0.1", port)
            conn.set_tunnel("undocumented.invalid", 8443)
            conn.putrequest("GET", "/collect")
            with pytest.raises(OutboundBlocked):
                conn.endheaders()
            assert [(r.client, r.host, r.port, r.url) for r in outbound.requests] == [
                ("{client}", "undocumented.invalid", 8443,
                 "https://undocumented.invalid:8443/collect")]
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    failed_only_for_swallowed_blocks(result)


VCR_CASSETTE = """\
interactions:
- request:
    body: null
    headers: {}
    method: GET
    uri: http://127.0.0.1:9/admin
  response:
    body: {string: 'replayed'}
    headers: {}
    status: {code: 200, message: OK}
version: 1
"""


def test_under_a_vcr_cassette_a_low_level_request_is_judged_before_it_is_replayed(
    suite: pytest.Pytester,
) -> None:
    suite.mkdir("cassettes")
    (suite.path / "cassettes" / "admin.yaml").write_text(VCR_CASSETTE)
    suite.makepyfile(
        """
        import http.client, pytest, vcr
        from pytest_outbound import OutboundBlocked

        def test_blocked(outbound):
            with vcr.use_cassette("cassettes/admin.yaml", record_mode="none") as cassette:
                conn = http.client.HTTPConnection("127.0.0.1", 9)
                conn.putrequest("GET", "/admin")
                with pytest.raises(OutboundBlocked):
                    conn.endheaders()
            assert cassette.play_count == 0
            assert [(r.client, r.path, r.verdict) for r in outbound.requests] == [
                ("http.client", "/admin", "violation")]
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    failed_only_for_swallowed_blocks(result)


def test_under_a_recording_vcr_cassette_each_request_is_recorded_once(
    suite: pytest.Pytester,
) -> None:
    """A request missing from the cassette is sent by vcr through a real connection: judged
    already, that one stands aside."""
    suite.makepyfile(
        """
        import vcr
        from clients import *
        from recording_server import serve

        def test_recording(outbound, tmp_path):
            with serve() as server:
                with vcr.use_cassette(str(tmp_path / "new.yaml"), record_mode="all"):
                    assert client_request(server, "GET", "/api/1") == b"ok"
                    assert lowlevel(server, "GET", "/api/2") == b"ok"
                assert [path for _, path, _ in server.received] == ["/api/1", "/api/2"]
            assert [(r.client, r.path) for r in outbound.requests] == [
                ("http.client", "/api/1"), ("http.client", "/api/2")]
        """
    )
    suite.runpytest().assert_outcomes(passed=1)

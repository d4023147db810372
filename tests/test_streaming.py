"""Streamed bodies reach the client as the caller made them (issue 22).

A generator, an iterator, an async iterable or a file is never read ahead of the client: what
the client does with it (``StreamConsumed`` when it cannot be sent twice, a sync client that
refuses an async stream, urllib3 that cannot rewind a body whose ``tell()`` fails) is the same
without the plugin, in audit, and in enforce with the destination documented. Each behaviour
is run in all three and must come out the same. What passes is watched as it is sent, and
judged once it has: its fields against the payload contract, and in enforce a breach fails the
test that sent it (the bytes cannot be recalled).

Loopback only: ``outbound_local = enforce`` makes 127.0.0.1 count as outbound. The server
reads bodies sent with a length or chunked, and keeps each request's (method, path, body).
"""

from __future__ import annotations

import pytest

SERVER = """
import contextlib, http.server, threading


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if not size:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self):
        body = self._body()
        self.server.received.append((self.command, self.path, body))
        if self.path.endswith("/redirect"):
            self.send_response(307)
            self.send_header("Location", "/api/landed")
        elif self.path.endswith("/digest"):
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                'Digest realm="r", nonce="abc", qop="auth", algorithm=MD5, opaque="o"',
            )
        else:
            self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.received = []
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

[destination.payload]
fields = ["version", "header:content-type"]
"""

#: The inner runs: without the plugin, in audit, and in enforce with the server documented.
RUNS = {
    "without the plugin": ("-p", "no:outbound"),
    "audit": (
        "-o",
        "outbound_mode=audit",
        "-o",
        "outbound_local=enforce",
        "-o",
        "outbound_policy=outbound.toml",
    ),
    "enforce": (
        "-o",
        "outbound_mode=enforce",
        "-o",
        "outbound_local=enforce",
        "-o",
        "outbound_policy=outbound.toml",
    ),
}

HEAD = """
import asyncio, http.client, io, json, urllib.request
import httpx, pytest, requests, urllib3
from streaming_server import serve

DOC = json.dumps({"version": "1.0.0"}).encode()
JSON = {"Content-Type": "application/json"}


def chunks():
    yield DOC[:5]
    yield DOC[5:]


async def achunks():
    yield DOC[:5]
    yield DOC[5:]


class NoTell(io.BytesIO):
    def tell(self):
        raise OSError("this body cannot say where it stands")


@pytest.fixture
def server():
    with serve() as server:
        yield server
"""

BEHAVIOURS = {
    "requests-generator": """
def test_it(server):
    requests.post(server.base + "/api/up", data=chunks(), headers=JSON)
    assert server.received == [("POST", "/api/up", DOC)]
""",
    "requests-file-redirected": """
def test_it(server):
    body = io.BytesIO(DOC)
    response = requests.post(server.base + "/api/redirect", data=body, headers=JSON)
    assert response.status_code == 200
    # requests rewinds the file for the 307's second hop: both got the whole body
    assert server.received == [("POST", "/api/redirect", DOC), ("POST", "/api/landed", DOC)]
""",
    "httpx-generator-redirected": """
def test_it(server):
    with pytest.raises(httpx.StreamConsumed):
        httpx.post(server.base + "/api/redirect", content=chunks(), headers=JSON,
                   follow_redirects=True)
    assert server.received == [("POST", "/api/redirect", DOC)]
""",
    "httpx-generator-digest-retry": """
def test_it(server):
    with pytest.raises(httpx.StreamConsumed):
        httpx.post(server.base + "/api/digest", content=chunks(), headers=JSON,
                   auth=httpx.DigestAuth("user", "secret"))
    assert server.received == [("POST", "/api/digest", DOC)]
""",
    "httpx-sync-client-async-stream": """
def test_it(server):
    with httpx.Client() as client:
        with pytest.raises(RuntimeError, match="async request with a sync Client"):
            client.post(server.base + "/api/up", content=achunks(), headers=JSON)
    assert server.received == []
""",
    "httpx-async-stream": """
def test_it(server):
    async def send():
        async with httpx.AsyncClient() as client:
            return await client.post(server.base + "/api/up", content=achunks(), headers=JSON)
    assert asyncio.run(send()).status_code == 200
    assert server.received == [("POST", "/api/up", DOC)]
""",
    "urllib3-unrewindable-redirected": """
def test_it(server):
    with urllib3.HTTPConnectionPool("127.0.0.1", server.port) as pool:
        with pytest.raises(urllib3.exceptions.UnrewindableBodyError):
            pool.urlopen("POST", "/api/redirect", body=NoTell(DOC), headers=JSON,
                         redirect=True)
    assert server.received == [("POST", "/api/redirect", DOC)]
""",
    "urllib3-generator": """
def test_it(server):
    urllib3.request("POST", server.base + "/api/up", body=chunks(), headers=JSON)
    assert server.received == [("POST", "/api/up", DOC)]
""",
    "http.client-generator-chunked": """
def test_it(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("POST", "/api/up", body=chunks(), headers=JSON)
    assert conn.getresponse().read() == b"ok"
    assert server.received == [("POST", "/api/up", DOC)]
""",
    "urllib.request-file": """
def test_it(server):
    request = urllib.request.Request(server.base + "/api/up", data=NoTell(DOC), headers={
        **JSON, "Content-Length": str(len(DOC))})
    assert urllib.request.urlopen(request, timeout=5).read() == b"ok"
    assert server.received == [("POST", "/api/up", DOC)]
""",
}


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(streaming_server=SERVER)
    pytester.makefile(".toml", outbound=POLICY)
    return pytester


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_a_streamed_body_behaves_as_without_the_plugin(
    suite: pytest.Pytester, behaviour: str, run: str
) -> None:
    suite.makepyfile(test_it=HEAD + BEHAVIOURS[behaviour])
    result = suite.runpytest("-p", "no:randomly", *RUNS[run])
    result.assert_outcomes(passed=1)


def test_what_passes_is_judged_and_a_breach_fails_the_test(suite: pytest.Pytester) -> None:
    """The body went out (it could not be stopped); its fields broke the contract: in enforce
    the test fails at its teardown, naming the request; the record holds the fields."""
    suite.makepyfile(
        test_it=HEAD
        + """
LEAK = json.dumps({"version": "1.0.0", "user": "alice"}).encode()

def leaky():
    yield LEAK[:7]
    yield LEAK[7:]

def test_leak(server, outbound):
    requests.post(server.base + "/api/up", data=leaky(), headers=JSON)
    assert server.received == [("POST", "/api/up", LEAK)]
    assert outbound.requests[0].fields == ("version", "user")

def test_fine(server, outbound):
    requests.post(server.base + "/api/up", data=chunks(), headers=JSON)
    [record] = outbound.requests
    assert (record.verdict, record.body, record.body_size) == ("allowed", DOC, len(DOC))
"""
    )
    result = suite.runpytest("-p", "no:randomly", *RUNS["enforce"])
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leak*",
            "*outbound request sent a streamed body the policy does not admit:"
            " POST http://127.0.0.1:*/api/up (client: requests)*",
            "*sent: 37 bytes, judged as they were sent*",
            "*+ user*not in fields*",
        ]
    )
    audit = suite.runpytest("-p", "no:randomly", *RUNS["audit"])
    audit.assert_outcomes(passed=2)
    audit.stdout.fnmatch_lines(["*2 outbound request(s), 1 violation(s)*"])


def test_a_long_stream_is_kept_up_to_the_body_limit(suite: pytest.Pytester) -> None:
    """A 1 MB upload is sent whole and not held: the record keeps ``outbound_body_limit``
    bytes of it and its size."""
    suite.makepyfile(
        test_it=HEAD
        + """
def big():
    for _ in range(1024):
        yield b"x" * 1024

def test_upload(server, outbound):
    httpx.post(server.base + "/api/up", content=big())
    assert server.received[0][2] == b"x" * (1 << 20)
    [record] = outbound.requests
    assert (len(record.body), record.body_size) == (1000, 1 << 20)
"""
    )
    result = suite.runpytest("-p", "no:randomly", *RUNS["audit"], "-o", "outbound_body_limit=1000")
    result.assert_outcomes(passed=1)


def test_a_seekable_file_is_judged_before_anything_leaves(suite: pytest.Pytester) -> None:
    """A file that says where it stands is read there and put back: judged whole before it is
    sent, so a breach is blocked and the server gets nothing; the file is where it was."""
    suite.makepyfile(
        test_it=HEAD
        + """
from pytest_outbound import OutboundBlocked

def test_blocked(server):
    body = io.BytesIO(b"xx" + json.dumps({"version": "1", "user": "alice"}).encode())
    body.seek(2)
    with pytest.raises(OutboundBlocked, match="user"):
        requests.post(server.base + "/api/up", data=body, headers=JSON)
    assert body.tell() == 2
    assert server.received == []
"""
    )
    result = suite.runpytest("-p", "no:randomly", *RUNS["enforce"])
    result.assert_outcomes(failed=1)  # the block was caught: the test fails all the same
    result.stdout.fnmatch_lines(
        ["*outbound request blocked: POST http://127.0.0.1:*/api/up*", "*+ user*not in fields*"]
    )


def test_a_stream_nobody_reads_sends_nothing_and_is_not_judged(suite: pytest.Pytester) -> None:
    """A mock that never reads the body: nothing was sent, so nothing of it is judged (the
    generator is the caller's, untouched)."""
    suite.makepyfile(
        test_it=HEAD
        + """
import responses

@responses.activate
def test_mocked(outbound):
    responses.post("http://127.0.0.1:9/api/up")
    body = chunks()
    requests.post("http://127.0.0.1:9/api/up", data=body, headers=JSON)
    assert next(body) == DOC[:5]  # not read by anyone before
    [record] = outbound.requests
    assert (record.verdict, record.body_size, record.fields) == ("allowed", 0, ())
"""
    )
    result = suite.runpytest("-p", "no:randomly", *RUNS["enforce"])
    result.assert_outcomes(passed=1)

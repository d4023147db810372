"""aiohttp is judged when a request goes out, never when a ``ClientRequest`` is built, and its
streamed bodies reach aiohttp untouched, judged as they pass (issue 22).

Building a request is not egress: code builds requests it never sends (aiohttp's own suite
builds hundreds), and in enforce, with no policy at all, that blocks and records nothing. A
request a session sends is judged as the session hands it to its connector, before it looks
the name up or connects: a blocked one contacts nothing. One sent by hand on a connection is
judged in ``send``: a blocked one writes nothing on it.

A file, an async generator, a multipart form is written by aiohttp as it always is: each
behaviour below is run without the plugin, in audit, and in enforce with the server documented,
and must come out the same (the server receives the same bytes; a redirect re-sends what
aiohttp can re-send and refuses what it cannot). What passes is judged once it has: a breach
of the payload contract could not be stopped, and in enforce fails the test that sent it.

Loopback only: ``outbound_local = enforce`` makes 127.0.0.1 count as outbound.
"""

from __future__ import annotations

import pytest
from asyncio_server import SOURCE as SERVER

POLICY = """
[[destination]]
name = "api"
hosts = ["127.0.0.1"]

[destination.payload]
fields = ["version", "header:content-type"]
"""

LOCAL = ("-o", "outbound_local=enforce", "-o", "outbound_policy=outbound.toml")
#: The inner runs: without the plugin, in audit, and in enforce with the server documented.
RUNS = {
    "without the plugin": ("-p", "no:outbound"),
    "audit": ("-o", "outbound_mode=audit", *LOCAL),
    "enforce": ("-o", "outbound_mode=enforce", *LOCAL),
}

HEAD = """
import asyncio, io, json
import aiohttp, pytest
from yarl import URL
from aserver import serve

DOC = json.dumps({"version": "1.0.0"}).encode()
LEAK = json.dumps({"version": "1.0.0", "user": "alice"}).encode()
JSON = {"Content-Type": "application/json"}


async def achunks(doc=DOC):
    yield doc[:5]
    yield doc[5:]


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def records(request):
    \"\"\"What gives the test's outbound records so far, or None without the plugin.\"\"\"
    if not request.config.pluginmanager.has_plugin("outbound"):
        return None
    outbound = request.getfixturevalue("outbound")
    return lambda: outbound.requests
"""

BEHAVIOURS = {
    "bytes": """
def test_it(records):
    async def main():
        async with serve() as server:
            async with aiohttp.ClientSession() as session:
                async with session.post(server.base + "/api/up", data=DOC, headers=JSON) as r:
                    assert (r.status, await r.read()) == (200, b"ok")
            return server
    assert run(main()).received == [("POST", "/api/up", DOC)]
    if records is not None:
        assert [(r.verdict, r.body, r.fields) for r in records()] == [("allowed", DOC, ("version",))]
""",
    "async-generator": """
def test_it(records):
    async def main():
        async with serve() as server:
            async with aiohttp.ClientSession() as session:
                async with session.post(server.base + "/api/up", data=achunks(), headers=JSON) as r:
                    assert r.status == 200
            return server
    assert run(main()).received == [("POST", "/api/up", DOC)]
    if records is not None:
        assert [(r.verdict, r.body, r.body_size, r.fields) for r in records()] == [
            ("allowed", DOC, len(DOC), ("version",))]
""",
    "file": """
def test_it(records, tmp_path):
    (tmp_path / "doc.json").write_bytes(DOC)
    async def main():
        async with serve() as server:
            async with aiohttp.ClientSession() as session:
                with open(tmp_path / "doc.json", "rb") as body:
                    async with session.post(server.base + "/api/up", data=body, headers=JSON) as r:
                        assert r.status == 200
            return server
    assert run(main()).received == [("POST", "/api/up", DOC)]
    if records is not None:
        assert [(r.verdict, r.body, r.fields) for r in records()] == [("allowed", DOC, ("version",))]
""",
    "multipart-form": """
def test_it(records):
    form = aiohttp.FormData()
    form.add_field("version", io.BytesIO(b"1.0.0"), filename="version.txt")
    async def main():
        async with serve() as server:
            async with aiohttp.ClientSession() as session:
                async with session.post(server.base + "/api/up", data=form) as r:
                    assert r.status == 200
            return server
    [(method, path, body)] = run(main()).received
    assert b'name="version"' in body and b"\\r\\n\\r\\n1.0.0\\r\\n" in body
    if records is not None:
        assert [(r.verdict, r.body, r.fields) for r in records()] == [("allowed", body, ("version",))]
""",
    "compressed": """
import zlib

def test_it(records):
    async def main():
        async with serve() as server:
            async with aiohttp.ClientSession() as session:
                for body in (DOC, achunks()):
                    async with session.post(server.base + "/api/up", data=body, headers=JSON,
                                            compress="deflate") as r:
                        assert r.status == 200
            return server
    received = run(main()).received
    assert [zlib.decompress(body) for _, _, body in received] == [DOC, DOC]
    if records is not None:  # judged as the caller gave it (aiohttp compresses it as it writes)
        assert [(r.verdict, r.body, r.fields) for r in records()] == [
            ("allowed", DOC, ("version",))] * 2
""",
    "built-never-sent": """
def test_it(records):
    async def main():
        loop = asyncio.get_running_loop()
        for data in (None, LEAK, achunks(LEAK)):
            request = aiohttp.ClientRequest(
                "POST", URL("https://undocumented.example/collect"), data=data, loop=loop)
            assert request.url.host == "undocumented.example"
    run(main())
    assert records is None or records() == []
""",
}


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(aserver=SERVER)
    pytester.makefile(".toml", outbound=POLICY)
    return pytester


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_an_aiohttp_request_behaves_as_without_the_plugin(
    suite: pytest.Pytester, behaviour: str, run: str
) -> None:
    suite.makepyfile(test_it=HEAD + BEHAVIOURS[behaviour])
    result = suite.runpytest("-p", "no:randomly", *RUNS[run])
    result.assert_outcomes(passed=1)


REDIRECTED = """
import pathlib

def test_it(records, tmp_path):
    (tmp_path / "doc.json").write_bytes(DOC)
    body = {BODY}
    async def main():
        async with serve() as server:
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.post(server.base + "/api/redirect", data=body,
                                            headers=JSON) as r:
                        outcome = r.status
                except aiohttp.ClientError as exc:
                    outcome = type(exc).__name__
            return outcome, server.received
    outcome, received = run(main())
    pathlib.Path("outcome.txt").write_text(repr((outcome, received)))
    if records is not None:  # each hop judged on what it sent
        assert [(r.path, r.body) for r in records()] == [(p, b) for _, p, b in received]
"""

#: Bodies aiohttp sends again for a 307, or refuses to, or sends empty: its versions differ.
REDIRECTED_BODIES = {
    "bytes": "DOC",
    "bytesio": "io.BytesIO(DOC)",
    "file": 'open(tmp_path / "doc.json", "rb")',
    "async-generator": "achunks()",
}


@pytest.mark.parametrize("body", sorted(REDIRECTED_BODIES))
def test_a_redirect_sends_the_body_again_as_without_the_plugin(
    suite: pytest.Pytester, body: str
) -> None:
    """A 307 makes aiohttp send the body again: from where the file stood, or not at all
    for a spent generator (aiohttp 3.14 refuses, older versions send it empty). Whatever
    aiohttp does, it does the same in every run; each hop is judged on what it sent."""
    suite.makepyfile(test_it=HEAD + REDIRECTED.replace("{BODY}", REDIRECTED_BODIES[body]))
    outcomes = set()
    for run in RUNS.values():
        suite.runpytest("-p", "no:randomly", *run).assert_outcomes(passed=1)
        outcomes.add((suite.path / "outcome.txt").read_text())
    assert len(outcomes) == 1, outcomes


def test_a_request_built_and_never_sent_records_and_blocks_nothing(
    pytester: pytest.Pytester,
) -> None:
    """Enforce with no policy at all: building requests (with every kind of body), and even
    connecting for one without sending it, is not egress."""
    pytester.makepyfile(aserver=SERVER)
    pytester.makepyfile(
        test_it=HEAD
        + """
def test_built(outbound):
    async def main():
        loop = asyncio.get_running_loop()
        for url in ("https://undocumented.example/collect", "http://127.0.0.1:9/up"):
            for data in (None, LEAK, achunks(LEAK), io.BytesIO(LEAK)):
                aiohttp.ClientRequest("POST", URL(url), data=data, headers=JSON, loop=loop)
    run(main())
    assert outbound.requests == []
"""
    )
    result = pytester.runpytest("-p", "no:randomly", "-o", "outbound_mode=enforce")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mode: enforce; 0 outbound request(s), 0 violation(s)"])


def test_a_blocked_request_contacts_nothing_or_writes_nothing(suite: pytest.Pytester) -> None:
    """Its body breaks the contract. Sent by a session, it is blocked before the connector
    connects: the server sees no connection. Sent by hand on a connection, it is blocked in
    ``send``: the connection was made, and nothing was written on it. Either way the caller
    gets ``OutboundBlocked``, and the test fails even though it caught it."""
    suite.makepyfile(
        test_it=HEAD
        + """
from pytest_outbound import OutboundBlocked

def test_session(outbound):
    async def main():
        async with serve() as server:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(OutboundBlocked, match="user"):
                    await session.post(server.base + "/api/up", data=LEAK, headers=JSON)
                async with session.post(server.base + "/api/fine", data=DOC, headers=JSON) as r:
                    assert r.status == 200  # the session goes on working
            return server
    server = run(main())
    assert server.received == [("POST", "/api/fine", DOC)]
    assert len(server.raw) == 1  # the blocked request never connected
    assert [r.verdict for r in outbound.requests] == ["violation", "allowed"]

def test_by_hand(outbound):
    async def main():
        async with serve() as server:
            connector = aiohttp.TCPConnector()
            request = aiohttp.ClientRequest("POST", URL(server.base + "/api/up"), data=LEAK,
                                            headers=JSON, loop=asyncio.get_running_loop())
            connection = await connector.connect(request, [], aiohttp.ClientTimeout())
            try:
                with pytest.raises(OutboundBlocked, match="user"):
                    await request.send(connection)
            finally:
                connection.close()
                await connector.close()
            await asyncio.sleep(0.05)  # the server reads the connection to its end
            return server
    server = run(main())
    assert (server.received, [bytes(raw) for raw in server.raw]) == ([], [b""])
    assert [r.verdict for r in outbound.requests] == ["violation"]
"""
    )
    result = suite.runpytest("-p", "no:randomly", *RUNS["enforce"])
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*outbound request blocked: POST http://127.0.0.1:*/api/up (client: aiohttp)",
            "*from: test_it.py:*",
            "*+ user*not in fields*",
        ]
    )
    assert "2 outbound request(s) were blocked" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*1 outbound request(s) were blocked*"])


STREAMED_BREACH = """
def test_generator(records):
    async def main():
        async with serve() as server:
            async with aiohttp.ClientSession() as session:
                async with session.post(server.base + "/api/up", data=achunks(LEAK),
                                        headers=JSON) as r:
                    assert r.status == 200
            return server
    assert run(main()).received == [("POST", "/api/up", LEAK)]
    [record] = records()
    assert (record.body, record.body_size, record.fields) == (LEAK, len(LEAK), ("version", "user"))

def test_file(records, tmp_path):
    (tmp_path / "leak.json").write_bytes(LEAK)
    async def main():
        async with serve() as server:
            async with aiohttp.ClientSession() as session:
                with open(tmp_path / "leak.json", "rb") as body:
                    async with session.put(server.base + "/api/up", data=body,
                                           headers=JSON) as r:
                        assert r.status == 200
            return server
    assert run(main()).received == [("PUT", "/api/up", LEAK)]
    [record] = records()
    assert record.fields == ("version", "user")
"""


def test_a_streamed_body_is_judged_once_sent_and_a_breach_fails_the_test(
    suite: pytest.Pytester,
) -> None:
    """The body went out whole (a stream cannot be judged before it is read, and is not read
    ahead of aiohttp); its fields broke the contract: in enforce each test fails at its
    teardown, naming the request; in audit they are violations."""
    suite.makepyfile(test_it=HEAD + STREAMED_BREACH)
    result = suite.runpytest("-p", "no:randomly", *RUNS["enforce"])
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_generator*",
            "*outbound request sent a streamed body the policy does not admit:"
            " POST http://127.0.0.1:*/api/up (client: aiohttp)*",
            "*+ user*not in fields*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_file*",
            "*outbound request sent a streamed body the policy does not admit:"
            " PUT http://127.0.0.1:*/api/up (client: aiohttp)*",
        ]
    )
    audit = suite.runpytest("-p", "no:randomly", *RUNS["audit"])
    audit.assert_outcomes(passed=2)
    audit.stdout.fnmatch_lines(["*2 outbound request(s), 2 violation(s)*"])


def test_a_request_the_plugin_cannot_read_keeps_the_callers_own_outcome(
    pytester: pytest.Pytester,
) -> None:
    """aiohttp's own tests hand a session a mock as its ``request_class``: in audit the plugin
    cannot read it, lets it go on (reporting its own failure) and the test gets aiohttp's own
    error; in enforce it is blocked."""
    pytester.makepyfile(
        """
        import asyncio
        from unittest import mock

        import aiohttp, pytest

        async def send_through_a_mock():
            request = mock.AsyncMock()
            request.send.side_effect = OSError(1, "permission error")
            s = aiohttp.ClientSession(request_class=mock.Mock(return_value=request))

            async def create_connection(req, traces, timeout):
                return mock.Mock()

            s._connector._create_connection = create_connection
            s._connector._release = mock.Mock()
            await s.request("get", "http://example.com")  # (as aiohttp's test, never closed)

        def test_it():
            with pytest.raises(aiohttp.ClientOSError):
                asyncio.run(send_through_a_mock())
        """
    )
    audit = pytester.runpytest("-p", "no:randomly", "-o", "outbound_mode=audit")
    audit.assert_outcomes(passed=1)
    audit.stdout.fnmatch_lines(["pytest-outbound failed judging 1 request(s) (let through*"])
    enforce = pytester.runpytest("-p", "no:randomly", "-o", "outbound_mode=enforce")
    enforce.assert_outcomes(failed=1)
    enforce.stdout.fnmatch_lines(
        ["*outbound request blocked: ? <unittest.mock.AsyncMock object> (client: aiohttp)*"]
    )


UNIX_SOCKET = """
import asyncio, os, tempfile
import aiohttp


async def serve(path):
    async def handle(reader, writer):
        await reader.readuntil(b"\\r\\n\\r\\n")
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
        await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(handle, path)


def test_docker_like(request):
    async def main():
        path = os.path.join(tempfile.mkdtemp(), "api.sock")
        server = await serve(path)
        try:
            connector = aiohttp.UnixConnector(path=path)
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.post("http://docker/v1.45/containers/create", json={}) as resp:
                    return await resp.text()
        finally:
            server.close()

    assert asyncio.run(main()) == "ok"
    if request.config.pluginmanager.has_plugin("outbound"):
        assert request.getfixturevalue("outbound").requests == []
"""


@pytest.mark.parametrize(
    "run",
    [("-p", "no:outbound"), ("-o", "outbound_mode=audit"), ("-o", "outbound_mode=enforce")],
    ids=["without the plugin", "audit", "enforce"],
)
def test_a_request_over_a_unix_socket_is_local_whatever_host_its_url_names(
    pytester: pytest.Pytester, run: tuple[str, ...]
) -> None:
    """A ``UnixConnector`` connects to a socket of this machine: ``http://docker/`` names no
    destination (aiohttp's own ``test_ws_connect_unix_socket_allowed_protocols``). Neither
    recorded nor blocked; the backstop judges the socket under ``outbound_local = enforce``."""
    pytester.makepyfile(UNIX_SOCKET)
    result = pytester.runpytest("-p", "no:randomly", *run)
    result.assert_outcomes(passed=1)


def test_a_unix_socket_under_outbound_local_enforce_is_judged_as_localhost(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(UNIX_SOCKET)
    result = pytester.runpytest(
        "-p", "no:randomly", "-o", "outbound_mode=enforce", "-o", "outbound_local=enforce"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*localhost*"])

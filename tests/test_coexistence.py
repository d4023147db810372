"""pytest-outbound beside the peer plugins its users already run, both active in one run.

For each peer (pytest-socket, vcrpy and pytest-recording, requests-mock, pytest-asyncio,
time-machine and freezegun) the inner run checks that the peer still does its job and that
pytest-outbound still sees, attributes and judges every request: an undocumented one is blocked
with our ``OutboundBlocked`` before the peer sees it. Nothing leaves the machine: requests are
mocked, replayed from cassettes, sent to a loopback server, or blocked before they go.
(pytest-httpx is covered in test_mocks.py.)
"""

from __future__ import annotations

import datetime
import json

import pytest

# Imported here, once per process, so that PyYAML (which vcrpy loads cassettes with) is not
# imported afresh by every in-process inner run: a second import of its C loader cannot load
# any YAML ("could not determine a constructor for the tag None").
import yaml  # noqa: F401
from inner_output import before_summary, failed_only_for_swallowed_blocks

POLICY = """
[[destination]]
name = "update-check"
description = "Checking for updates."
hosts = ["octopus.com"]
schemes = ["https"]
"""


def ini(*lines: str) -> str:
    return "\n".join(
        [
            "[pytest]",
            "outbound_policy = outbound.toml",
            "outbound_mode = enforce",
            "outbound_sensitive_machine = false",
            *lines,
            "",
        ]
    )


@pytest.fixture
def suite(pytester: pytest.Pytester, loopback: None) -> pytest.Pytester:
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini(ini())
    return pytester


BLOCKED_EVIL = [
    "*outbound request blocked: GET https://evil.example/collect (client: requests)",
    "*why:  host 'evil.example' is not a documented destination",
]


# -- pytest-socket -----------------------------------------------------------------------------

SOCKET_TESTS = """
import socket
import pytest, requests, responses
from loopback import serve
from pytest_outbound import OutboundBlocked
from pytest_socket import SocketBlockedError

def test_undocumented_is_ours_first(outbound):
    with pytest.raises(OutboundBlocked, match="evil.example"):
        requests.get("https://evil.example/collect")
    assert [(r.client, r.host, r.verdict) for r in outbound.requests] == [
        ("requests", "evil.example", "violation")]

@responses.activate
def test_documented_mock_answers(outbound):
    responses.get("https://octopus.com/api/check", json={"latest": "2"})
    assert requests.get("https://octopus.com/api/check").json() == {"latest": "2"}
    assert [(r.destination, r.verdict, r.phase) for r in outbound.requests] == [
        ("update-check", "allowed", "call")]

def test_pytest_socket_still_refuses_sockets():
    with pytest.raises(SocketBlockedError):
        socket.socket()

@pytest.mark.enable_socket
def test_enable_socket_marker(outbound):
    with serve() as base:
        assert requests.get(base + "/x").text == "/x"
    assert outbound.requests == []   # loopback is not outbound (outbound_local = allow)
"""


def test_pytest_socket_disable_socket(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "500")  # each line of the summary whole
    suite.makepyfile(test_socket=SOCKET_TESTS)
    result = suite.runpytest("--disable-socket", "-p", "no:randomly")
    # The undocumented request fails its test (caught, yet a violation); everything else passes.
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*1 outbound request(s) were blocked, and the code under test caught*",
            *BLOCKED_EVIL,
            "*= outbound =*",
            "mode: enforce; 2 outbound request(s), 1 violation(s)",
            # (the test's name on this line, or on the next where the terminal is narrow)
            "  update-check (octopus.com): 1 request(s) in 1 test(s):*",
            "  evil.example: undocumented: 1 request(s) in 1 test(s)",
            "    *::test_undocumented_is_ours_first at test_socket.py:*: GET*",
        ]
    )
    result.stdout.no_fnmatch_line("*AssertionError*")
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


def test_pytest_socket_allow_hosts(suite: pytest.Pytester) -> None:
    # Loopback is judged too here (outbound_local = enforce), so pytest-outbound records what
    # pytest-socket lets through.
    suite.makeini(ini("outbound_local = enforce", "outbound_allow = 127.0.0.1"))
    suite.makepyfile(
        """
        import socket
        import pytest, requests, responses
        from loopback import serve
        from pytest_outbound import OutboundBlocked
        from pytest_socket import SocketConnectBlockedError

        def test_loopback_allowed_by_both(outbound):
            with serve() as base:
                assert requests.get(base + "/hello").text == "/hello"
            [r] = outbound.requests
            assert (r.client, r.host, r.path, r.verdict) == ("requests", "127.0.0.1", "/hello", "allowed")

        def test_pytest_socket_still_refuses_other_hosts(outbound):
            with serve() as base:
                port = int(base.rsplit(":", 1)[1])
                outbound.allow("127.0.0.2")
                with pytest.raises(SocketConnectBlockedError):
                    socket.create_connection(("127.0.0.2", port))

        @responses.activate
        def test_documented_mock_answers(outbound):
            responses.get("https://octopus.com/api/check", json={"latest": "2"})
            assert requests.get("https://octopus.com/api/check").json() == {"latest": "2"}

        def test_undocumented_is_ours_first():
            requests.get("https://evil.example/collect")
        """
    )
    result = suite.runpytest("--allow-hosts=127.0.0.1", "-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *pytest_outbound.OutboundBlocked: outbound request blocked:"
            " GET https://evil.example/collect (client: requests)",
            "*= outbound =*",
            "mode: enforce; 3 outbound request(s), 1 violation(s)",
        ]
    )
    result.stdout.no_fnmatch_line("*SocketConnectBlockedError: A test tried*evil*")


def test_pytest_socket_markers(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import socket
        import pytest, requests
        from loopback import serve
        from pytest_outbound import OutboundBlocked
        from pytest_socket import SocketBlockedError

        @pytest.mark.disable_socket
        def test_disable_socket_marker(outbound):
            with pytest.raises(SocketBlockedError):
                socket.socket()
            with pytest.raises(OutboundBlocked):
                requests.get("https://evil.example/collect")
            assert [r.host for r in outbound.requests] == ["evil.example"]

        def test_sockets_are_back_after_it():
            with serve() as base:
                assert requests.get(base + "/x").text == "/x"
        """
    )
    result = suite.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [*BLOCKED_EVIL, "mode: enforce; 1 outbound request(s), 1 violation(s)"]
    )
    result.stdout.no_fnmatch_line("*AssertionError*")


def test_pytest_socket_teardown_does_not_unhook_the_backstop_resolver(
    suite: pytest.Pytester,
) -> None:
    """pytest-socket's teardown puts back the ``socket.getaddrinfo`` it saw at import, which drops
    the wrapper through which the backstop learns what a documented name resolved to. A later
    test that connects to a documented name for real must still pass."""
    suite.makefile(".toml", outbound='[[destination]]\nname = "local"\nhosts = ["localhost"]\n')
    suite.makeini(ini("outbound_local = enforce"))
    suite.makepyfile(
        """
        import pytest, requests
        from loopback import serve

        def test_first_with_sockets_disabled():
            pass

        @pytest.mark.enable_socket
        def test_then_a_documented_name_for_real(outbound):
            with serve() as base:
                assert requests.get(base.replace("127.0.0.1", "localhost") + "/x").text == "/x"
            assert [(r.client, r.destination, r.verdict) for r in outbound.requests] == [
                ("requests", "local", "allowed")]
        """
    )
    # The second test on its own passes; after a socket-disabled test it must pass too.
    suite.runpytest("--disable-socket", "-k", "documented_name").assert_outcomes(
        passed=1, deselected=1
    )
    result = suite.runpytest("--disable-socket", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["mode: enforce; 1 outbound request(s), 0 violation(s)"])


RAW_CONNECT_TWICE = """
import socket, pytest
from pytest_outbound import OutboundBlocked

@pytest.fixture
def port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    yield server.getsockname()[1]
    server.close()

@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_raw_connect(port, attempt):
    try:
        socket.create_connection(("127.0.0.1", port)).close()
    except OutboundBlocked:
        pass
"""


@pytest.mark.parametrize("allow", [[], ["--allow-hosts=127.0.0.1"]], ids=["plain", "allow-hosts"])
def test_pytest_socket_does_not_unhook_the_connect_backstop_after_a_test(
    suite: pytest.Pytester, allow: list[str]
) -> None:
    """pytest-socket puts back the ``socket.socket.connect`` it saved at import after every test
    (and with --allow-hosts installs its own guard calling that saved one at every setup): every
    test's connect must still be judged, not only the first."""
    suite.makeini(ini("outbound_local = enforce"))
    suite.makepyfile(test_raw=RAW_CONNECT_TWICE)
    result = suite.runpytest("-p", "no:randomly", *allow)
    result.assert_outcomes(failed=3)  # each one blocked (and swallowed, so failed)
    result.stdout.fnmatch_lines(["mode: enforce; 3 outbound request(s), 3 violation(s)"])


def test_pytest_socket_with_a_socket_class_swapped_before_the_session(
    suite: pytest.Pytester,
) -> None:
    """gevent's monkey-patching swaps ``socket.socket`` for its own class before the plugin
    configures. pytest-socket puts the standard class and its saved standard ``connect`` back
    after every test: what it holds must stay the standard ``connect`` (wrapped), never the
    swapped class's, which the standard class cannot run."""
    suite.makeconftest(
        """
        import socket

        _standard = socket.socket

        class Green(_standard):
            __slots__ = ()
            def connect(self, address):
                assert isinstance(self, Green), "a Green connect on a standard socket"
                return _standard.connect(self, address)

        socket.socket = Green
        """
    )
    suite.makepyfile(
        """
        import socket, pytest

        @pytest.mark.parametrize("attempt", [1, 2, 3])
        def test_connect(attempt):
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.connect(server.getsockname())
            client.close()
            server.close()
        """
    )
    suite.runpytest("-p", "no:randomly").assert_outcomes(passed=3)


def test_pytest_socket_does_not_unhook_the_gethostbyname_backstop(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import socket, pytest
        from pytest_outbound import OutboundBlocked

        def test_first_with_sockets_disabled():
            pass

        @pytest.mark.enable_socket
        def test_then_an_undocumented_lookup(outbound):
            with pytest.raises(OutboundBlocked):
                socket.gethostbyname("evil.example")
            assert [(r.client, r.host) for r in outbound.requests] == [("dns", "evil.example")]
        """
    )
    result = suite.runpytest("--disable-socket", "-p", "no:randomly")
    # Blocked before the lookup left (the test then fails: it swallowed the block).
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*1 outbound request(s) were blocked*"])
    assert "DID NOT RAISE" not in result.stdout.str()
    failed_only_for_swallowed_blocks(result)


def test_pytest_socket_enabled_again_inside_a_test_keeps_the_gethostbyname_backstop(
    suite: pytest.Pytester,
) -> None:
    """pytest-socket's ``enable_socket()`` puts back the ``gethostbyname`` it saved at import:
    called inside a test (after the backstop's check before the test), it must put back ours."""
    suite.makepyfile(
        """
        import socket, pytest, pytest_socket
        from pytest_outbound import OutboundBlocked

        @pytest.mark.disable_socket
        def test_enables_sockets_itself(outbound):
            pytest_socket.enable_socket()
            with pytest.raises(OutboundBlocked):
                socket.gethostbyname("evil.example")
            assert [(r.client, r.host) for r in outbound.requests] == [("dns", "evil.example")]
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)  # blocked before the lookup left, and swallowed
    failed_only_for_swallowed_blocks(result)


def test_a_resolver_put_back_by_another_tool_is_patched_again(suite: pytest.Pytester) -> None:
    """A tool that saved ``socket.gethostbyname`` before the session, and puts it back after a
    test, unhooks the backstop's resolver: it is patched again before the next test."""
    suite.makeconftest(
        """
        import socket, pytest

        SAVED = socket.gethostbyname  # before the plugin patched it

        def refuse(host):
            raise OSError("no lookups in this test")

        @pytest.fixture
        def no_lookups():
            socket.gethostbyname = refuse
            yield
            socket.gethostbyname = SAVED
        """
    )
    suite.makepyfile(
        """
        import socket, pytest
        from pytest_outbound import OutboundBlocked

        def test_first(no_lookups):
            with pytest.raises(OSError, match="no lookups"):
                socket.gethostbyname("evil.example")

        def test_then_an_undocumented_lookup(outbound):
            with pytest.raises(OutboundBlocked):
                socket.gethostbyname("evil.example")
            assert [(r.client, r.host) for r in outbound.requests] == [("dns", "evil.example")]
        """
    )
    # Without pytest-socket: its teardown puts back a ``connect`` every time, and that alone
    # has everything patched again.
    result = suite.runpytest("-p", "no:randomly", "-p", "no:socket")
    result.assert_outcomes(passed=1, failed=1)  # the second swallowed its block
    failed_only_for_swallowed_blocks(result)


# -- vcrpy and pytest-recording ----------------------------------------------------------------

CASSETTE = """\
interactions:
- request:
    body: null
    headers: {}
    method: GET
    uri: https://octopus.com/api/check
  response:
    body: {string: '{"latest": "2024.2"}'}
    headers:
      Content-Type: [application/json]
    status: {code: 200, message: OK}
- request:
    body: null
    headers: {}
    method: GET
    uri: https://evil.example/collect
  response:
    body: {string: 'leaked'}
    headers: {}
    status: {code: 200, message: OK}
version: 1
"""

VCR_TESTS = """
import asyncio, http.client, json
import aiohttp, httpx, pytest, requests, vcr
from pytest_outbound import OutboundBlocked

async def aiohttp_get(url):
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return await response.read()

def http_client_get(url):
    conn = http.client.HTTPSConnection(url.split("/")[2])
    conn.request("GET", "/" + url.split("/", 3)[3])
    return conn.getresponse().read()

GET = {{
    "requests": lambda url: requests.get(url).content,
    "httpx": lambda url: httpx.get(url).content,
    "aiohttp": lambda url: asyncio.run(aiohttp_get(url)),
    "http.client": http_client_get,
}}["{client}"]

def test_documented_replayed(outbound):
    with vcr.use_cassette("cassettes/shared.yaml", record_mode="none") as cassette:
        assert json.loads(GET("https://octopus.com/api/check")) == {{"latest": "2024.2"}}
    assert cassette.play_count == 1
    assert [(r.client, r.destination, r.verdict, r.url) for r in outbound.requests] == [
        ("{client}", "update-check", "allowed", "https://octopus.com/api/check")]

def test_undocumented_blocked_before_vcr(outbound):
    with vcr.use_cassette("cassettes/shared.yaml", record_mode="none") as cassette:
        with pytest.raises(OutboundBlocked):
            GET("https://evil.example/collect")
    assert cassette.play_count == 0   # the cassette holds it, yet never played it
    assert [(r.client, r.verdict) for r in outbound.requests] == [("{client}", "violation")]
"""


@pytest.mark.parametrize("client", ["requests", "httpx", "aiohttp", "http.client"])
def test_vcrpy_cassette(suite: pytest.Pytester, client: str) -> None:
    suite.mkdir("cassettes")
    (suite.path / "cassettes" / "shared.yaml").write_text(CASSETTE)
    suite.makepyfile(test_vcr=VCR_TESTS.format(client=client))
    result = suite.runpytest("-p", "no:randomly")
    # Replayed and documented: passes. In the cassette but undocumented: blocked first, and the
    # test fails though it caught the exception.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*1 outbound request(s) were blocked, and the code under test caught*",
            f"outbound request blocked: GET https://evil.example/collect (client: {client})",
            "*= outbound =*",
            "mode: enforce; 2 outbound request(s), 1 violation(s)",
            "  update-check (octopus.com): 1 request(s) in 1 test(s):*",
        ]
    )
    out = result.stdout.str()
    assert "AssertionError" not in out
    assert "CannotOverwriteExistingCassetteException" not in out


RECORDING_TESTS = """
import pytest, requests
from loopback import serve

@pytest.mark.vcr
def test_marked(vcr, outbound):
    assert requests.get("https://octopus.com/api/check").json() == {"latest": "2024.2"}
    assert vcr.play_count == 1
    [r] = outbound.requests
    assert (r.destination, r.verdict, r.phase) == ("update-check", "allowed", "call")

@pytest.mark.vcr
def test_marked_undocumented(vcr):
    try:
        requests.get("https://evil.example/collect")
    finally:
        assert vcr.play_count == 0

def test_unmarked_undocumented():
    requests.get("https://evil.example/collect")

def test_loopback_refused_by_pytest_recording(outbound):
    with serve() as base:
        with pytest.raises(RuntimeError, match="Network is disabled"):
            requests.get(base + "/x")
    assert outbound.requests == []
"""


def test_pytest_recording_vcr_marker_and_block_network(suite: pytest.Pytester) -> None:
    cassettes = suite.path / "cassettes" / "test_recording"
    cassettes.mkdir(parents=True)
    for name in ("test_marked", "test_marked_undocumented"):
        (cassettes / f"{name}.yaml").write_text(CASSETTE)
    suite.makepyfile(test_recording=RECORDING_TESTS)
    result = suite.runpytest("--block-network", "--record-mode=none", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "E *pytest_outbound.OutboundBlocked: outbound request blocked:"
            " GET https://evil.example/collect (client: requests)",
            "*= outbound =*",
            "mode: enforce; 3 outbound request(s), 2 violation(s)",
            "  update-check (octopus.com): 1 request(s) in 1 test(s):*",
        ]
    )
    out = result.stdout.str()
    failures = before_summary(result)
    assert (
        failures.count("OutboundBlocked: outbound request blocked: GET https://evil.example") == 2
    )
    assert "Network is disabled for host 'evil.example'" not in out
    assert "AssertionError" not in out


# -- requests-mock -----------------------------------------------------------------------------


def test_requests_mock(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest, requests, requests_mock as rm
        from pytest_outbound import OutboundBlocked

        def test_fixture_answers_documented(requests_mock, outbound):
            mocked = requests_mock.get("https://octopus.com/api/check", json={"latest": "2"})
            assert requests.get("https://octopus.com/api/check").json() == {"latest": "2"}
            assert mocked.call_count == 1
            assert [(r.client, r.destination, r.verdict, r.phase) for r in outbound.requests] == [
                ("requests", "update-check", "allowed", "call")]

        def test_fixture_undocumented_blocked_first(requests_mock, outbound):
            mocked = requests_mock.get("https://evil.example/collect", text="leaked")
            try:
                requests.get("https://evil.example/collect")
            except OutboundBlocked:
                pass
            assert mocked.call_count == 0
            assert [(r.host, r.verdict) for r in outbound.requests] == [("evil.example", "violation")]

        def test_mocker_context_manager(outbound):
            with rm.Mocker() as m:
                mocked = m.post("https://evil.example/collect", text="leaked")
                with pytest.raises(OutboundBlocked):
                    requests.post("https://evil.example/collect", json={"a": 1})
            assert mocked.call_count == 0
        """
    )
    result = suite.runpytest("-p", "no:randomly")
    # The documented request passes; both undocumented ones are blocked (and so fail their test)
    # before requests-mock answers them.
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "mode: enforce; 3 outbound request(s), 2 violation(s)",
            "  update-check (octopus.com): 1 request(s) in 1 test(s):*",
        ]
    )
    out = result.stdout.str()
    failures = before_summary(result)
    assert failures.count("outbound request(s) were blocked, and the code under test caught") == 2
    assert "AssertionError" not in out


# -- pytest-asyncio ----------------------------------------------------------------------------

ASYNC_TESTS = """
import aiohttp, httpx, pytest, pytest_asyncio, respx
from loopback import serve

{fixture}
async def warmed():
    with respx.mock:
        respx.get("https://octopus.com/api/warm").respond(json={{}})
        async with httpx.AsyncClient() as client:
            await client.get("https://octopus.com/api/warm")
    yield

{mark}
async def test_httpx_respx(warmed, outbound):
    with respx.mock:
        respx.get("https://octopus.com/api/check").respond(json={{"latest": "2"}})
        async with httpx.AsyncClient() as client:
            response = await client.get("https://octopus.com/api/check")
    assert response.json() == {{"latest": "2"}}
    assert [(r.client, r.path, r.phase, r.nodeid, r.verdict) for r in outbound.requests] == [
        ("httpx", "/api/warm", "setup", "test_async.py::test_httpx_respx", "allowed"),
        ("httpx", "/api/check", "call", "test_async.py::test_httpx_respx", "allowed")]

{mark}
async def test_aiohttp_loopback(outbound):
    with serve() as base:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/hello") as response:
                assert await response.text() == "/hello"
    assert [(r.client, r.host, r.path, r.phase, r.nodeid, r.verdict) for r in outbound.requests] == [
        ("aiohttp", "127.0.0.1", "/hello", "call", "test_async.py::test_aiohttp_loopback", "allowed")]

{mark}
async def test_aiohttp_undocumented():
    async with aiohttp.ClientSession() as session:
        await session.get("https://evil.example/collect")
"""

ASYNC_MODES = {
    "strict": ("@pytest_asyncio.fixture", "@pytest.mark.asyncio", "asyncio_mode = strict"),
    "auto": ("@pytest.fixture", "", "asyncio_mode = auto"),
}


@pytest.mark.parametrize("mode", sorted(ASYNC_MODES))
def test_pytest_asyncio(suite: pytest.Pytester, mode: str) -> None:
    fixture, mark, option = ASYNC_MODES[mode]
    suite.makeini(ini(option, "outbound_local = enforce", "outbound_allow = 127.0.0.1"))
    suite.makepyfile(test_async=ASYNC_TESTS.format(fixture=fixture, mark=mark))
    result = suite.runpytest("-p", "no:randomly", "--outbound-report", "report.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *pytest_outbound.OutboundBlocked: outbound request blocked:"
            " GET https://evil.example/collect (client: aiohttp)",
            "E *from: test_async.py:* in test_async.py::test_aiohttp_undocumented [[]call]",
            "mode: enforce; 4 outbound request(s), 1 violation(s)",
        ]
    )
    report = json.loads((suite.path / "report.json").read_text())
    assert [(r["client"], r["path"], r["nodeid"], r["phase"]) for r in report["requests"]] == [
        ("httpx", "/api/warm", "test_async.py::test_httpx_respx", "setup"),
        ("httpx", "/api/check", "test_async.py::test_httpx_respx", "call"),
        ("aiohttp", "/hello", "test_async.py::test_aiohttp_loopback", "call"),
        ("aiohttp", "/collect", "test_async.py::test_aiohttp_undocumented", "call"),
    ]


# -- time-machine and freezegun ----------------------------------------------------------------

INTERVAL_POLICY = POLICY + 'min_interval = "8h"\n'
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp()

TIME_MACHINE_TEST = """
import datetime, pytest, requests, time_machine
from pytest_outbound import OutboundBlocked

def check():
    return requests.get("https://octopus.com/api/check")

def test_twice(outbound):
    outbound.stub("update-check")
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    with time_machine.travel(start, tick=False) as traveller:
        check()
        traveller.shift(datetime.timedelta(hours={hours}))
        try:
            check()
        finally:
            assert [r.time for r in outbound.requests] == [{t0}, {t0} + {hours} * 3600]
"""

FREEZEGUN_TEST = """
import datetime, requests
from freezegun import freeze_time

def check():
    return requests.get("https://octopus.com/api/check")

def test_twice(outbound):
    outbound.stub("update-check")
    with freeze_time("2026-01-01 00:00:00", tick={tick}) as frozen:
        check()
        {travel}
        try:
            check()
        finally:
            first, second = [r.time for r in outbound.requests]
            assert abs(first - {t0}) < 60 and abs(second - first - {hours} * 3600) < 60
"""

FREEZEGUN_TRAVEL = {
    "tick": "frozen.tick(datetime.timedelta(hours={hours}))",
    "move_to": "frozen.move_to(datetime.datetime.now() + datetime.timedelta(hours={hours}))",
}


def _interval_outcome(result: pytest.RunResult, passes: bool) -> None:
    if passes:
        result.assert_outcomes(passed=1)
        return
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*why:  destination 'update-check' was contacted * ago; its min_interval is 8h",
            "mode: enforce; 2 outbound request(s), 1 violation(s)",
        ]
    )
    result.stdout.no_fnmatch_line("*AssertionError*")


@pytest.mark.parametrize(("hours", "passes"), [(8, True), (1, False)])
def test_time_machine_min_interval_and_record_times(
    suite: pytest.Pytester, hours: int, passes: bool
) -> None:
    suite.makefile(".toml", outbound=INTERVAL_POLICY)
    suite.makepyfile(TIME_MACHINE_TEST.format(hours=hours, t0=T0))
    _interval_outcome(suite.runpytest(), passes)


@pytest.mark.parametrize(
    ("travel", "tick", "hours", "passes"),
    [
        ("tick", False, 8, True),
        ("tick", False, 1, False),
        ("move_to", True, 8, True),
        ("move_to", True, 1, False),
    ],
)
def test_freezegun_min_interval_and_record_times(
    suite: pytest.Pytester, travel: str, tick: bool, hours: int, passes: bool
) -> None:
    suite.makefile(".toml", outbound=INTERVAL_POLICY)
    move = FREEZEGUN_TRAVEL[travel].format(hours=hours)
    suite.makepyfile(FREEZEGUN_TEST.format(tick=tick, travel=move, hours=hours, t0=T0))
    _interval_outcome(suite.runpytest(), passes)

